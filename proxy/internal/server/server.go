// Package server accepts redirected connections on one listener, finds
// each one's original destination, detects its protocol and hands it to
// the HTTP/1, HTTP/2 or opaque TCP path. It also drains gracefully.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/detect"
	"github.com/conduitmesh/conduit/proxy/internal/fdlimit"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/opaque"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/speakfirst"
	"github.com/prometheus/client_golang/prometheus"
)

// ConnHandler serves one detected protocol on a connection and returns
// when the connection is done. It closes nothing; the server closes the
// connection afterwards.
type ConnHandler interface {
	ServeConn(c *conn.Conn)
}

// Drainer is a handler that needs to hear about draining as a whole (the
// HTTP/2 server sends GOAWAY to every connection).
type Drainer interface {
	Drain()
}

// Adopter is a handler that can use an upstream connection opened while
// the client was silent (the HTTP/1 path pools it) instead of having it
// closed unused.
type Adopter interface {
	Adopt(upstream net.Conn)
}

// ReaderSize is the size of the buffer detection peeks into, and in which
// the HTTP/1 path parses request heads.
const ReaderSize = 4096

// Config is what a Server needs. Direction, OrigDst, Resolver, Connector
// and Metrics are required.
type Config struct {
	Direction     string // contract.DirectionInbound or DirectionOutbound
	OrigDst       origdst.Func
	Resolver      resolve.Resolver
	Connector     resolve.Connector
	Metrics       *metrics.Metrics
	OpaquePorts   ports.List
	DetectTimeout time.Duration // zero means 5s
	// ClientWindow is how long a client may stay silent before the
	// upstream connection is opened to see whether the server speaks
	// first; zero means speakfirst.ClientWindow.
	ClientWindow time.Duration
	// OpaqueIdleTimeout closes opaque TCP on which neither side sent a
	// byte for that long; zero means never.
	OpaqueIdleTimeout time.Duration
	// FDs, when set, is asked at every accept whether the connection fits
	// in the file descriptor budget; one that does not is closed at once
	// and counted in contract.MetricTCPShedTotal.
	FDs *fdlimit.Budget
	// MaxEarlyDials bounds the upstream connections opened for clients
	// that are still silent (speakfirst) at one time; beyond it a silent
	// client waits for its bytes or the detection timeout, as without
	// the race. Zero means DefaultMaxEarlyDials.
	MaxEarlyDials int
	// HTTP1 and HTTP2 serve detected HTTP; when nil that protocol is
	// forwarded as opaque TCP.
	HTTP1, HTTP2 ConnHandler
	Log          *slog.Logger
}

// DefaultMaxEarlyDials is Config.MaxEarlyDials' default: enough for a
// burst of server-first connections (a database pool filling up), small
// enough that a flood of silent clients cannot make the proxy open as
// many connections to the application.
const DefaultMaxEarlyDials = 256

// shedLogEvery is how often at most shed connections are logged.
const shedLogEvery = 10 * time.Second

// Server serves one direction. It is safe to Serve several listeners.
type Server struct {
	cfg  Config
	tcp  *metrics.TCP
	shed prometheus.Counter

	early atomic.Int64 // upstream connections opened for silent clients, in detection

	shedMu     sync.Mutex
	shedSince  int // shed since the last log line
	shedLogged time.Time

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn.Conn]struct{}
	draining  bool
	wg        sync.WaitGroup
}

// New returns a Server; it reports a missing required field.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Direction == "":
		return nil, errors.New("server: Direction is required")
	case cfg.OrigDst == nil:
		return nil, errors.New("server: OrigDst is required")
	case cfg.Resolver == nil || cfg.Connector == nil:
		return nil, errors.New("server: Resolver and Connector are required")
	case cfg.Metrics == nil:
		return nil, errors.New("server: Metrics is required")
	}
	if cfg.DetectTimeout == 0 {
		cfg.DetectTimeout = 5 * time.Second
	}
	if cfg.ClientWindow == 0 {
		cfg.ClientWindow = speakfirst.ClientWindow
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxEarlyDials == 0 {
		cfg.MaxEarlyDials = DefaultMaxEarlyDials
	}
	return &Server{
		cfg:       cfg,
		tcp:       cfg.Metrics.TCP(cfg.Direction, false),
		shed:      cfg.Metrics.Shed(cfg.Direction),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn.Conn]struct{}{},
	}, nil
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("server closed")

