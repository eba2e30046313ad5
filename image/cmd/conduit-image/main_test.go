package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/conduitmesh/conduit/image"
	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/version"
)

// tinyModule writes stand-ins for the two proxy commands, so the test checks
// the image's shape without compiling the real proxy twice.
func tinyModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":                    "module example.com/tiny\n\ngo 1.26\n",
		"cmd/conduit-proxy/main.go": "package main\n\nfunc main() { println(\"proxy\") }\n",
		"cmd/conduit-init/main.go":  "package main\n\nfunc main() { println(\"init\") }\n",
	}
	for n, body := range files {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRunWritesLayoutArchiveAndPushes(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	dist := t.TempDir()
	o := defaultOptions()
	o.dir = tinyModule(t)
	o.packages = []string{"./cmd/conduit-proxy", "./cmd/conduit-init"}
	o.layout = filepath.Join(dist, "conduit-proxy")
	o.archive = filepath.Join(dist, "conduit-proxy.tar")
	o.epoch = "1700000000"
	o.push = host + "/conduitmesh/conduit-proxy:dev"
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout %q, want the digest and the pinned ref", stdout.String())
	}
	digest, err := image.LayoutIndexDigest(o.layout)
	if err != nil {
		t.Fatal(err)
	}
	if lines[0] != digest.String() {
		t.Errorf("printed %s, layout holds %s", lines[0], digest)
	}
	if lines[1] != o.push+"@"+digest.String() {
		t.Errorf("pinned %q", lines[1])
	}
	pinned, err := name.NewDigest(host + "/conduitmesh/conduit-proxy@" + digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Index(pinned); err != nil {
		t.Errorf("pushed index not in the registry: %v", err)
	}

	// The layout: two platforms, the contract's entrypoint, user and paths.
	idx, err := image.ReadLayout(o.layout)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	var plats []string
	for _, d := range m.Manifests {
		plats = append(plats, d.Platform.String())
	}
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v", plats)
	}

	// The tarball: the amd64 image, tagged with the release version.
	tag, _ := name.NewTag(contract.DefaultProxyImageRepo + ":" + version.Version)
	img, err := tarball.ImageFromPath(o.archive, &tag)
	if err != nil {
		t.Fatalf("archive has no %s: %v", tag, err)
	}
	cf, _ := img.ConfigFile()
	if cf.Architecture != "amd64" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != contract.ProxyBinaryPath ||
		cf.Config.User != strconv.Itoa(contract.ProxyUID) || cf.Created.Unix() != 1700000000 {
		t.Errorf("archive config: arch %s entrypoint %v user %q created %v", cf.Architecture, cf.Config.Entrypoint, cf.Config.User, cf.Created)
	}
	assertBinaries(t, img, contract.ProxyBinaryPath, contract.InitBinaryPath)

	// A second run of the same source and epoch prints the same digest.
	o.push = ""
	o.layout = filepath.Join(t.TempDir(), "again")
	stdout.Reset()
	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout.String()) != digest.String() {
		t.Errorf("second build %q, first %s", stdout.String(), digest)
	}
}

func TestValidateNamesTheBadFlag(t *testing.T) {
	for _, tc := range []struct {
		edit func(*options)
		want string
	}{
		{func(o *options) { o.packages = nil }, "--package"},
		{func(o *options) { o.platforms = []string{"amd64"} }, `--platform: platform "amd64"`},
		{func(o *options) { o.archivePlatform = "linux/s390x" }, `--archive-platform "linux/s390x"`},
		{func(o *options) { o.entrypoint = "/bin/other" }, `--entrypoint "/bin/other" is none of the built binaries`},
		{func(o *options) { o.entrypoint = "conduit-proxy" }, `--entrypoint "conduit-proxy": want an absolute path`},
		{func(o *options) { o.tag = "Bad Tag" }, `--tag "Bad Tag"`},
		{func(o *options) { o.push = "UPPER/x:@" }, `--push "UPPER/x:@"`},
		{func(o *options) { o.epoch = "-5" }, `--source-date-epoch`},
		{func(o *options) { o.layout, o.archive = "", "" }, "nothing to do"},
	} {
		o := defaultOptions()
		tc.edit(&o)
		err := Run(context.Background(), o, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// TestRealProxyImage builds the real proxy commands once, for amd64 only
// (make image builds both platforms), and checks they land at the contract's
// paths.
func TestRealProxyImage(t *testing.T) {
	root, _ := filepath.Abs("../../..")
	for _, p := range defaultOptions().packages {
		if _, err := os.Stat(filepath.Join(root, p, "main.go")); err != nil {
			t.Fatalf("the image needs %s: %v", p, err)
		}
	}
	o := defaultOptions()
	o.dir = root
	o.platforms = []string{"linux/amd64"}
	o.layout = ""
	o.archive = filepath.Join(t.TempDir(), "proxy.tar")
	o.epoch = "1700000000"
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	img, err := tarball.ImageFromPath(o.archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertBinaries(t, img, contract.ProxyBinaryPath, contract.InitBinaryPath, contract.DiscoveryBinaryPath, contract.InjectBinaryPath, "/conduit-copy")
}

// assertBinaries checks that img's single layer holds the binaries at the
// given paths, executable.
func assertBinaries(t *testing.T, img v1.Image, want ...string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	modes := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes["/"+h.Name] = h.Mode
	}
	for _, p := range want {
		if mode, ok := modes[p]; !ok || mode != 0o755 {
			t.Errorf("layer: %s mode %o present %v; entries %v", p, mode, ok, modes)
		}
	}
}
