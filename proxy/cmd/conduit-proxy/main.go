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
	inboundLoopbackPorts                 string
	detectTimeout                        time.Duration
	// Durations that may come from the environment, parsed in validate.
	drainTimeout, headReadTimeout, keepAliveTimeout string
	streamIdleTimeout, opaqueIdleTimeout            string
	pprof                                           bool
	cpuProfile                                      string
	workload                                        metrics.Workload
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
	fs.StringVar(&o.inboundLoopbackPorts, "inbound-loopback-ports", envOr(contract.EnvProxyInboundLoopbackPorts, ""), "application ports whose inbound traffic goes to loopback (for applications listening only on 127.0.0.1 or ::1), a port list; every other port goes to the pod's own address (env "+contract.EnvProxyInboundLoopbackPorts+")")
	fs.StringVar(&o.drainTimeout, "drain-timeout", envOr(contract.EnvProxyDrainTimeout, d.DrainTimeout.String()), "on SIGTERM, how long in-flight requests may take to finish (env "+contract.EnvProxyDrainTimeout+")")
	fs.StringVar(&o.headReadTimeout, "head-read-timeout", envOr(contract.EnvProxyHeadReadTimeout, d.HeadReadTimeout.String()), "how long a client may take to send one request head (env "+contract.EnvProxyHeadReadTimeout+")")
	fs.StringVar(&o.keepAliveTimeout, "keepalive-timeout", envOr(contract.EnvProxyKeepAliveTimeout, d.KeepAliveTimeout.String()), "close a client connection idle that long between requests, or HTTP/2 with no stream open (env "+contract.EnvProxyKeepAliveTimeout+")")
	fs.StringVar(&o.streamIdleTimeout, "stream-idle-timeout", envOr(contract.EnvProxyStreamIdleTimeout, d.StreamIdleTimeout.String()), "end a request whose upstream sends nothing for that long (env "+contract.EnvProxyStreamIdleTimeout+")")
	fs.StringVar(&o.opaqueIdleTimeout, "opaque-idle-timeout", envOr(contract.EnvProxyOpaqueIdleTimeout, d.OpaqueIdleTimeout.String()), "close opaque TCP on which neither side sent a byte for that long (env "+contract.EnvProxyOpaqueIdleTimeout+")")
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
	a.DetectTimeout = o.detectTimeout
	if a.InboundLoopbackPorts, err = ports.Parse(o.inboundLoopbackPorts); err != nil {
		return a, fmt.Errorf("--inbound-loopback-ports (or %s): %w", contract.EnvProxyInboundLoopbackPorts, err)
	}
	for _, d := range []struct {
		flag, env, value string
		zeroOK           bool
		dst              *time.Duration
	}{
		{"--drain-timeout", contract.EnvProxyDrainTimeout, o.drainTimeout, true, &a.DrainTimeout},
		{"--head-read-timeout", contract.EnvProxyHeadReadTimeout, o.headReadTimeout, false, &a.HeadReadTimeout},
		{"--keepalive-timeout", contract.EnvProxyKeepAliveTimeout, o.keepAliveTimeout, false, &a.KeepAliveTimeout},
		{"--stream-idle-timeout", contract.EnvProxyStreamIdleTimeout, o.streamIdleTimeout, false, &a.StreamIdleTimeout},
		{"--opaque-idle-timeout", contract.EnvProxyOpaqueIdleTimeout, o.opaqueIdleTimeout, false, &a.OpaqueIdleTimeout},
	} {
		v, err := time.ParseDuration(d.value)
		switch {
		case err != nil:
			return a, fmt.Errorf("%s (or %s) %q: want a duration such as 30s or 5m", d.flag, d.env, d.value)
		case v < 0 || v == 0 && !d.zeroOK:
			want := "positive"
			if d.zeroOK {
				want = "not negative"
			}
			return a, fmt.Errorf("%s (or %s) %q: must be %s", d.flag, d.env, d.value, want)
		}
		*d.dst = v
	}
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