// Serve accepts connections on ln until Shutdown, then returns
// ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			draining := s.draining
			s.mu.Unlock()
			if draining {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors and the like: back off and retry.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.cfg.Log.Warn("accept", "direction", s.cfg.Direction, "err", err)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if s.cfg.FDs != nil && !s.cfg.FDs.Admit() {
			s.shedConn(c)
			continue
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// shedConn closes a connection that does not fit in the descriptor
// budget, with a reset (no TIME_WAIT, and the client knows at once), and
// logs at most every shedLogEvery.
func (s *Server) shedConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	s.shed.Inc() // before the close, so the count is there when the client sees it
	c.Close()
	s.shedMu.Lock()
	s.shedSince++
	now := time.Now()
	if now.Sub(s.shedLogged) < shedLogEvery {
		s.shedMu.Unlock()
		return
	}
	n := s.shedSince
	s.shedSince, s.shedLogged = 0, now
	s.shedMu.Unlock()
	s.cfg.Log.Warn("near the file descriptor limit: closing new connections at accept",
		"direction", s.cfg.Direction, "shed", n, "limit", s.cfg.FDs.Limit(), "reserved", s.cfg.FDs.Reserved())
}

func (s *Server) serveConn(raw net.Conn) {
	defer s.wg.Done()
	s.tcp.Opened()
	defer s.tcp.Closed()
	defer raw.Close()
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	dst, err := s.cfg.OrigDst(raw)
	if err != nil {
		s.cfg.Log.Debug("no original destination", "direction", s.cfg.Direction, "peer", raw.RemoteAddr(), "err", err)
		return
	}
	if isSelf(raw, dst) {
		// Connected to the proxy's port directly: conntrack reports the
		// address itself, and forwarding there would loop back into the
		// proxy.
		s.cfg.Log.Debug("connection addressed to the proxy itself", "direction", s.cfg.Direction, "peer", raw.RemoteAddr())
		return
	}
	c := conn.New(raw, dst, s.tcp, ReaderSize)
	if !s.track(c) {
		return
	}
	defer s.untrack(c)

	proto := detect.Opaque
	var early net.Conn // opened while the client was silent
	if !s.cfg.OpaquePorts.Contains(dst.Port()) {
		// A silent client does not wait out the timeout: the upstream
		// connection is opened and a server that speaks first makes the
		// connection opaque at once.
		var counted bool
		r, err := speakfirst.Detect(c, func(ctx context.Context) (net.Conn, error) {
			if s.early.Add(1) > int64(s.cfg.MaxEarlyDials) {
				s.early.Add(-1)
				return nil, errTooManyEarly
			}
			counted = true
			return s.dialOpaque(ctx, c)
		}, s.cfg.ClientWindow, s.cfg.DetectTimeout)
		if counted {
			s.early.Add(-1)
		}
		if err != nil {
			return
		}
		proto, early = r.Protocol, r.Upstream
	}
	switch {
	case proto == detect.HTTP1 && s.cfg.HTTP1 != nil:
		if a, ok := s.cfg.HTTP1.(Adopter); ok && early != nil {
			a.Adopt(early)
		} else {
			closeConn(early)
		}
		s.cfg.HTTP1.ServeConn(c)
	case proto == detect.HTTP2 && s.cfg.HTTP2 != nil:
		closeConn(early)
		s.cfg.HTTP2.ServeConn(c)
	default:
		s.forwardOpaque(c, early)
	}
}

// errTooManyEarly refuses an early upstream connection: MaxEarlyDials
// are open already.
var errTooManyEarly = errors.New("too many upstream connections for silent clients")

func closeConn(c net.Conn) {
	if c != nil {
		c.Close()
	}
}

func isSelf(c net.Conn, dst netip.AddrPort) bool {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return false
	}
	return local.AddrPort().Addr().Unmap() == dst.Addr().Unmap() && local.AddrPort().Port() == dst.Port()
}

// dialOpaque connects to where c's opaque bytes go.
func (s *Server) dialOpaque(ctx context.Context, c *conn.Conn) (net.Conn, error) {
	ep, err := s.cfg.Resolver.Resolve(ctx, resolve.Target{OrigDst: c.OrigDst})
	if err != nil {
		s.cfg.Log.Info("tcp: resolve", "direction", s.cfg.Direction, "dst", c.OrigDst, "err", err)
		return nil, err
	}
	up, err := s.cfg.Connector.Connect(ctx, ep)
	if err != nil {
		s.cfg.Log.Info("tcp: connect", "direction", s.cfg.Direction, "endpoint", ep.Addr, "err", err)
		return nil, err
	}
	return up, nil
}

// forwardOpaque forwards c's bytes to up, or to a new connection when up
// is nil.
func (s *Server) forwardOpaque(c *conn.Conn, up net.Conn) {
	if up == nil {
		var err error
		if up, err = s.dialOpaque(context.Background(), c); err != nil {
			return
		}
	}
	// At the drain timeout's end the server aborts c: the client socket
	// is closed, which ends Forward, and the upstream is closed too so
	// nothing waits on it.
	c.OnAbort(func() { up.Close() })
	prefix, _ := c.Reader.Peek(c.Reader.Buffered())
	opaque.ForwardIdle(c.Raw(), prefix, up, c.Counts(), s.cfg.OpaqueIdleTimeout)
}

func (s *Server) track(c *conn.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, asks every connection to finish (idle HTTP
// connections close at once, busy ones after their request, HTTP/2 gets a
// GOAWAY) and waits for them until ctx is done; then it closes whatever is
// left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, h := range []ConnHandler{s.cfg.HTTP1, s.cfg.HTTP2} {
		if d, ok := h.(Drainer); ok {
			d.Drain()
		}
	}
	for _, c := range conns {
		c.Drain()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Abort()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}
