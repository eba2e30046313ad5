package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var epoch = time.Unix(1_700_000_000, 0).UTC()

// readLayer returns the tar headers and file contents of l in order.
func readLayer(t *testing.T, l v1.Layer) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var hdrs []*tar.Header
	data := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		data[h.Name] = b
	}
	return hdrs, data
}

func TestLayerIsSortedOwnedAndStamped(t *testing.T) {
	files := []File{
		{Path: "/usr/local/bin/b", Mode: 0o755, Data: []byte("bee")},
		{Path: "/etc/conf", Data: []byte("x=1")},
		{Path: "/data", Mode: fs.ModeDir | 0o700, UID: 65534, GID: 65534},
		{Path: "/usr/local/bin/a", Mode: fs.ModeSymlink, Link: "b"},
	}
	l, err := Layer(files, epoch.Add(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := l.MediaType()
	if mt != types.OCILayer {
		t.Errorf("media type %s, want %s", mt, types.OCILayer)
	}
	hdrs, data := readLayer(t, l)
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, epoch)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: user/group names %q/%q, want none", h.Name, h.Uname, h.Gname)
		}
	}
	want := []string{"data/", "etc/", "etc/conf", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/a", "usr/local/bin/b"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("entries %v, want %v", names, want)
	}
	byName := map[string]*tar.Header{}
	for _, h := range hdrs {
		byName[h.Name] = h
	}
	if h := byName["data/"]; h.Uid != 65534 || h.Mode != 0o700 || h.Typeflag != tar.TypeDir {
		t.Errorf("data/: uid %d mode %o type %c", h.Uid, h.Mode, h.Typeflag)
	}
	if h := byName["etc/conf"]; h.Uid != 0 || h.Mode != 0o644 {
		t.Errorf("etc/conf: uid %d mode %o, want 0 0644", h.Uid, h.Mode)
	}
	if h := byName["usr/"]; h.Mode != 0o755 || h.Typeflag != tar.TypeDir {
		t.Errorf("implicit usr/: mode %o type %c", h.Mode, h.Typeflag)
	}
	if h := byName["usr/local/bin/a"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "b" {
		t.Errorf("symlink: type %c -> %q", h.Typeflag, h.Linkname)
	}
	if string(data["usr/local/bin/b"]) != "bee" {
		t.Errorf("content %q", data["usr/local/bin/b"])
	}

	// Same files in another order: same digest. Another time: another digest.
	reversed := []File{files[3], files[2], files[1], files[0]}
	l2, err := Layer(reversed, epoch)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("same files, different digests %s %s", d1, d2)
	}
	l3, _ := Layer(files, epoch.Add(time.Second))
	if d3, _ := l3.Digest(); d3 == d1 {
		t.Error("a different mtime gave the same digest")
	}
}

func TestLayerRejectsBadFiles(t *testing.T) {
	for _, tc := range []struct {
		files []File
		want  string
	}{
		{[]File{{Path: "rel/x"}}, `path "rel/x" is not absolute`},
		{[]File{{Path: "/"}}, `names the root`},
		{[]File{{Path: "/a"}, {Path: "/a/"}}, `"/a" listed twice`},
		{[]File{{Path: "/a", Data: []byte("f")}, {Path: "/a/b"}}, `needs "/a" to be a directory`},
		{[]File{{Path: "/l", Mode: fs.ModeSymlink}}, `symlink "/l" has no target`},
	} {
		_, err := Layer(tc.files, epoch)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Layer(%v): error %v, want %q", tc.files, err, tc.want)
		}
	}
}

