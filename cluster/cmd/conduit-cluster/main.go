// Command conduit-cluster runs the local single-node Kubernetes the
// end-to-end tests use.
//
//	conduit-cluster up [--image TAR]...   start the node (idempotent)
//	conduit-cluster down                  stop it and clean the machine (idempotent)
//	conduit-cluster prepare               install packages and build the binaries only
//	conduit-cluster validate -f FILE...   server-side dry-run FILEs on a throwaway API server
//	conduit-cluster leftovers             list anything of the node still on the machine
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/conduitmesh/conduit/cluster"
)

type options struct {
	command  string
	stateDir string
	cacheDir string
	images   []string
	files    []string
}

func (o options) validate() error {
	switch o.command {
	case "up", "down", "prepare", "leftovers":
		if len(o.files) > 0 {
			return fmt.Errorf("-f is only for validate")
		}
	case "validate":
		if len(o.files) == 0 {
			return errors.New("validate needs at least one -f FILE")
		}
	case "":
		return errors.New("missing command: up, down, prepare, validate or leftovers")
	default:
		return fmt.Errorf("unknown command %q: want up, down, prepare, validate or leftovers", o.command)
	}
	for _, p := range append(append([]string(nil), o.images...), o.files...) {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("file %s: %w", p, err)
		}
	}
	return nil
}

func main() {
	var o options
	fs := pflag.NewFlagSet("conduit-cluster", pflag.ContinueOnError)
	fs.StringVar(&o.stateDir, "state-dir", cluster.DefaultStateDir, "folder of the running node's files")
	fs.StringVar(&o.cacheDir, "cache-dir", cluster.DefaultCacheDir, "folder of the built Kubernetes binaries")
	fs.StringArrayVar(&o.images, "image", nil, "docker-archive tarball to import into the node (repeatable)")
	fs.StringArrayVarP(&o.files, "filename", "f", nil, "manifest to validate (repeatable)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		o.command = fs.Arg(0)
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(os.Stderr, "conduit-cluster: unexpected arguments %v\n", fs.Args()[1:])
		os.Exit(2)
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-cluster:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) error {
	opts := []cluster.Option{
		cluster.WithStateDir(o.stateDir), cluster.WithCacheDir(o.cacheDir),
		cluster.WithImages(o.images...), cluster.WithProgress(out),
	}
	switch o.command {
	case "up":
		kc, err := cluster.Up(ctx, opts...)
		if err != nil {
			// What did start stays up for inspection; logs are in the state folder.
			return fmt.Errorf("%w\n(logs in %s/logs; `conduit-cluster down` or `make cluster-down` cleans up)", err, o.stateDir)
		}
		fmt.Fprintf(out, "export KUBECONFIG=%s\n", kc)
		return nil
	case "down":
		return cluster.Down(ctx, opts...)
	case "prepare":
		if err := cluster.EnsurePackages(ctx, func(s string) { fmt.Fprintln(out, s) }, cluster.DebianPackages...); err != nil {
			return err
		}
		bin, err := cluster.EnsureBinaries(ctx, opts...)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "Kubernetes %s binaries in %s\n", cluster.KubernetesVersion, bin)
		return nil
	case "leftovers":
		left := cluster.Leftovers(ctx, opts...)
		for _, l := range left {
			fmt.Fprintln(out, l)
		}
		if len(left) > 0 {
			return fmt.Errorf("%d leftovers of the local node", len(left))
		}
		fmt.Fprintln(out, "clean: nothing of the local node is on this machine")
		return nil
	case "validate":
		return validate(ctx, o, opts, out)
	}
	return fmt.Errorf("unknown command %q", o.command)
}

// validate dry-runs each file on a throwaway validation control plane.
func validate(ctx context.Context, o options, opts []cluster.Option, out io.Writer) error {
	dir, err := os.MkdirTemp("", "conduit-validate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	v, err := cluster.StartValidationCluster(ctx, dir, opts...)
	if err != nil {
		return err
	}
	defer v.Stop()
	var failed int
	for _, f := range o.files {
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", v.Kubeconfig, "apply", "--server-side", "--dry-run=server", "-f", f)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			failed++
			fmt.Fprintf(out, "%s: rejected\n", f)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files rejected", failed, len(o.files))
	}
	return nil
}
