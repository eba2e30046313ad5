// Command conduit-host-image packs a program installed on this machine (for
// example from a Debian package) into an image: the binary, the shared
// libraries ldd lists, extra files and empty writable directories. It
// writes an OCI layout and a docker-archive tarball and prints the index
// digest.
//
// Timestamps come from --source-date-epoch, else $SOURCE_DATE_EPOCH, else
// the program file's mtime (for a Debian package: its build time), so the
// digest changes only when the installed files do.
package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/pflag"

	"github.com/conduitmesh/conduit/image"
)

type options struct {
	program    string
	files      []string
	dirs       []string // PATH or PATH:UID
	entrypoint []string
	user       string
	tag        string
	layout     string
	archive    string
	epoch      string
}

type dirSpec struct {
	path string
	uid  int
}

func parseDir(s string) (dirSpec, error) {
	p, uid, hasUID := strings.Cut(s, ":")
	d := dirSpec{path: p}
	if !path.IsAbs(p) {
		return d, fmt.Errorf("--dir %q: want an absolute path, optionally :uid", s)
	}
	if hasUID {
		n, err := strconv.Atoi(uid)
		if err != nil || n < 0 {
			return d, fmt.Errorf("--dir %q: uid %q is not a number", s, uid)
		}
		d.uid = n
	}
	return d, nil
}

func (o options) validate() error {
	if o.program == "" {
		return fmt.Errorf("--program: the program to pack is needed")
	}
	if !path.IsAbs(o.program) {
		return fmt.Errorf("--program %q: want an absolute path", o.program)
	}
	if _, err := name.NewTag(o.tag, name.StrictValidation); err != nil {
		return fmt.Errorf("--tag %q: %w", o.tag, err)
	}
	for _, d := range o.dirs {
		if _, err := parseDir(d); err != nil {
			return err
		}
	}
	if o.epoch != "" {
		if _, err := image.ParseEpoch(o.epoch); err != nil {
			return fmt.Errorf("--source-date-epoch: %w", err)
		}
	}
	if o.layout == "" && o.archive == "" {
		return fmt.Errorf("nothing to do: --layout and --archive are both empty")
	}
	return nil
}

// Run packs the program and writes the image; the index digest goes to
// stdout.
func Run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	st, err := os.Stat(o.program)
	if err != nil {
		return fmt.Errorf("--program: %w", err)
	}
	created := st.ModTime().UTC()
	if o.epoch != "" {
		created, _ = image.ParseEpoch(o.epoch)
	}
	files, err := image.HostProgram(ctx, o.program)
	if err != nil {
		return err
	}
	if len(o.files) > 0 {
		extra, err := image.HostFiles(o.files...)
		if err != nil {
			return err
		}
		files = append(files, extra...)
	}
	for _, d := range o.dirs {
		spec, _ := parseDir(d)
		files = append(files, image.File{Path: spec.path, Mode: fs.ModeDir | 0o755, UID: spec.uid, GID: spec.uid})
	}
	entrypoint := o.entrypoint
	if len(entrypoint) == 0 {
		entrypoint = []string{o.program}
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	img, err := image.New(platform,
		image.WithFiles(files...),
		image.WithEntrypoint(entrypoint...),
		image.WithUser(o.user),
		image.WithCreated(created),
	)
	if err != nil {
		return err
	}
	idx, err := image.NewIndex(img)
	if err != nil {
		return err
	}
	tag, _ := name.NewTag(o.tag, name.StrictValidation)
	fmt.Fprintf(stderr, "conduit-host-image: %s with %d files, timestamps %s\n", o.program, len(files), created.Format(time.RFC3339))
	if o.layout != "" {
		if err := image.WriteLayout(o.layout, idx, tag.TagStr()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "conduit-host-image: wrote OCI layout %s\n", o.layout)
	}
	if o.archive != "" {
		if err := image.WriteDockerArchive(o.archive, tag, img); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "conduit-host-image: wrote docker archive %s (%s)\n", o.archive, tag)
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, d.String())
	return nil
}

func main() {
	var o options
	fs := pflag.NewFlagSet("conduit-host-image", pflag.ContinueOnError)
	fs.StringVar(&o.program, "program", "", "absolute path of the program to pack (with the libraries ldd lists)")
	fs.StringSliceVar(&o.files, "file", nil, "extra host files or directories to copy at the same paths")
	fs.StringSliceVar(&o.dirs, "dir", nil, "empty directories to create, PATH or PATH:UID (owner uid and gid)")
	fs.StringSliceVar(&o.entrypoint, "entrypoint", nil, "entrypoint (default: the program)")
	fs.StringVar(&o.user, "user", "65534", "user the container runs as")
	fs.StringVar(&o.tag, "tag", "", "image tag, in the tarball and as the layout's ref name")
	fs.StringVar(&o.layout, "layout", "", "OCI layout directory to write")
	fs.StringVar(&o.archive, "archive", "", "docker-archive tarball to write")
	fs.StringVar(&o.epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since 1970 for every timestamp (default: the program's mtime)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			return
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := Run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-host-image:", err)
		os.Exit(1)
	}
}