func TestNewWritesConfigWithOCIMediaTypes(t *testing.T) {
	img, err := New(v1.Platform{OS: "linux", Architecture: "arm64"},
		WithCreated(epoch),
		WithFiles(File{Path: "/app", Mode: 0o755, Data: []byte("#!")}),
		WithEntrypoint("/app", "serve"),
		WithCmd("--flag"),
		WithUser("2102"),
		WithLabels(map[string]string{"k": "v"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("config media type %s", m.Config.MediaType)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("layers %+v", m.Layers)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !cf.Created.Equal(epoch) {
		t.Errorf("created %v", cf.Created)
	}
	for _, h := range cf.History {
		if !h.Created.Equal(epoch) {
			t.Errorf("history created %v", h.Created)
		}
	}
	c := cf.Config
	if strings.Join(c.Entrypoint, " ") != "/app serve" || strings.Join(c.Cmd, " ") != "--flag" || c.User != "2102" || c.Labels["k"] != "v" {
		t.Errorf("config %+v", c)
	}
	if len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("diff ids %v", cf.RootFS.DiffIDs)
	}

	if _, err := New(v1.Platform{OS: "linux"}); err == nil || !strings.Contains(err.Error(), "needs an OS and an architecture") {
		t.Errorf("platform without arch: %v", err)
	}
}

func TestNewIndexDescribesPlatforms(t *testing.T) {
	amd, _ := New(v1.Platform{OS: "linux", Architecture: "amd64"}, WithCreated(epoch))
	arm, _ := New(v1.Platform{OS: "linux", Architecture: "arm64"}, WithCreated(epoch))
	idx, err := NewIndex(amd, arm)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 2 || m.Manifests[0].Platform.Architecture != "amd64" || m.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("manifests %+v", m.Manifests)
	}
	got, err := ImageFor(idx, v1.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	gd, _ := got.Digest()
	ad, _ := arm.Digest()
	if gd != ad {
		t.Errorf("ImageFor arm64 gave %s, want %s", gd, ad)
	}
	if _, err := ImageFor(idx, v1.Platform{OS: "linux", Architecture: "s390x"}); err == nil {
		t.Error("ImageFor s390x: no error")
	}
	if _, err := NewIndex(amd, amd); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("duplicate platform: %v", err)
	}
}

func TestParsePlatforms(t *testing.T) {
	ps, err := ParsePlatforms("linux/amd64", "linux/arm64")
	if err != nil || len(ps) != 2 || ps[1].Architecture != "arm64" {
		t.Fatalf("%v %v", ps, err)
	}
	if _, err := ParsePlatforms("amd64"); err == nil || !strings.Contains(err.Error(), `"amd64"`) {
		t.Errorf("bare arch: %v", err)
	}
}

// writeTinyMain writes a module with one main package and returns its dir
// and the package path to build.
func writeTinyMain(t testing.TB, dir string) (string, []string) {
	t.Helper()
	for name, body := range map[string]string{
		"go.mod":               "module example.com/tiny\n\ngo 1.26\n",
		"cmd/tiny-app/main.go": "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"tiny\\n\") }\n",
		"cmd/tiny-sub/main.go": "package main\n\nfunc main() {}\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, []string{"./cmd/tiny-app", "./cmd/tiny-sub"}
}

var twoPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

var (
	tinyOnce sync.Once
	tinyIdx  v1.ImageIndex
	tinyErr  error
)

// tinyIndex builds the tiny main for two platforms once per test binary.
func tinyIndex(t *testing.T) v1.ImageIndex {
	t.Helper()
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tiny-")
		if err != nil {
			tinyErr = err
			return
		}
		defer os.RemoveAll(dir)
		_, pkgs := writeTinyMain(t, dir)
		tinyIdx, tinyErr = FromGoBinaries(context.Background(), pkgs, twoPlatforms,
			WithGoDir(dir), WithCreated(epoch), WithEntrypoint("tiny-app"), WithUser("2102"))
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tinyIdx
}

func TestFromGoBinariesCrossCompilesStaticBinaries(t *testing.T) {
	idx := tinyIndex(t)
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, p := range twoPlatforms {
		img, err := ImageFor(idx, p)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if got := strings.Join(cf.Config.Entrypoint, " "); got != "/usr/local/bin/tiny-app" {
			t.Errorf("%s entrypoint %q", p.Architecture, got)
		}
		if cf.Config.User != "2102" {
			t.Errorf("%s user %q", p.Architecture, cf.Config.User)
		}
		layers, _ := img.Layers()
		if len(layers) != 1 {
			t.Fatalf("%d layers", len(layers))
		}
		hdrs, data := readLayer(t, layers[0])
		for _, name := range []string{"usr/local/bin/tiny-app", "usr/local/bin/tiny-sub"} {
			bin, ok := data[name]
			if !ok {
				t.Fatalf("%s: no %s in layer", p.Architecture, name)
			}
			f, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if f.Machine != wantMachine[p.Architecture] {
				t.Errorf("%s %s: machine %v", p.Architecture, name, f.Machine)
			}
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Errorf("%s %s: dynamically linked", p.Architecture, name)
				}
			}
		}
		for _, h := range hdrs {
			if h.Name == "usr/local/bin/tiny-app" && h.Mode != 0o755 {
				t.Errorf("mode %o", h.Mode)
			}
		}
	}
}

