package ocilayout

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

func TestIndexDigest(t *testing.T) {
	idx, err := random.Index(16, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := IndexDigest(dir); err == nil {
		t.Error("a layout without an image index: no error")
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{AnnotationRefName: "v1.2.3"})); err != nil {
		t.Fatal(err)
	}
	got, ref, err := IndexDigest(dir)
	if err != nil || got != want || ref != "v1.2.3" {
		t.Errorf("IndexDigest = %v %q %v, want %v v1.2.3", got, ref, err, want)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := IndexDigest(dir); err == nil {
		t.Error("a layout with two image indexes: no error")
	}
	if _, _, err := IndexDigest(t.TempDir()); err == nil {
		t.Error("an empty directory: no error")
	}
}
