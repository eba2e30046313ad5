// Command testapp is the workload of the end-to-end tests, packed into an
// image by the e2e package:
//
//	testapp serve --listen :8080 --listen :9090   answer every HTTP request with "ok <host> <port>"
//	testapp get URL [--count N]                    N sequential GETs; exit 1 unless all return 200
//	testapp sleep                                  wait for a signal (a pod to exec into)
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
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

type options struct {
	command string
	listen  []string
	url     string
	count   int
}

func (o options) validate() error {
	switch o.command {
	case "serve":
		if len(o.listen) == 0 {
			return errors.New("serve needs at least one --listen address")
		}
	case "get":
		if o.url == "" {
			return errors.New("get needs a URL")
		}
		if o.count < 1 {
			return fmt.Errorf("--count=%d: must be at least 1", o.count)
		}
	case "sleep":
	default:
		return fmt.Errorf("unknown command %q: want serve, get or sleep", o.command)
	}
	return nil
}

func main() {
	var o options
	fs := pflag.NewFlagSet("testapp", pflag.ContinueOnError)
	fs.StringArrayVar(&o.listen, "listen", nil, "address to serve on (repeatable)")
	fs.IntVar(&o.count, "count", 1, "requests to send")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		o.command = fs.Arg(0)
	}
	if fs.NArg() > 1 {
		o.url = fs.Arg(1)
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) error {
	switch o.command {
	case "serve":
		return serve(ctx, o.listen)
	case "get":
		return get(ctx, o.url, o.count, out)
	default:
		<-ctx.Done()
		return nil
	}
}

func serve(ctx context.Context, addrs []string) error {
	host, _ := os.Hostname()
	errc := make(chan error, len(addrs))
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "ok %s %s\n", host, port)
			}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		go func() { errc <- srv.Serve(l) }()
		go func() { <-ctx.Done(); srv.Close() }()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func get(ctx context.Context, url string, count int, out io.Writer) error {
	// A new connection per request, so each one crosses the proxies anew.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < count; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("request %d: %w", i+1, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("request %d: %s: %s", i+1, resp.Status, body)
		}
		if i == 0 {
			fmt.Fprintf(out, "%s", body)
		}
	}
	fmt.Fprintf(out, "%d requests to %s: all 200\n", count, url)
	return nil
}
