// Package image builds reproducible OCI images in memory, without a Docker
// daemon: layers from in-memory files, single-platform images from layers and
// a config, and multi-platform indexes. Writing the result somewhere (an OCI
// layout, a docker-archive tarball, a registry) lives in separate functions,
// so the data never knows about its transport.
//
// Every timestamp an image carries comes from one time value (see
// WithCreated and SourceDateEpoch), files are owned by fixed ids and sorted,
// and compression is deterministic, so the same inputs give the same digest.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of a layer.
type File struct {
	// Path is the absolute path inside the image, e.g. /usr/local/bin/app.
	Path string
	// Mode holds the permission bits and, for a directory or a symlink,
	// fs.ModeDir or fs.ModeSymlink. Zero permission bits mean 0644 for a
	// file and 0755 for a directory.
	Mode fs.FileMode
	// Data is the content of a regular file.
	Data []byte
	// Link is the target of a symlink (Mode has fs.ModeSymlink).
	Link string
	// UID and GID own the entry; zero means root.
	UID, GID int
}

// DefaultBinDir is where FromGoBinaries and HostProgram put executables.
const DefaultBinDir = "/usr/local/bin"

// Layer returns a gzip-compressed OCI layer holding files. Parent
// directories that are not listed are added (0755, root); entries are sorted
// by path and every entry has modTime (truncated to seconds) and no user or
// group names, so the same files give the same digest.
func Layer(files []File, modTime time.Time) (v1.Layer, error) {
	entries, err := normalize(files)
	if err != nil {
		return nil, err
	}
	modTime = modTime.UTC().Truncate(time.Second)

	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range entries {
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(f.Path, "/"),
			Mode:    int64(f.Mode.Perm()),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: modTime,
			Format:  tar.FormatPAX,
		}
		switch {
		case f.Mode.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case f.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = f.Link
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", f.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("layer: %s: %w", f.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}

	// Compress here rather than in go-containerregistry so the bytes depend
	// only on the standard library's gzip at a fixed level and a zero header.
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// normalize checks paths, fills default modes, adds missing parent
// directories and sorts the entries.
func normalize(files []File) ([]File, error) {
	byPath := map[string]File{}
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("layer: path %q is not absolute", f.Path)
		}
		clean := path.Clean(f.Path)
		if clean == "/" {
			return nil, fmt.Errorf("layer: path %q names the root", f.Path)
		}
		if _, dup := byPath[clean]; dup {
			return nil, fmt.Errorf("layer: path %q listed twice", clean)
		}
		if f.Mode&fs.ModeSymlink != 0 && f.Link == "" {
			return nil, fmt.Errorf("layer: symlink %q has no target", clean)
		}
		if f.Mode.Perm() == 0 {
			if f.Mode.IsDir() {
				f.Mode |= 0o755
			} else {
				f.Mode |= 0o644
			}
		}
		f.Path = clean
		byPath[clean] = f
	}
	for p := range byPath {
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if parent, ok := byPath[dir]; ok {
				if !parent.Mode.IsDir() {
					return nil, fmt.Errorf("layer: %q needs %q to be a directory", p, dir)
				}
				continue
			}
			byPath[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Option configures an image built by New or FromGoBinaries.
type Option func(*settings)

type settings struct {
	created    time.Time
	files      []File
	layers     []v1.Layer
	entrypoint []string
	cmd        []string
	user       string
	env        []string
	workdir    string
	labels     map[string]string
	// used by FromGoBinaries only
	goDir    string
	binDir   string
	buildLog io.Writer
}

func newSettings(opts []Option) settings {
	s := settings{
		created: time.Unix(0, 0).UTC(),
		env:     []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		binDir:  DefaultBinDir,
		goDir:   ".",
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// WithCreated sets the time of every timestamp in the image: the config's
// created field, its history and the mtime of every file in layers built
// from WithFiles. The default is the Unix epoch.
func WithCreated(t time.Time) Option {
	return func(s *settings) { s.created = t.UTC().Truncate(time.Second) }
}

// WithFiles adds one layer holding files (see Layer).
func WithFiles(files ...File) Option {
	return func(s *settings) { s.files = append(s.files, files...) }
}

// WithLayers adds prebuilt layers, below the WithFiles layer.
func WithLayers(layers ...v1.Layer) Option {
	return func(s *settings) { s.layers = append(s.layers, layers...) }
}

// WithEntrypoint sets the program the container runs.
func WithEntrypoint(args ...string) Option {
	return func(s *settings) { s.entrypoint = args }
}

// WithCmd sets the default arguments after the entrypoint.
func WithCmd(args ...string) Option {
	return func(s *settings) { s.cmd = args }
}

// WithUser sets the user (a numeric uid, or uid:gid) the container runs as.
func WithUser(user string) Option {
	return func(s *settings) { s.user = user }
}

// WithEnv replaces the environment (KEY=value entries). The default sets
// only PATH.
func WithEnv(env ...string) Option {
	return func(s *settings) { s.env = env }
}

// WithWorkingDir sets the container's working directory.
func WithWorkingDir(dir string) Option {
	return func(s *settings) { s.workdir = dir }
}

// WithLabels sets config labels (e.g. org.opencontainers.image.source).
func WithLabels(labels map[string]string) Option {
	return func(s *settings) {
		s.labels = make(map[string]string, len(labels))
		for k, v := range labels {
			s.labels[k] = v
		}
	}
}

// New returns a single-platform image with OCI media types from the given
// options.
func New(platform v1.Platform, opts ...Option) (v1.Image, error) {
	s := newSettings(opts)
	return s.image(platform)
}

func (s settings) image(platform v1.Platform) (v1.Image, error) {
	if platform.OS == "" || platform.Architecture == "" {
		return nil, fmt.Errorf("image: platform %q needs an OS and an architecture", platform.String())
	}
	created := v1.Time{Time: s.created}
	cfg := &v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		Variant:      platform.Variant,
		OSVersion:    platform.OSVersion,
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: s.entrypoint,
			Cmd:        s.cmd,
			User:       s.user,
			Env:        s.env,
			WorkingDir: s.workdir,
			Labels:     s.labels,
		},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	layers := append([]v1.Layer(nil), s.layers...)
	if len(s.files) > 0 {
		l, err := Layer(s.files, s.created)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	for _, l := range layers {
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: created, CreatedBy: "conduit image"},
		})
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

// NewIndex returns an OCI image index over images, in the given order, each
// described with the platform from its config.
func NewIndex(images ...v1.Image) (v1.ImageIndex, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("index: no images")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		p := cf.Platform()
		if p == nil {
			return nil, fmt.Errorf("index: an image has no platform in its config")
		}
		if seen[p.String()] {
			return nil, fmt.Errorf("index: platform %s listed twice", p)
		}
		seen[p.String()] = true
		mt, err := img.MediaType()
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: mt, Platform: p},
		})
	}
	return idx, nil
}

// ImageFor returns the image of idx for platform (OS, architecture and, if
// set, variant must match).
func ImageFor(idx v1.ImageIndex, platform v1.Platform) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == platform.OS &&
			d.Platform.Architecture == platform.Architecture &&
			(platform.Variant == "" || d.Platform.Variant == platform.Variant) {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("index: no image for platform %s", platform.String())
}

// ParsePlatforms parses "linux/amd64,linux/arm64/v8" style names.
func ParsePlatforms(names ...string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, n := range names {
		p, err := v1.ParsePlatform(n)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", n, err)
		}
		if p.OS == "" || p.Architecture == "" || strings.Count(n, "/") < 1 {
			return nil, fmt.Errorf("platform %q: want os/arch[/variant]", n)
		}
		out = append(out, *p)
	}
	return out, nil
}
