// Package app runs the proxy: it binds the inbound, outbound and admin
// listeners, wires the protocol handlers to the resolvers and metrics, and
// drains on shutdown.
//
// Each direction takes IPv4 and, where the host has IPv6, IPv6 connections
// (conduit-init redirects both families): inbound on one socket (Go listens
// on both families for an unspecified address such as 0.0.0.0 with network
// "tcp"), outbound on 127.0.0.1 and on ::1, both served by the outbound
// server.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/pkg/version"
	"github.com/conduitmesh/conduit/proxy/internal/admin"
	"github.com/conduitmesh/conduit/proxy/internal/fdlimit"
	"github.com/conduitmesh/conduit/proxy/internal/h2"
	"github.com/conduitmesh/conduit/proxy/internal/http1"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/server"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
)

// Options configure a proxy run. The zero value is not useful; see
// Defaults.
type Options struct {
	// InboundAddr takes IPv4 and IPv6 when its host is unspecified, as
	// 0.0.0.0 is (Go makes such a "tcp" listener dual-stack, and IPv4 only
	// on a host without IPv6); OutboundAddr is IPv4 loopback.
	InboundAddr, OutboundAddr, AdminAddr string
	// OutboundAddrIPv6 is the outbound listener for IPv6 (IPv6 only),
	// served by the same server as OutboundAddr; empty means none. A host
	// without IPv6 (the bind fails with EADDRNOTAVAIL or EAFNOSUPPORT) is
	// logged once at info and served over IPv4 only; any other bind error
	// fails the run as for the other listeners.
	OutboundAddrIPv6 string
	// TapAddr serves the live tap stream (contract.TapPath).
	TapAddr string
	// InboundPorts are the application's container ports (informational:
	// logged at start; every redirected port is proxied).
	InboundPorts  ports.List
	OpaquePorts   ports.List
	LogLevel      slog.Level
	DetectTimeout time.Duration
	DrainTimeout  time.Duration
	// HeadReadTimeout bounds reading one request head; KeepAliveTimeout
	// closes a client connection idle between requests (HTTP/1) or with
	// no stream open (HTTP/2); StreamIdleTimeout ends a request whose
	// upstream sends nothing for that long; OpaqueIdleTimeout closes
	// opaque TCP on which neither side sent anything for that long.
	HeadReadTimeout   time.Duration
	KeepAliveTimeout  time.Duration
	StreamIdleTimeout time.Duration
	OpaqueIdleTimeout time.Duration
	// InboundLoopbackPorts are application ports whose inbound traffic
	// goes to loopback; every other port goes to the pod's own address
	// (the original destination), so ports bound to loopback stay private.
	InboundLoopbackPorts ports.List
	Workload             metrics.Workload
	// Pprof serves /debug/pprof/ on the admin listener.
	Pprof bool
	// CPUProfile, when set, writes a CPU profile of the whole run there.
	CPUProfile string

	// OrigDst finds a connection's original destination; nil means
	// SO_ORIGINAL_DST. Tests inject their own.
	OrigDst origdst.Func
	// InboundResolver and OutboundResolver pick upstream endpoints; nil
	// means resolve.Inbound (with InboundLoopbackPorts) and resolve.OrigDst.
	InboundResolver, OutboundResolver resolve.Resolver
	// Connector opens upstream connections; nil means plain TCP.
	Connector resolve.Connector
	// OnReady, when set, is called with the bound addresses once all
	// listeners are bound.
	OnReady func(inbound, outbound, admin net.Addr)
	// OnTapReady, when set, is called with the tap listener's address
	// before OnReady.
	OnTapReady func(tap net.Addr)
	// OnIPv6Ready, when set, is called before OnReady with the IPv6
	// outbound listener's address, nil when it is not bound.
	OnIPv6Ready func(outbound net.Addr)
}

// Defaults returns the options with the contract's ports and timeouts.
func Defaults() Options {
	return Options{
		InboundAddr:       hostPort(contract.ProxyInboundListenHost, contract.ProxyInboundPort),
		OutboundAddr:      hostPort(contract.ProxyOutboundListenHost, contract.ProxyOutboundPort),
		OutboundAddrIPv6:  hostPort(contract.ProxyOutboundListenHostIPv6, contract.ProxyOutboundPort),
		AdminAddr:         hostPort("0.0.0.0", contract.ProxyAdminPort),
		TapAddr:           hostPort("0.0.0.0", contract.ProxyTapPort),
		OpaquePorts:       ports.MustParse(contract.DefaultOpaquePorts),
		LogLevel:          slog.LevelInfo,
		DetectTimeout:     5 * time.Second,
		DrainTimeout:      20 * time.Second,
		HeadReadTimeout:   30 * time.Second,
		KeepAliveTimeout:  5 * time.Minute,
		StreamIdleTimeout: 5 * time.Minute,
		OpaqueIdleTimeout: time.Hour,
	}
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// noIPv6 reports a bind error that means the host has no IPv6: IPv6
// disabled on loopback or everywhere (no ::1), or no IPv6 in the kernel.
func noIPv6(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)
}

