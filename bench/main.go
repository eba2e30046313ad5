// Command bench measures the proxy under load against a direct connection
// and reference proxies, all inside network namespaces it creates, and
// prints one table. `make bench` runs it; it needs root.
//
// For each target and protocol it builds a fresh client/server namespace
// pair, starts the backend (fortio server) and the target's proxies, warms
// up, then runs fortio load at a fixed QPS and at max QPS. Load generator,
// backend and proxies are pinned to one core with GOMAXPROCS=1.
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
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

type options struct {
	duration, warmup time.Duration
	qps              float64
	conns            int
	rounds           int
	size             int
	cpu              string
	protocols        []string
	targets          []string
	keepJSON         string
}

var (
	allTargets   = []string{"direct", "conduit", "mesh", "nginx", "haproxy", "httputil"}
	allProtocols = []string{"http1", "h2c", "grpc"}
)

func (o options) validate() error {
	if o.duration <= 0 || o.warmup < 0 {
		return fmt.Errorf("duration %v must be positive and warm-up %v not negative", o.duration, o.warmup)
	}
	if o.qps <= 0 {
		return fmt.Errorf("qps %v must be positive (max QPS is always measured too)", o.qps)
	}
	if o.rounds < 1 {
		return fmt.Errorf("rounds %d must be at least 1", o.rounds)
	}
	if o.conns < 1 || o.size < 0 {
		return fmt.Errorf("connections %d must be at least 1 and size %d not negative", o.conns, o.size)
	}
	if _, err := strconv.Atoi(o.cpu); err != nil {
		return fmt.Errorf("cpu %q must be one core number", o.cpu)
	}
	for _, t := range o.targets {
		if !slices.Contains(allTargets, t) {
			return fmt.Errorf("unknown target %q (known: %s)", t, strings.Join(allTargets, ","))
		}
	}
	for _, p := range o.protocols {
		if !slices.Contains(allProtocols, p) {
			return fmt.Errorf("unknown protocol %q (known: %s)", p, strings.Join(allProtocols, ","))
		}
	}
	if !slices.Contains(o.targets, "direct") {
		return fmt.Errorf("targets %v must include direct, the baseline", o.targets)
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var envErrs []error
	envDuration := func(key string, def time.Duration) time.Duration {
		v, err := envValue(key, def, time.ParseDuration)
		if err != nil {
			envErrs = append(envErrs, err)
		}
		return v
	}
	envFloat := func(key string, def float64) float64 {
		v, err := envValue(key, def, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
		if err != nil {
			envErrs = append(envErrs, err)
		}
		return v
	}
	fs.DurationVar(&o.duration, "duration", envDuration("BENCH_DURATION", 15*time.Second), "length of each measured run (env BENCH_DURATION)")
	fs.DurationVar(&o.warmup, "warmup", envDuration("BENCH_WARMUP", 5*time.Second), "warm-up before the runs of each target (env BENCH_WARMUP)")
	fs.Float64Var(&o.qps, "qps", envFloat("BENCH_QPS", 1000), "the fixed load, requests per second (env BENCH_QPS)")
	fs.IntVar(&o.conns, "connections", int(envFloat("BENCH_CONNECTIONS", 16)), "concurrent connections (env BENCH_CONNECTIONS)")
	fs.IntVar(&o.rounds, "rounds", int(envFloat("BENCH_ROUNDS", 1)), "rounds over all targets; the table shows each figure's median (env BENCH_ROUNDS)")
	fs.IntVar(&o.size, "size", int(envFloat("BENCH_SIZE", 1024)), "response size in bytes (env BENCH_SIZE)")
	fs.StringVar(&o.cpu, "cpu", envString("BENCH_CPU", "0"), "the core everything is pinned to (env BENCH_CPU)")
	fs.StringSliceVar(&o.targets, "targets", envList("BENCH_TARGETS", allTargets), "targets (env BENCH_TARGETS)")
	fs.StringSliceVar(&o.protocols, "protocols", envList("BENCH_PROTOCOLS", allProtocols), "protocols (env BENCH_PROTOCOLS)")
	fs.StringVar(&o.keepJSON, "keep-json", os.Getenv("BENCH_KEEP_JSON"), "directory to keep fortio's JSON reports in (env BENCH_KEEP_JSON)")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	if len(envErrs) > 0 {
		fmt.Fprintf(stderr, "bench: %v\n", errors.Join(envErrs...))
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func envString(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// envValue parses the environment variable key, or returns def when unset.
func envValue[V any](key string, def V, parse func(string) (V, error)) (V, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	got, err := parse(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: %w", key, v, err)
	}
	return got, nil
}

func envList(key string, def []string) []string {
	if v := os.Getenv(key); v != "" {
		return strings.Split(v, ",")
	}
	return def
}
