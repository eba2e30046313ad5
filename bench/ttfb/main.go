// Command ttfb measures what the mesh adds to the time to first byte of
// protocols where the server speaks first (MySQL's handshake, SMTP's
// greeting) on ports that are in no list, against a direct connection in
// the same run. `make bench` runs it; it needs root.
//
// It builds two namespace pairs: one without redirect or proxy (direct) and
// one with conduit-init and conduit-proxy on both sides (mesh, no opaque
// ports). Each server namespace runs MariaDB and an SMTP server. Samples
// alternate between direct and mesh: dial from the client namespace, read
// the first byte, close.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
	"github.com/conduitmesh/conduit/proxy/integration/serverapps"
	"github.com/spf13/pflag"
)

const (
	mysqlPort = 3407 // not a default opaque port (3306 is)
	smtpPort  = 2525 // nor is this (25 and 587 are)
	// target is the most the mesh may add at the median.
	target = 5 * time.Millisecond
)

type options struct {
	samples int
}

func (o options) validate() error {
	if o.samples < 10 {
		return fmt.Errorf("--samples %d: want at least 10", o.samples)
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("ttfb", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	def := 300
	if v, err := strconv.Atoi(os.Getenv("BENCH_TTFB_SAMPLES")); err == nil {
		def = v
	}
	fs.IntVar(&o.samples, "samples", def, "connections per protocol and path (env BENCH_TTFB_SAMPLES)")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "ttfb:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "ttfb: needs root (network namespaces)")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "ttfb:", err)
		return 1
	}
	return 0
}

// Run sets up both paths, measures and prints the table.
func Run(ctx context.Context, o options, out io.Writer) (err error) {
	h := &harness{}
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			err = errors.New(string(a))
		}
		h.cleanup()
		if err == nil && h.failed {
			err = errors.New("failed; see the log above")
		}
	}()
	dir, err := os.MkdirTemp("", "conduit-ttfb-")
	if err != nil {
		return err
	}
	h.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := meshtest.Build(dir)
	if err != nil {
		return err
	}
	direct := meshtest.NewPair(h)
	mesh := meshtest.NewMesh(h, bin, meshtest.MeshOptions{
		ClientProxy: []meshtest.ProxyOption{meshtest.WithArgs("--opaque-ports=", "--log-level=warn")},
		ServerProxy: []meshtest.ProxyOption{meshtest.WithArgs("--opaque-ports=", "--log-level=warn")},
	})
	for i, p := range []*meshtest.Pair{direct, mesh.Pair} {
		d := fmt.Sprintf("%s/db%d", dir, i)
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
		serverapps.StartMariaDB(h, p.Server, d, meshtest.ServerAddr.String(), mysqlPort)
		l, err := p.Server.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", smtpPort))
		if err != nil {
			return err
		}
		h.Cleanup(func() { l.Close() })
		serverapps.ServeSMTP(h, l, "mail.bench.test")
	}

	fmt.Fprintf(out, "Time to first byte, server speaks first, port in no list (%d connections each, alternating; dial to first byte):\n", o.samples)
	fmt.Fprintf(out, "%-8s %10s %10s %10s   %10s %10s %10s   %11s %11s  %s\n",
		"PROTOCOL", "DIRECT_P50", "P90", "P99", "MESH_P50", "P90", "P99", "ADDED_P50", "ADDED_P90", "TARGET")
	ok := true
	for _, proto := range []struct {
		name string
		port int
	}{{"mysql", mysqlPort}, {"smtp", smtpPort}} {
		addr := fmt.Sprintf("%s:%d", meshtest.ServerAddr, proto.port)
		var d, m []time.Duration
		for range o.samples {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			x, err := firstByte(ctx, direct.Client, addr)
			if err != nil {
				return fmt.Errorf("%s direct: %w", proto.name, err)
			}
			y, err := firstByte(ctx, mesh.Client, addr)
			if err != nil {
				return fmt.Errorf("%s mesh: %w", proto.name, err)
			}
			d, m = append(d, x), append(m, y)
		}
		dq, mq := quantiles(d), quantiles(m)
		added := mq[0] - dq[0]
		verdict := "ok (< " + target.String() + ")"
		if added >= target {
			verdict, ok = "MISSED (>= "+target.String()+")", false
		}
		fmt.Fprintf(out, "%-8s %10s %10s %10s   %10s %10s %10s   %11s %11s  %s\n", proto.name,
			ms(dq[0]), ms(dq[1]), ms(dq[2]), ms(mq[0]), ms(mq[1]), ms(mq[2]), ms(added), ms(mq[1]-dq[1]), verdict)
	}
	if !ok {
		return errors.New("the mesh adds more than the target to the time to first byte")
	}
	return nil
}

// firstByte dials addr from ns and returns the time until the server's
// first byte arrives.
func firstByte(ctx context.Context, ns *meshtest.NetNS, addr string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var one [1]byte
	if _, err := io.ReadFull(c, one[:]); err != nil {
		return 0, fmt.Errorf("no greeting: %w", err)
	}
	return time.Since(start), nil
}

// quantiles returns p50, p90 and p99.
func quantiles(d []time.Duration) [3]time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return [3]time.Duration{at(0.5), at(0.9), at(0.99)}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }

// harness implements meshtest.T for a program: cleanups run last-in
// first-out at the end, Fatal aborts the run.
type harness struct {
	cleanups []func()
	failed   bool
}

type abort string

func (h *harness) Helper()           {}
func (h *harness) Cleanup(f func())  { h.cleanups = append(h.cleanups, f) }
func (h *harness) Fatal(args ...any) { h.failed = true; panic(abort(fmt.Sprint(args...))) }
func (h *harness) Skip(args ...any)  { h.Fatal(args...) }
func (h *harness) Failed() bool      { return h.failed }
func (h *harness) Logf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, f+"\n", a...)
}
func (h *harness) Errorf(f string, a ...any) {
	h.failed = true
	fmt.Fprintf(os.Stderr, f+"\n", a...)
}
func (h *harness) Fatalf(f string, a ...any) {
	h.failed = true
	panic(abort(fmt.Sprintf(f, a...)))
}

func (h *harness) cleanup() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	h.cleanups = nil
}