// Run serves until ctx is done, then drains for up to DrainTimeout and
// returns nil. It returns an error when a listener cannot be bound.
func Run(ctx context.Context, o Options, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.LogLevel}))
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.OrigDst == nil {
		o.OrigDst = origdst.Lookup
	}
	if o.InboundResolver == nil {
		o.InboundResolver = resolve.Inbound{LoopbackPorts: o.InboundLoopbackPorts}
	}
	if o.OutboundResolver == nil {
		o.OutboundResolver = resolve.OrigDst{}
	}
	if o.Connector == nil {
		o.Connector = resolve.TCP{}
	}
	m := metrics.New(o.Workload)
	// Connections beyond the descriptor limit would starve the admin
	// port (/live, /ready): raise the soft limit, and shed at accept while
	// a reserve is still free.
	fdMax, err := fdlimit.Raise()
	if err != nil {
		return fmt.Errorf("file descriptor limit: %w", err)
	}
	fds := fdlimit.NewBudget(fdMax)

	var lc net.ListenConfig
	listen := func(name, network, addr string) (net.Listener, error) {
		ln, err := lc.Listen(ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
		}
		return ln, nil
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, l := range []struct{ name, addr string }{
		{"inbound", o.InboundAddr}, {"outbound", o.OutboundAddr}, {"admin", o.AdminAddr}, {"tap", o.TapAddr},
	} {
		ln, err := listen(l.name, "tcp", l.addr)
		if err != nil {
			closeAll()
			return err
		}
		lns = append(lns, ln)
	}
	inLn, outLn, adminLn, tapLn := lns[0], lns[1], lns[2], lns[3]
	// "tcp6": IPv6 only, even for an unspecified address.
	var out6Ln net.Listener
	if o.OutboundAddrIPv6 != "" {
		ln, err := listen("outbound IPv6", "tcp6", o.OutboundAddrIPv6)
		switch {
		case err != nil && noIPv6(err):
			log.Info("no IPv6 on this host: outbound IPv6 listener not bound, serving IPv4 only",
				"addr", o.OutboundAddrIPv6, "err", err)
		case err != nil:
			closeAll()
			return err
		default:
			lns = append(lns, ln)
			out6Ln = ln
		}
	}
	// One hub for both directions: a subscriber sees inbound and outbound
	// requests; with none, the protocol paths do no tap work.
	hub := tap.NewHub()

	newServer := func(direction string, r resolve.Resolver) (*server.Server, error) {
		return server.New(server.Config{
			Direction:         direction,
			OrigDst:           o.OrigDst,
			Resolver:          r,
			Connector:         o.Connector,
			Metrics:           m,
			OpaquePorts:       o.OpaquePorts,
			DetectTimeout:     o.DetectTimeout,
			OpaqueIdleTimeout: o.OpaqueIdleTimeout,
			FDs:               fds,
			HTTP1:             http1.New(direction, r, o.Connector, m, http1.WithLogger(log), http1.WithTap(hub), http1.WithTimeouts(http1.Timeouts{HeadRead: o.HeadReadTimeout, KeepAlive: o.KeepAliveTimeout, StreamIdle: o.StreamIdleTimeout})),
			HTTP2:             h2.New(direction, r, o.Connector, m, h2.WithLogger(log), h2.WithTap(hub), h2.WithKeepAliveTimeout(o.KeepAliveTimeout)),
			Log:               log,
		})
	}
	inbound, err := newServer(contract.DirectionInbound, o.InboundResolver)
	if err != nil {
		closeAll()
		return err
	}
	outbound, err := newServer(contract.DirectionOutbound, o.OutboundResolver)
	if err != nil {
		closeAll()
		return err
	}

	var ready atomic.Bool
	adminSrv := &http.Server{
		Handler:           admin.Handler(m.Handler(), ready.Load, o.Pprof),
		ReadHeaderTimeout: 10 * time.Second,
	}
	tapSrv := &http.Server{
		Handler:           tap.Handler(hub),
		ReadHeaderTimeout: 10 * time.Second,
	}
	var wg sync.WaitGroup
	serveErr := make(chan error, 5)
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, server.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	serve("inbound", func() error { return inbound.Serve(inLn) })
	serve("outbound", func() error { return outbound.Serve(outLn) })
	if out6Ln != nil {
		serve("outbound IPv6", func() error { return outbound.Serve(out6Ln) })
	}
	serve("admin", func() error { return adminSrv.Serve(adminLn) })
	serve("tap", func() error { return tapSrv.Serve(tapLn) })
	ready.Store(true)
	log.Info("conduit-proxy ready", "version", version.Version,
		"inbound", inLn.Addr().String(), "outbound", outLn.Addr().String(),
		"outbound_ipv6", addrOrNone(out6Ln),
		"admin", adminLn.Addr().String(), "tap", tapLn.Addr().String(),
		"inbound_ports", o.InboundPorts.String(), "opaque_ports", o.OpaquePorts.String(),
		"inbound_loopback_ports", o.InboundLoopbackPorts.String(),
		"fd_limit", fdMax, "fd_reserved", fds.Reserved())
	if o.OnTapReady != nil {
		o.OnTapReady(tapLn.Addr())
	}
	if o.OnIPv6Ready != nil {
		o.OnIPv6Ready(addrOf(out6Ln))
	}
	if o.OnReady != nil {
		o.OnReady(inLn.Addr(), outLn.Addr(), adminLn.Addr())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
	}
	ready.Store(false)
	log.Info("draining", "timeout", o.DrainTimeout.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	var dwg sync.WaitGroup
	for _, s := range []*server.Server{inbound, outbound} {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			if err := s.Shutdown(drainCtx); err != nil {
				log.Warn("drain timed out; closed remaining connections", "err", err)
			}
		}()
	}
	dwg.Wait()
	adminSrv.Close()
	tapSrv.Close()
	wg.Wait()
	log.Info("stopped")
	return runErr
}

// addrOf is the listener's address, nil for none.
func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

func addrOrNone(ln net.Listener) string {
	if ln == nil {
		return "none"
	}
	return ln.Addr().String()
}
