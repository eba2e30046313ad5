package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/conduitmesh/conduit/pkg/ocilayout"
)

// AnnotationRefName is the OCI annotation naming an index in index.json.
const AnnotationRefName = ocilayout.AnnotationRefName

// WriteLayout writes idx as an OCI image layout at dir: index.json holds one
// descriptor pointing at idx (annotated with refName when it is not empty)
// and blobs/ holds every manifest, config and layer. The layout is built in
// a sibling directory and renamed over dir, so dir is either the old layout
// or the complete new one, never half-written.
func WriteLayout(dir string, idx v1.ImageIndex, refName string) error {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{AnnotationRefName: refName}))
	}
	if err := lp.AppendIndex(idx, opts...); err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// LayoutIndexDigest returns the digest of the image index that an OCI
// layout written by WriteLayout points at: the digest to pin the image by.
func LayoutIndexDigest(dir string) (v1.Hash, error) {
	h, _, err := ocilayout.IndexDigest(dir)
	return h, err
}

// ReadLayout returns the image index an OCI layout written by WriteLayout
// points at.
func ReadLayout(dir string) (v1.ImageIndex, error) {
	h, err := LayoutIndexDigest(dir)
	if err != nil {
		return nil, err
	}
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	return root.ImageIndex(h)
}

// WriteDockerArchive writes img as a docker-archive tarball (the format of
// `docker save`, which `docker load` and containerd's `ctr images import`
// read) at file, tagged tag. It writes a temporary file and renames it, so
// file is never half-written.
func WriteDockerArchive(file string, tag name.Tag, img v1.Image) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if err := tarball.Write(tag, img, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("docker archive %s: %w", file, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// PushIndex pushes idx and everything it references to ref with
// remote.WriteIndex (the index form of remote.Write) and returns the pinned
// reference repo@sha256:....
func PushIndex(ctx context.Context, ref name.Reference, idx v1.ImageIndex, opts ...remote.Option) (name.Digest, error) {
	if err := remote.WriteIndex(ref, idx, append([]remote.Option{remote.WithContext(ctx)}, opts...)...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return ref.Context().Digest(d.String()), nil
}

// PushImage pushes a single image to ref with remote.Write and returns the
// pinned reference repo@sha256:....
func PushImage(ctx context.Context, ref name.Reference, img v1.Image, opts ...remote.Option) (name.Digest, error) {
	if err := remote.Write(ref, img, append([]remote.Option{remote.WithContext(ctx)}, opts...)...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return ref.Context().Digest(d.String()), nil
}
