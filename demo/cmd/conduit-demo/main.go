// Command conduit-demo runs Conduit's walkthrough (`make demo`) and takes it
// away again (`make demo-down`):
//
//	conduit-demo up     control plane + injected emojivoto, then stat and tap
//	conduit-demo down   remove what up added
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/conduitmesh/conduit/cluster"
	"github.com/conduitmesh/conduit/demo"
)

func main() {
	fs := pflag.NewFlagSet("conduit-demo", pflag.ContinueOnError)
	tapFor := fs.Duration("tap-for", 5*time.Second, "how long to show live requests")
	wait := fs.Duration("wait", 5*time.Minute, "how long pods may take to become Ready")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() != 1 || (fs.Arg(0) != "up" && fs.Arg(0) != "down") {
		fmt.Fprintln(os.Stderr, "usage: conduit-demo [--tap-for D] [--wait D] up|down")
		os.Exit(2)
	}
	src, err := cluster.FindSourceDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conduit-demo:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := demo.Defaults(src, os.Stdout)
	o.TapFor, o.Wait = *tapFor, *wait
	start := time.Now()
	run := demo.Up
	if fs.Arg(0) == "down" {
		run = demo.Down
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-demo:", err)
		os.Exit(1)
	}
	fmt.Printf("conduit-demo %s: %s\n", fs.Arg(0), time.Since(start).Round(time.Second))
}
