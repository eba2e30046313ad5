// Command conduit-image builds the Conduit proxy image: static conduit-proxy,
// conduit-init, conduit-discovery and conduit-inject binaries for each
// platform in one OCI index, written as an OCI layout and a docker-archive
// tarball, and optionally pushed.
//
// Every timestamp comes from SOURCE_DATE_EPOCH (else the last commit's
// time), so two builds of one commit give the same digest. stdout gets the
// index digest, then, with --push, the pinned reference.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/pflag"

	"github.com/conduitmesh/conduit/image"
	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/version"
)

type options struct {
	dir             string
	packages        []string
	platforms       []string
	entrypoint      string
	user            string
	layout          string
	archive         string
	archivePlatform string
	tag             string
	push            string
	epoch           string
	verbose         bool
}

func defaultOptions() options {
	return options{
		dir: ".",
		// The proxy and its init step, the Prometheus discovery sidecar, the
		// injector and a copier to hand it to Argo CD's repo-server (the
		// image has no shell).
		packages: []string{
			"./proxy/cmd/conduit-proxy", "./proxy/cmd/conduit-init",
			"./discovery/cmd/conduit-discovery", "./krm-functions/cmd/conduit-inject",
			"./image/cmd/conduit-copy",
		},
		platforms:       []string{"linux/amd64", "linux/arm64"},
		entrypoint:      contract.ProxyBinaryPath,
		user:            strconv.Itoa(contract.ProxyUID),
		layout:          "dist/conduit-proxy",
		archive:         "dist/conduit-proxy.tar",
		archivePlatform: "linux/amd64",
		tag:             contract.DefaultProxyImageRepo + ":" + version.Version,
	}
}

func (o options) validate() error {
	if len(o.packages) == 0 {
		return fmt.Errorf("--package: at least one Go main package is needed")
	}
	if _, err := image.ParsePlatforms(o.platforms...); err != nil {
		return fmt.Errorf("--platform: %w", err)
	}
	if o.archive != "" && !contains(o.platforms, o.archivePlatform) {
		return fmt.Errorf("--archive-platform %q is not one of --platform %s", o.archivePlatform, strings.Join(o.platforms, ","))
	}
	if !path.IsAbs(o.entrypoint) {
		return fmt.Errorf("--entrypoint %q: want an absolute path inside the image", o.entrypoint)
	}
	var names []string
	for _, p := range o.packages {
		names = append(names, path.Base(p))
	}
	if !contains(names, path.Base(o.entrypoint)) {
		return fmt.Errorf("--entrypoint %q is none of the built binaries %s", o.entrypoint, strings.Join(names, ", "))
	}
	if _, err := name.NewTag(o.tag, name.StrictValidation); err != nil {
		return fmt.Errorf("--tag %q: %w", o.tag, err)
	}
	if o.push != "" {
		if _, err := name.ParseReference(o.push); err != nil {
			return fmt.Errorf("--push %q: %w", o.push, err)
		}
	}
	if o.epoch != "" {
		if _, err := image.ParseEpoch(o.epoch); err != nil {
			return fmt.Errorf("--source-date-epoch: %w", err)
		}
	}
	if o.layout == "" && o.archive == "" && o.push == "" {
		return fmt.Errorf("nothing to do: --layout, --archive and --push are all empty")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Run builds the image and writes it where o says; the index digest and the
// pinned pushed reference go to stdout, progress to stderr.
func Run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	var created time.Time
	var err error
	if o.epoch != "" {
		created, err = image.ParseEpoch(o.epoch)
	} else {
		created, err = image.SourceDateEpoch(ctx, o.dir)
	}
	if err != nil {
		return err
	}
	platforms, _ := image.ParsePlatforms(o.platforms...)

	fmt.Fprintf(stderr, "conduit-image: building %s for %s (timestamps %s)\n",
		strings.Join(o.packages, " "), strings.Join(o.platforms, ", "), created.Format(time.RFC3339))
	opts := []image.Option{
		image.WithGoDir(o.dir),
		image.WithBinDir(path.Dir(o.entrypoint)),
		image.WithEntrypoint(o.entrypoint),
		image.WithUser(o.user),
		image.WithCreated(created),
		image.WithLabels(map[string]string{
			"org.opencontainers.image.title":   path.Base(o.entrypoint),
			"org.opencontainers.image.version": version.Version,
		}),
	}
	if o.verbose {
		opts = append(opts, image.WithBuildLog(stderr))
	}
	idx, err := image.FromGoBinaries(ctx, o.packages, platforms, opts...)
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	tag, _ := name.NewTag(o.tag, name.StrictValidation)

	if o.layout != "" {
		if err := image.WriteLayout(o.layout, idx, tag.TagStr()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "conduit-image: wrote OCI layout %s\n", o.layout)
	}
	if o.archive != "" {
		p, _ := image.ParsePlatforms(o.archivePlatform)
		img, err := image.ImageFor(idx, p[0])
		if err != nil {
			return err
		}
		if err := image.WriteDockerArchive(o.archive, tag, img); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "conduit-image: wrote docker archive %s (%s, %s)\n", o.archive, o.archivePlatform, tag)
	}
	fmt.Fprintln(stdout, digest.String())

	if o.push != "" {
		ref, _ := name.ParseReference(o.push)
		pinned, err := image.PushIndex(ctx, ref, idx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "conduit-image: pushed %s\n", pinned)
		fmt.Fprintf(stdout, "%s@%s\n", o.push, pinned.DigestStr())
	}
	return nil
}

func main() {
	o := defaultOptions()
	fs := pflag.NewFlagSet("conduit-image", pflag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", o.dir, "directory to run `go build` in (the module root)")
	fs.StringSliceVar(&o.packages, "package", o.packages, "Go main packages to build into the image")
	fs.StringSliceVar(&o.platforms, "platform", o.platforms, "platforms of the index, os/arch[/variant]")
	fs.StringVar(&o.entrypoint, "entrypoint", o.entrypoint, "path of the entrypoint binary in the image; binaries go in its directory")
	fs.StringVar(&o.user, "user", o.user, "user the container runs as")
	fs.StringVar(&o.layout, "layout", o.layout, "OCI layout directory to write (empty: none)")
	fs.StringVar(&o.archive, "archive", o.archive, "docker-archive tarball to write (empty: none)")
	fs.StringVar(&o.archivePlatform, "archive-platform", o.archivePlatform, "platform of the image in the tarball")
	fs.StringVar(&o.tag, "tag", o.tag, "tag of the image in the tarball and the layout's ref name")
	fs.StringVar(&o.push, "push", "", "push the index to this reference and print REF@sha256:...")
	fs.StringVar(&o.epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since 1970 for every timestamp (default: $SOURCE_DATE_EPOCH, else the last commit's time)")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "show the go command's output")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			return
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := Run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-image:", err)
		os.Exit(1)
	}
}
