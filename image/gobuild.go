package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// WithGoDir sets the directory `go build` runs in (a module root or below);
// the default is the current directory.
func WithGoDir(dir string) Option {
	return func(s *settings) { s.goDir = dir }
}

// WithBinDir sets where FromGoBinaries puts the binaries inside the image;
// the default is DefaultBinDir.
func WithBinDir(dir string) Option {
	return func(s *settings) { s.binDir = dir }
}

// WithBuildLog receives the go command's output; the default discards it
// (it is part of the returned error on failure).
func WithBuildLog(w io.Writer) Option {
	return func(s *settings) { s.buildLog = w }
}

// BuildGo cross-compiles the main packages for platform as static,
// reproducible binaries (CGO_ENABLED=0, -trimpath, an empty build id, no VCS
// stamp) and returns them keyed by binary name (the last element of each
// package path).
func BuildGo(ctx context.Context, dir string, platform v1.Platform, packages []string, log io.Writer) (map[string][]byte, error) {
	if len(packages) == 0 {
		return nil, fmt.Errorf("go build: no packages")
	}
	out, err := os.MkdirTemp("", "conduit-image-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)

	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o", out + string(filepath.Separator)}
	args = append(args, packages...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	env, err := goEnv(platform)
	if err != nil {
		return nil, err
	}
	cmd.Env = env
	var combined bytes.Buffer
	cmd.Stdout = &combined
	cmd.Stderr = &combined
	if log != nil {
		cmd.Stdout = io.MultiWriter(&combined, log)
		cmd.Stderr = cmd.Stdout
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for %s: %w\n%s", strings.Join(packages, " "), platform.String(), err, combined.String())
	}

	bins := map[string][]byte{}
	for _, pkg := range packages {
		name := path.Base(strings.TrimSuffix(pkg, "/"))
		if platform.OS == "windows" {
			name += ".exe"
		}
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			return nil, fmt.Errorf("go build %s for %s: no binary %s (is it a main package?): %w", pkg, platform.String(), name, err)
		}
		bins[name] = data
	}
	return bins, nil
}

// goEnv is the environment for a reproducible cross build: the caller's,
// with the target and the settings that change the output fixed.
func goEnv(p v1.Platform) ([]string, error) {
	fixed := map[string]string{
		"GOOS":        p.OS,
		"GOARCH":      p.Architecture,
		"CGO_ENABLED": "0",
		"GOFLAGS":     "-buildvcs=false",
	}
	switch p.Architecture {
	case "arm":
		v := strings.TrimPrefix(p.Variant, "v")
		if v == "" {
			v = "7"
		}
		if _, err := strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("platform %s: bad arm variant %q", p.String(), p.Variant)
		}
		fixed["GOARM"] = v
	case "amd64":
		if p.Variant != "" {
			fixed["GOAMD64"] = p.Variant
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := fixed[k]; ok || k == "GOARM" || k == "GOAMD64" || k == "GOARM64" {
			continue
		}
		env = append(env, kv)
	}
	keys := make([]string, 0, len(fixed))
	for k := range fixed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+fixed[k])
	}
	return env, nil
}

// FromGoBinaries builds the Go main packages for each platform (see BuildGo)
// and returns an OCI index with one image per platform, in order. Each image
// holds the binaries in one layer under the bin dir (DefaultBinDir unless
// WithBinDir), mode 0755, owned by root; the other options (entrypoint,
// user, created time...) apply to every image. An entrypoint that is a bare
// name is taken as one of the binaries: WithEntrypoint("app") runs
// /usr/local/bin/app.
func FromGoBinaries(ctx context.Context, packages []string, platforms []v1.Platform, opts ...Option) (v1.ImageIndex, error) {
	if len(platforms) == 0 {
		return nil, fmt.Errorf("go image: no platforms")
	}
	s := newSettings(opts)
	if !path.IsAbs(s.binDir) {
		return nil, fmt.Errorf("go image: bin dir %q is not absolute", s.binDir)
	}
	if len(s.entrypoint) > 0 && !strings.Contains(s.entrypoint[0], "/") {
		s.entrypoint = append([]string{path.Join(s.binDir, s.entrypoint[0])}, s.entrypoint[1:]...)
	}
	var images []v1.Image
	for _, p := range platforms {
		bins, err := BuildGo(ctx, s.goDir, p, packages, s.buildLog)
		if err != nil {
			return nil, err
		}
		ps := s
		ps.files = append([]File(nil), s.files...)
		for name, data := range bins {
			ps.files = append(ps.files, File{Path: path.Join(s.binDir, name), Mode: 0o755, Data: data})
		}
		img, err := ps.image(p)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	return NewIndex(images...)
}

// SourceDateEpoch returns the time every timestamp of a reproducible build
// uses: $SOURCE_DATE_EPOCH if set, else the commit time of the last commit
// of the git repository at dir.
func SourceDateEpoch(ctx context.Context, dir string) (time.Time, error) {
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
		return ParseEpoch(v)
	}
	cmd := exec.CommandContext(ctx, "git", "log", "-1", "--format=%ct")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH is unset and `git log -1 --format=%%ct` in %s failed: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return ParseEpoch(strings.TrimSpace(string(out)))
}

// ParseEpoch parses seconds since the Unix epoch.
func ParseEpoch(v string) (time.Time, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want a non-negative number of seconds", v)
	}
	return time.Unix(n, 0).UTC(), nil
}
