package generator

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/conduitmesh/conduit/image"
)

func smallIndex(t *testing.T) v1.ImageIndex {
	t.Helper()
	img, err := image.New(v1.Platform{OS: "linux", Architecture: "amd64"},
		image.WithFiles(image.File{Path: "/app", Mode: 0o755, Data: []byte("app")}))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := image.NewIndex(img)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestPinFromLayout(t *testing.T) {
	idx := smallIndex(t)
	want, _ := idx.Digest()
	dir := filepath.Join(t.TempDir(), "conduit-proxy")
	if err := image.WriteLayout(dir, idx, "v9.9.9"); err != nil {
		t.Fatal(err)
	}
	got, err := PinFromLayout("ghcr.io/conduitmesh/conduit-proxy:v0.1.0@sha256:"+strings.Repeat("0", 64), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != "ghcr.io/conduitmesh/conduit-proxy:v9.9.9@"+want.String() {
		t.Errorf("pinned %s", got)
	}
	if _, err := PinFromLayout("x/y:z", t.TempDir()); err == nil {
		t.Error("an empty layout pinned something")
	}
}

func TestResolvePinsATagThroughTheRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	idx := smallIndex(t)
	ref := host + "/conduitmesh/prometheus:v3"
	r, _ := name.ParseReference(ref)
	if _, err := image.PushIndex(context.Background(), r, idx); err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	got, err := Resolve(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got != ref+"@"+want.String() {
		t.Errorf("resolved %s", got)
	}
	// Already pinned: unchanged, no registry needed.
	if again, err := Resolve(context.Background(), got); err != nil || again != got {
		t.Errorf("pinned ref: %s %v", again, err)
	}
	// An unknown tag is an error naming it.
	if _, err := Resolve(context.Background(), host+"/conduitmesh/prometheus:nope"); err == nil || !strings.Contains(err.Error(), ":nope") {
		t.Errorf("unknown tag: %v", err)
	}
	c := validConfig()
	c.Prometheus.Image = got
	if err := c.Validate(); err != nil {
		t.Errorf("resolved image does not validate: %v", err)
	}
}
