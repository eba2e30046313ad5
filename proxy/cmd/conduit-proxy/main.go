// Command conduit-proxy is Conduit's data plane: a transparent sidecar
// proxy for HTTP/1.1, HTTP/2, gRPC and TCP. See proxy/README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/proxy/internal/app"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/spf13/pflag"
)

// options are the flags as given, before validation.
type options struct {
	inboundAddr, outboundAddr, adminAddr string
	outboundAddrIPv6                     string
	tapAddr                              string
	inboundPorts, opaquePorts, logLevel  string
	detectTimeout, drainTimeout          time.Duration
	headRead, keepAlive, streamIdle      time.Duration
	envErr                               error // a timeout variable that does not parse
	pprof                                bool
	cpuProfile                           string
	workload                             metrics.Workload
}

// envDuration is the environment variable's duration, or def when it is
// unset or empty; a bad value is kept in o.envErr.
func envDuration(o *options, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil && o.envErr == nil {
		o.envErr = fmt.Errorf("%s %q: %v", name, v, err)
	}
	return d
}

// envOr is the environment variable's value, or def when it is unset or
// empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	d := app.Defaults()
	var o options
	fs := pflag.NewFlagSet("conduit-proxy", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.inboundAddr, "inbound-addr", d.InboundAddr, "address for redirected inbound connections (IPv4 and IPv6 when the host is 0.0.0.0)")
	fs.StringVar(&o.outboundAddr, "outbound-addr", d.OutboundAddr, "address for redirected outbound IPv4 connections")
	fs.StringVar(&o.outboundAddrIPv6, "outbound-addr-ipv6", d.OutboundAddrIPv6, "address for redirected outbound IPv6 connections; empty for none; not bound, with a note, when the host has no IPv6")
	fs.StringVar(&o.adminAddr, "admin-addr", d.AdminAddr, "address serving "+contract.AdminMetricsPath+", "+contract.AdminLivePath+" and "+contract.AdminReadyPath)
	fs.StringVar(&o.tapAddr, "tap-addr", d.TapAddr, "address serving the live tap stream "+contract.TapPath)
	fs.StringVar(&o.inboundPorts, "inbound-ports", envOr(contract.EnvProxyInboundPorts, ""), "the application's ports, a port list (env "+contract.EnvProxyInboundPorts+")")
	fs.StringVar(&o.opaquePorts, "opaque-ports", envOr(contract.EnvProxyOpaquePorts, contract.DefaultOpaquePorts), "ports forwarded as TCP without protocol detection, a port list (env "+contract.EnvProxyOpaquePorts+")")
	fs.StringVar(&o.logLevel, "log-level", envOr(contract.EnvProxyLogLevel, "info"), "debug, info, warn or error (env "+contract.EnvProxyLogLevel+")")
	fs.DurationVar(&o.detectTimeout, "detect-timeout", d.DetectTimeout, "how long to wait for a client's first bytes before treating it as opaque TCP")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", d.DrainTimeout, "on SIGTERM, how long in-flight requests may take to finish")
	fs.DurationVar(&o.headRead, "head-read-timeout", envDuration(&o, contract.EnvProxyHeadReadTimeout, d.HeadReadTimeout), "how long a client may take to send a request head, from its first byte; 0 for no limit (env "+contract.EnvProxyHeadReadTimeout+")")
	fs.DurationVar(&o.keepAlive, "keepalive-timeout", envDuration(&o, contract.EnvProxyKeepAliveTimeout, d.KeepAliveTimeout), "how long a client connection may stay idle between requests; 0 for no limit (env "+contract.EnvProxyKeepAliveTimeout+")")
	fs.DurationVar(&o.streamIdle, "stream-idle-timeout", envDuration(&o, contract.EnvProxyStreamIdleTimeout, d.StreamIdleTimeout), "how long a request may go without the upstream sending (504 before the response head) or either side taking bytes; 0 for no limit (env "+contract.EnvProxyStreamIdleTimeout+")")
	fs.BoolVar(&o.pprof, "pprof", false, "serve /debug/pprof/ on the admin address")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	o.workload = metrics.Workload{
		Namespace: os.Getenv(contract.EnvPodNamespace),
		Pod:       os.Getenv(contract.EnvPodName),
		Kind:      os.Getenv(contract.EnvWorkloadKind),
		Name:      os.Getenv(contract.EnvWorkloadName),
	}
	return o, nil
}

