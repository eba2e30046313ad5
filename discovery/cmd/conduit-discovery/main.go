// Command conduit-discovery serves the meshed pods' proxy admin ports to a
// Prometheus beside it, in Prometheus's HTTP service-discovery format, on
// loopback. It lists pods with its pod's service-account token.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/conduitmesh/conduit/discovery"
	"github.com/conduitmesh/conduit/pkg/contract"
)

type options struct {
	listen      string
	apiServer   string
	caFile      string
	tokenFile   string
	minInterval time.Duration
}

func (o options) validate() error {
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		// Only the Prometheus in the same pod needs the list of pods.
		return fmt.Errorf("--listen %q: want a loopback address", o.listen)
	}
	if o.minInterval < 0 {
		return fmt.Errorf("--min-interval %s: must not be negative", o.minInterval)
	}
	return nil
}

// Run serves until ctx ends; it reports where it listens on stderr.
func Run(ctx context.Context, o options, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	server := o.apiServer
	if server == "" {
		var err error
		if server, err = discovery.InClusterServer(); err != nil {
			return err
		}
	}
	client, err := discovery.NewAPIClient(server, o.caFile, o.tokenFile)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(contract.DiscoveryPath, discovery.Handler(client, o.minInterval))
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stderr, "conduit-discovery: serving http://%s%s from %s\n", ln.Addr(), contract.DiscoveryPath, server)
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func main() {
	o := options{
		listen:      "127.0.0.1:" + strconv.Itoa(contract.DiscoveryPort),
		caFile:      filepath.Join(discovery.ServiceAccountDir, "ca.crt"),
		tokenFile:   filepath.Join(discovery.ServiceAccountDir, "token"),
		minInterval: 5 * time.Second,
	}
	fs := pflag.NewFlagSet("conduit-discovery", pflag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", o.listen, "loopback address to serve on")
	fs.StringVar(&o.apiServer, "api-server", "", "API server URL (default: the in-cluster address)")
	fs.StringVar(&o.caFile, "ca-file", o.caFile, "CA bundle of the API server")
	fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, "bearer token file")
	fs.DurationVar(&o.minInterval, "min-interval", o.minInterval, "reuse a pod list this long")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			return
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, o, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-discovery:", err)
		os.Exit(1)
	}
}
