// Package app runs the proxy: it binds the inbound, outbound and admin
// listeners, wires the protocol handlers to the resolvers and metrics, and
// drains on shutdown.
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/pkg/version"
	"github.com/conduitmesh/conduit/proxy/internal/admin"
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
	InboundAddr, OutboundAddr, AdminAddr string
	// TapAddr serves the live tap stream (contract.TapPath).
	TapAddr string
	// InboundPorts are the application's container ports (informational:
	// logged at start; every redirected port is proxied).
	InboundPorts  ports.List
	OpaquePorts   ports.List
	LogLevel      slog.Level
	DetectTimeout time.Duration
	DrainTimeout  time.Duration
	Workload      metrics.Workload
	// Pprof serves /debug/pprof/ on the admin listener.
	Pprof bool
	// CPUProfile, when set, writes a CPU profile of the whole run there.
	CPUProfile string

	// OrigDst finds a connection's original destination; nil means
	// SO_ORIGINAL_DST. Tests inject their own.
	OrigDst origdst.Func
	// InboundResolver and OutboundResolver pick upstream endpoints; nil
	// means resolve.Local and resolve.OrigDst.
	InboundResolver, OutboundResolver resolve.Resolver
	// Connector opens upstream connections; nil means plain TCP.
	Connector resolve.Connector
	// OnReady, when set, is called with the bound addresses once all
	// listeners are bound.
	OnReady func(inbound, outbound, admin net.Addr)
	// OnTapReady, when set, is called with the tap listener's address
	// before OnReady.
	OnTapReady func(tap net.Addr)
}

// Defaults returns the options with the contract's ports and timeouts.
func Defaults() Options {
	return Options{
		InboundAddr:   fmt.Sprintf("0.0.0.0:%d", contract.ProxyInboundPort),
		OutboundAddr:  fmt.Sprintf("%s:%d", contract.ProxyOutboundListenHost, contract.ProxyOutboundPort),
		AdminAddr:     fmt.Sprintf("0.0.0.0:%d", contract.ProxyAdminPort),
		TapAddr:       fmt.Sprintf("0.0.0.0:%d", contract.ProxyTapPort),
		OpaquePorts:   ports.MustParse(contract.DefaultOpaquePorts),
		LogLevel:      slog.LevelInfo,
		DetectTimeout: 5 * time.Second,
		DrainTimeout:  20 * time.Second,
	}
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
		o.InboundResolver = resolve.Local{}
	}
	if o.OutboundResolver == nil {
		o.OutboundResolver = resolve.OrigDst{}
	}
	if o.Connector == nil {
		o.Connector = resolve.TCP{}
	}
	m := metrics.New(o.Workload)

	var lc net.ListenConfig
	listen := func(name, addr string) (net.Listener, error) {
		ln, err := lc.Listen(ctx, "tcp", addr)
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
		ln, err := listen(l.name, l.addr)
		if err != nil {
			closeAll()
			return err
		}
		lns = append(lns, ln)
	}
	inLn, outLn, adminLn, tapLn := lns[0], lns[1], lns[2], lns[3]
	// One hub for both directions: a subscriber sees inbound and outbound
	// requests; with none, the protocol paths do no tap work.
	hub := tap.NewHub()

	newServer := func(direction string, r resolve.Resolver) (*server.Server, error) {
		return server.New(server.Config{
			Direction:     direction,
			OrigDst:       o.OrigDst,
			Resolver:      r,
			Connector:     o.Connector,
			Metrics:       m,
			OpaquePorts:   o.OpaquePorts,
			DetectTimeout: o.DetectTimeout,
			HTTP1:         http1.New(direction, r, o.Connector, m, http1.WithLogger(log), http1.WithTap(hub)),
			HTTP2:         h2.New(direction, r, o.Connector, m, h2.WithLogger(log), h2.WithTap(hub)),
			Log:           log,
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
	serveErr := make(chan error, 4)
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
	serve("admin", func() error { return adminSrv.Serve(adminLn) })
	serve("tap", func() error { return tapSrv.Serve(tapLn) })
	ready.Store(true)
	log.Info("conduit-proxy ready", "version", version.Version,
		"inbound", inLn.Addr().String(), "outbound", outLn.Addr().String(), "admin", adminLn.Addr().String(),
		"tap", tapLn.Addr().String(),
		"inbound_ports", o.InboundPorts.String(), "opaque_ports", o.OpaquePorts.String())
	if o.OnTapReady != nil {
		o.OnTapReady(tapLn.Addr())
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
