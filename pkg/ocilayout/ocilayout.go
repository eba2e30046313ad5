// Package ocilayout reads the OCI image layouts Conduit's image builds
// write (`make image`, `make prometheus-image`): index.json points at
// exactly one image index, named by the ref-name annotation. The image
// component writes them; the generator pins images by their digest.
package ocilayout

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// AnnotationRefName is the OCI annotation naming an index in index.json.
const AnnotationRefName = "org.opencontainers.image.ref.name"

// IndexDigest returns the digest of the one image index the layout at dir
// points at: the digest to pin the image by, and its ref name ("" when
// index.json does not name it).
func IndexDigest(dir string) (digest v1.Hash, refName string, err error) {
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return v1.Hash{}, "", fmt.Errorf("oci layout %s: %w", dir, err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		return v1.Hash{}, "", fmt.Errorf("oci layout %s: %w", dir, err)
	}
	var found []v1.Descriptor
	for _, d := range m.Manifests {
		if d.MediaType == types.OCIImageIndex || d.MediaType == types.DockerManifestList {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return v1.Hash{}, "", fmt.Errorf("oci layout %s: index.json lists %d image indexes, want exactly 1", dir, len(found))
	}
	return found[0].Digest, found[0].Annotations[AnnotationRefName], nil
}
