// Command meshstat shows the golden signals (stat) and live requests (tap)
// of meshed workloads, reading the cluster through the kubeconfig. See
// meshstat/README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/conduitmesh/conduit/meshstat/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