func TestFromGoBinariesIsReproducible(t *testing.T) {
	first := tinyIndex(t)
	// A second build from a copy of the source in another directory, written
	// to another layout: the same index digest.
	dir, pkgs := writeTinyMain(t, t.TempDir())
	second, err := FromGoBinaries(context.Background(), pkgs, twoPlatforms,
		WithGoDir(dir), WithCreated(epoch), WithEntrypoint("tiny-app"), WithUser("2102"))
	if err != nil {
		t.Fatal(err)
	}
	outA, outB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if err := WriteLayout(outA, first, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayout(outB, second, "v1"); err != nil {
		t.Fatal(err)
	}
	da, err := LayoutIndexDigest(outA)
	if err != nil {
		t.Fatal(err)
	}
	db, err := LayoutIndexDigest(outB)
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Errorf("two builds of the same source: %s and %s", da, db)
	}
	want, _ := first.Digest()
	if da != want {
		t.Errorf("layout points at %s, index is %s", da, want)
	}
	// index.json itself is byte-identical too.
	ia, _ := os.ReadFile(filepath.Join(outA, "index.json"))
	ib, _ := os.ReadFile(filepath.Join(outB, "index.json"))
	if !bytes.Equal(ia, ib) {
		t.Errorf("index.json differs:\n%s\n%s", ia, ib)
	}

	// The epoch reaches the digest: another time, another digest.
	later, err := FromGoBinaries(context.Background(), pkgs, twoPlatforms,
		WithGoDir(dir), WithCreated(epoch.Add(time.Hour)), WithEntrypoint("tiny-app"), WithUser("2102"))
	if err != nil {
		t.Fatal(err)
	}
	if dl, _ := later.Digest(); dl == da {
		t.Error("a different SOURCE_DATE_EPOCH gave the same digest")
	}
}

func TestFromGoBinariesReportsBuildErrors(t *testing.T) {
	dir, _ := writeTinyMain(t, t.TempDir())
	_, err := FromGoBinaries(context.Background(), []string{"./cmd/missing"}, twoPlatforms[:1], WithGoDir(dir))
	if err == nil || !strings.Contains(err.Error(), "go build ./cmd/missing for linux/amd64") {
		t.Errorf("error %v", err)
	}
	_, err = FromGoBinaries(context.Background(), []string{"./cmd/tiny-app"}, nil, WithGoDir(dir))
	if err == nil || !strings.Contains(err.Error(), "no platforms") {
		t.Errorf("error %v", err)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	got, err := SourceDateEpoch(context.Background(), t.TempDir())
	if err != nil || !got.Equal(epoch) {
		t.Errorf("from env: %v %v", got, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := SourceDateEpoch(context.Background(), "."); err == nil || !strings.Contains(err.Error(), `"yesterday"`) {
		t.Errorf("bad env: %v", err)
	}
}

func TestSourceDateEpochFromGit(t *testing.T) {
	os.Unsetenv("SOURCE_DATE_EPOCH")
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_COMMITTER_DATE=1700000000 +0000", "GIT_AUTHOR_DATE=1700000000 +0000",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	git("commit", "-q", "--allow-empty", "-m", "one")
	got, err := SourceDateEpoch(context.Background(), dir)
	if err != nil || !got.Equal(epoch) {
		t.Errorf("from git: %v %v", got, err)
	}
	if _, err := SourceDateEpoch(context.Background(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH is unset") {
		t.Errorf("outside git: %v", err)
	}
}