// validate checks the flags and returns the options to run with.
func (o options) validate() (app.Options, error) {
	a := app.Defaults()
	a.InboundAddr, a.OutboundAddr, a.AdminAddr = o.inboundAddr, o.outboundAddr, o.adminAddr
	a.TapAddr = o.tapAddr
	if o.outboundAddrIPv6 != "" {
		ap, err := netip.ParseAddrPort(o.outboundAddrIPv6)
		if err != nil || !ap.Addr().Is6() || ap.Addr().Is4In6() || ap.Addr().Zone() != "" {
			return a, fmt.Errorf("--outbound-addr-ipv6 %q: want an IPv6 address and port such as [::1]:4140, or empty for none", o.outboundAddrIPv6)
		}
	}
	a.OutboundAddrIPv6 = o.outboundAddrIPv6
	var err error
	if a.InboundPorts, err = ports.Parse(o.inboundPorts); err != nil {
		return a, fmt.Errorf("--inbound-ports (or %s): %w", contract.EnvProxyInboundPorts, err)
	}
	if a.OpaquePorts, err = ports.Parse(o.opaquePorts); err != nil {
		return a, fmt.Errorf("--opaque-ports (or %s): %w", contract.EnvProxyOpaquePorts, err)
	}
	if err := a.LogLevel.UnmarshalText([]byte(o.logLevel)); err != nil {
		return a, fmt.Errorf("--log-level (or %s) %q: want debug, info, warn or error", contract.EnvProxyLogLevel, o.logLevel)
	}
	if o.detectTimeout <= 0 {
		return a, fmt.Errorf("--detect-timeout %v: must be positive", o.detectTimeout)
	}
	if o.drainTimeout < 0 {
		return a, fmt.Errorf("--drain-timeout %v: must not be negative", o.drainTimeout)
	}
	a.DetectTimeout, a.DrainTimeout = o.detectTimeout, o.drainTimeout
	if o.envErr != nil {
		return a, o.envErr
	}
	for _, t := range []struct {
		flag string
		d    time.Duration
	}{{"--head-read-timeout", o.headRead}, {"--keepalive-timeout", o.keepAlive}, {"--stream-idle-timeout", o.streamIdle}} {
		if t.d < 0 {
			return a, fmt.Errorf("%s %v: must not be negative", t.flag, t.d)
		}
	}
	a.HeadReadTimeout, a.KeepAliveTimeout, a.StreamIdleTimeout = o.headRead, o.keepAlive, o.streamIdle
	w := o.workload
	if w.Kind != "" && !slices.Contains(contract.WorkloadKinds, w.Kind) {
		return a, fmt.Errorf("%s %q: want one of %s", contract.EnvWorkloadKind, w.Kind, strings.Join(contract.WorkloadKinds, ", "))
	}
	if (w.Kind == "") != (w.Name == "") {
		return a, fmt.Errorf("%s and %s must be set together (got %q and %q)", contract.EnvWorkloadKind, contract.EnvWorkloadName, w.Kind, w.Name)
	}
	a.Workload = w
	a.Pprof, a.CPUProfile = o.pprof, o.cpuProfile
	return a, nil
}

func main() {
	tuneRuntime()
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err == pflag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "conduit-proxy:", err)
		os.Exit(2)
	}
	a, err := o.validate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conduit-proxy:", err)
		os.Exit(2)
	}
	if os.Getenv("CONDUIT_PROXY_KEEP_TEXT") == "" {
		// Start-up (flag parsing, metric registration, listener setup) is
		// done: drop the pages it touched.
		a.OnReady = func(_, _, _ net.Addr) { trimResidentText() }
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx, a, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-proxy:", err)
		os.Exit(1)
	}
}
