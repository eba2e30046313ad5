package image

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func smallIndex(t *testing.T) v1.ImageIndex {
	t.Helper()
	var imgs []v1.Image
	for _, p := range twoPlatforms {
		img, err := New(p, WithCreated(epoch), WithEntrypoint("/app"),
			WithFiles(File{Path: "/app", Mode: 0o755, Data: []byte("app for " + p.Architecture)}))
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	idx, err := NewIndex(imgs...)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestWriteLayoutReplacesWholeDir(t *testing.T) {
	idx := smallIndex(t)
	dir := filepath.Join(t.TempDir(), "dist", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale")
	os.WriteFile(stale, []byte("old"), 0o644)
	if err := WriteLayout(dir, idx, "v9"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale file survived: %v", err)
	}
	var root v1.IndexManifest
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if len(root.Manifests) != 1 || root.Manifests[0].Digest != want ||
		root.Manifests[0].MediaType != types.OCIImageIndex ||
		root.Manifests[0].Annotations[AnnotationRefName] != "v9" {
		t.Errorf("index.json %s", b)
	}
	got, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); gd != want {
		t.Errorf("read back %s, want %s", gd, want)
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 1 {
		t.Errorf("temporary dirs left beside the layout: %v", entries)
	}
	if _, err := LayoutIndexDigest(t.TempDir()); err == nil {
		t.Error("LayoutIndexDigest of an empty dir: no error")
	}
}

func TestWriteDockerArchiveRoundTrip(t *testing.T) {
	idx := smallIndex(t)
	img, err := ImageFor(idx, twoPlatforms[0])
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("ghcr.io/conduitmesh/app:v1")
	file := filepath.Join(t.TempDir(), "app.tar")
	if err := WriteDockerArchive(file, tag, img); err != nil {
		t.Fatal(err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != "ghcr.io/conduitmesh/app:v1" {
		t.Errorf("manifest.json %+v", m)
	}
	back, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatal(err)
	}
	// The archive holds the same config and layers, so the image id matches.
	wantCfg, _ := img.ConfigName()
	gotCfg, _ := back.ConfigName()
	if wantCfg != gotCfg {
		t.Errorf("config %s, want %s", gotCfg, wantCfg)
	}
	wl, _ := img.Layers()
	gl, _ := back.Layers()
	wd, _ := wl[0].DiffID()
	gd, _ := gl[0].DiffID()
	if len(gl) != 1 || wd != gd {
		t.Errorf("layers differ")
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("temporary files left beside the archive: %v", entries)
	}
}

func TestPushToInProcessRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("registry not on loopback: %s", host)
	}
	idx := smallIndex(t)
	ref, err := name.ParseReference(host + "/conduitmesh/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := PushIndex(context.Background(), ref, idx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if pinned.String() != host+"/conduitmesh/app@"+want.String() {
		t.Errorf("pinned %s", pinned)
	}
	// The tag resolves to the index, and the index by digest has both images.
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != want || desc.MediaType != types.OCIImageIndex {
		t.Errorf("HEAD tag: %s %s", desc.Digest, desc.MediaType)
	}
	got, err := remote.Index(pinned)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ImageFor(got, twoPlatforms[1])
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	_, data := readLayer(t, layers[0])
	if string(data["app"]) != "app for arm64" {
		t.Errorf("pulled arm64 layer holds %q", data["app"])
	}

	// A single image goes through remote.Write.
	one, _ := ImageFor(idx, twoPlatforms[0])
	iref, _ := name.ParseReference(host + "/conduitmesh/one:v1")
	ipinned, err := PushImage(context.Background(), iref, one)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(ipinned); err != nil {
		t.Errorf("pull %s: %v", ipinned, err)
	}

	// A dead registry gives an error naming the reference.
	srv.Close()
	if _, err := PushIndex(context.Background(), ref, idx); err == nil || !strings.Contains(err.Error(), ref.String()) {
		t.Errorf("push to a closed registry: %v", err)
	}
}
