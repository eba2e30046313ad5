package cluster

import (
	"context"
	"fmt"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/conduitmesh/conduit/image"
)

// BuildGoImage compiles the main package pkg (relative to the module at
// srcDir) as a static binary for this machine's architecture and writes a
// single-layer image whose entrypoint is that binary to out, a
// docker-archive tarball tagged tag. It is package image's builder with the
// settings the node's own images need.
func BuildGoImage(ctx context.Context, srcDir, pkg, tag, out string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("image tag %q: %w", tag, err)
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	bins, err := image.BuildGo(ctx, srcDir, platform, []string{pkg}, nil)
	if err != nil {
		return fmt.Errorf("building %s: %w", pkg, err)
	}
	binName := path.Base(strings.TrimSuffix(pkg, "/"))
	img, err := image.New(platform,
		image.WithFiles(image.File{Path: "/" + binName, Mode: 0o755, Data: bins[binName]}),
		image.WithEntrypoint("/"+binName),
		image.WithCreated(time.Unix(0, 0)))
	if err != nil {
		return err
	}
	return image.WriteDockerArchive(out, ref, img)
}
