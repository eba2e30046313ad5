// Package h2 proxies HTTP/2 connections (h2c with prior knowledge, which
// is how gRPC travels in the clear).
//
// A connection whose upstream answers is relayed frame by frame to its own
// upstream connection (relay.go): streams, flow control, trailers, resets
// and GOAWAY pass end to end, and the relay only reads frame headers and
// header blocks on the way to count, time and tap each request. That path
// costs about what forwarding opaque bytes costs.
//
// A connection whose upstream cannot be reached, or does not speak HTTP/2
// (it answers the preface with something else, or closes), is served by
// net/http's
// HTTP/2 implementation (the bundled copy of golang.org/x/net/http2) in
// unencrypted mode instead: an http.Server answers each of its requests
// with the mapped error (502/503/504 and the reason in a header), trying
// the upstream again per request through an http.Transport that speaks
// h2c prior knowledge.
package h2

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/proxyerr"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
)

// Proxy serves HTTP/2 connections for one direction.
type Proxy struct {
	direction string
	resolver  resolve.Resolver
	connector resolve.Connector
	metrics   *metrics.Metrics
	log       *slog.Logger

	srv       *http.Server
	ln        *connListener
	transport *http.Transport
	bufs      sync.Pool
	tap       tap.Observer
	keepAlive time.Duration
}

// Option configures a Proxy.
type Option func(*Proxy)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(p *Proxy) { p.log = l } }

// WithKeepAliveTimeout closes a connection gracefully (GOAWAY, then
// close once at a frame boundary) when no stream has been open on it for
// d; 0 never does.
func WithKeepAliveTimeout(d time.Duration) Option { return func(p *Proxy) { p.keepAlive = d } }

// WithTap reports requests to o (live tap).
func WithTap(o tap.Observer) Option { return func(p *Proxy) { p.tap = o } }

type connKey struct{}

const bufSize = 16 << 10 // one maximum-size DATA frame

// New returns a Proxy; it starts serving connections passed to ServeConn.
func New(direction string, r resolve.Resolver, c resolve.Connector, m *metrics.Metrics, opts ...Option) *Proxy {
	p := &Proxy{direction: direction, resolver: r, connector: c, metrics: m, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(p)
	}
	p.bufs.New = func() any { b := make([]byte, bufSize); return &b }

	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	// Flow-control windows bound what one connection or stream can make
	// the proxy buffer; in-cluster round trips are short, so these still
	// let a stream run at hundreds of MB/s.
	windows := &http.HTTP2Config{
		MaxReceiveBufferPerConnection: 1 << 20,
		MaxReceiveBufferPerStream:     256 << 10,
	}
	p.transport = &http.Transport{
		Protocols: &h2c,
		HTTP2:     windows,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			return c.Connect(ctx, resolve.Endpoint{Addr: ap})
		},
		DisableCompression:  true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	p.ln = newConnListener()
	p.srv = &http.Server{
		Handler:   p,
		Protocols: &h2c,
		HTTP2:     windows,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c.(*trackedConn).Conn)
		},
		ErrorLog:    slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		IdleTimeout: p.keepAlive,
	}
	go p.srv.Serve(p.ln)
	return p
}

// ServeConn serves c, whose first bytes are the HTTP/2 preface, until it
// closes. The connection is resolved once, by its original destination:
// every stream on it goes to that endpoint.
func (p *Proxy) ServeConn(c *conn.Conn) {
	var replay []byte
	if up := p.dial(c); up != nil {
		var again bool
		if replay, again = p.serveRelay(c, up); !again {
			return
		}
	}
	tc := &trackedConn{Conn: c, replay: replay, closed: make(chan struct{})}
	if !p.ln.push(tc) {
		return
	}
	<-tc.closed
}

// dial connects to c's upstream, or returns nil when it cannot.
func (p *Proxy) dial(c *conn.Conn) net.Conn {
	ctx := context.Background()
	ep, err := p.resolver.Resolve(ctx, resolve.Target{OrigDst: c.OrigDst})
	if err != nil {
		p.log.Debug("h2: resolve", "direction", p.direction, "dst", c.OrigDst, "err", err)
		return nil
	}
	up, err := p.connector.Connect(ctx, ep)
	if err != nil {
		p.log.Debug("h2: connect", "direction", p.direction, "endpoint", ep.Addr, "err", err)
		return nil
	}
	return up
}

// Drain sends GOAWAY on every connection; each closes once its streams
// are done.
func (p *Proxy) Drain() {
	go p.srv.Shutdown(context.Background())
}

// hopByHop are connection-specific fields that must not be forwarded
// (RFC 9113 section 8.2.2); TE is handled apart.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c, _ := r.Context().Value(connKey{}).(*conn.Conn)
	var origDst netip.AddrPort
	if c != nil {
		origDst = c.OrigDst
	}
	route := p.metrics.RouteString(p.direction, r.Host, false)
	route.Request()
	var call *tap.Call
	if p.tap != nil && p.tap.Observing() {
		call = p.tapStart(c, r, start)
		// Whatever path ends the stream, its end is reported (the first
		// End counts).
		defer func() { call.End(0, tap.NoGRPCStatus, "stream ended early", time.Now()) }()
	}

	ep, err := p.resolver.Resolve(r.Context(), resolve.Target{OrigDst: origDst, Authority: r.Host})
	if err != nil {
		p.fail(w, route, start, proxyerr.Map(proxyerr.Resolve, err), call)
		return
	}
	// The request upstream shares the incoming one's header map (it is
	// this handler's to change) instead of cloning it.
	for _, h := range hopByHop {
		r.Header.Del(h)
	}
	if te := r.Header.Get("Te"); te != "" && te != "trailers" {
		r.Header.Del("Te")
	}
	u := *r.URL
	u.Scheme, u.Host = "http", ep.Addr.String()
	out := r.WithContext(r.Context()) // a shallow copy: one allocation
	out.URL = &u
	out.RequestURI = ""
	if r.ContentLength == 0 {
		// Headers that ended the stream: send them upstream the same way
		// rather than as headers and an empty DATA frame.
		out.Body = nil
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() != nil {
			// The client went away (RST_STREAM or connection closed); the
			// transport has cancelled the upstream stream.
			call.End(0, tap.NoGRPCStatus, "client went away: "+r.Context().Err().Error(), time.Now())
			return
		}
		p.fail(w, route, start, proxyerr.Map(proxyerr.Response, err), call)
		return
	}
	defer resp.Body.Close()
	ttfb := time.Since(start)
	var body io.Reader = resp.Body
	var counted *countingReader
	if call != nil {
		call.Response(resp.StatusCode, start.Add(ttfb))
		counted = &countingReader{r: resp.Body}
		body = counted
	}

	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
	// Trailers need no announcement in HTTP/2: they are set with
	// http.TrailerPrefix once the body is done.
	// A gRPC "trailers-only" response (one HEADERS frame ending the
	// stream) carries its status in the headers; only such a response has
	// grpc-status there. net/http always sends headers before ending a
	// stream, so the status moves to trailers, where gRPC clients then
	// look for it.
	var grpcTrailers http.Header
	if h.Get("Grpc-Status") != "" {
		grpcTrailers = http.Header{}
		for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
			if vv, ok := h[k]; ok {
				grpcTrailers[k] = vv
				delete(h, k)
			}
		}
	}
	w.WriteHeader(resp.StatusCode)
	// A response of unknown length may be a stream (gRPC, server-sent
	// events): its headers and every piece go out at once. One of known
	// length goes out as the response writer's buffer fills and when it
	// ends, in fewer writes.
	var rc *http.ResponseController
	if resp.ContentLength < 0 {
		rc = http.NewResponseController(w)
		rc.Flush()
	}

	bp := p.bufs.Get().(*[]byte)
	copyErr := copyFlushing(w, rc, body, *bp)
	p.bufs.Put(bp)

	grpcStatus := metrics.NoGRPCStatus
	if s := resp.Trailer.Get("Grpc-Status"); s != "" {
		grpcStatus = parseStatus(s)
	} else if s := grpcTrailers.Get("Grpc-Status"); s != "" {
		grpcStatus = parseStatus(s)
	}
	if copyErr != nil {
		route.Failed(resp.StatusCode).Observe(ttfb)
		if call != nil {
			call.End(counted.n, grpcStatus, "reset: "+copyErr.Error(), time.Now())
		}
		// Reset the client's stream so it sees the failure rather than a
		// clean end (net/http sends RST_STREAM for an aborted handler).
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	for k, vv := range grpcTrailers {
		h[http.TrailerPrefix+k] = vv
	}
	route.Response(resp.StatusCode, grpcStatus).Observe(ttfb)
	if call != nil {
		call.End(counted.n, grpcStatus, "", time.Now())
	}
}

// copyFlushing copies the body, flushing every piece (when rc is set) so
// streamed messages are not held back.
func copyFlushing(w io.Writer, rc *http.ResponseController, body io.Reader, buf []byte) error {
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if rc != nil {
				if ferr := rc.Flush(); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func parseStatus(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 2 // UNKNOWN
	}
	return n
}

func (p *Proxy) fail(w http.ResponseWriter, route *metrics.Route, start time.Time, e *proxyerr.Error, call *tap.Call) {
	p.log.Debug("h2 request failed", "direction", p.direction, "status", e.Status, "err", e)
	route.Response(e.Status, metrics.NoGRPCStatus).Observe(time.Since(start))
	if call != nil {
		call.Response(e.Status, time.Now())
		defer call.End(int64(len(e.Reason)+1), tap.NoGRPCStatus, "", time.Now())
	}
	w.Header().Set(contract.ProxyErrorHeader, e.Reason)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(e.Status)
	io.WriteString(w, e.Reason+"\n")
}

// trackedConn tells ServeConn when the HTTP server is done with it. Its
// reads begin with replay: what the client sent to an upstream that did
// not speak HTTP/2.
type trackedConn struct {
	*conn.Conn
	replay []byte
	once   sync.Once
	closed chan struct{}
}

func (t *trackedConn) Read(p []byte) (int, error) {
	if len(t.replay) > 0 {
		n := copy(p, t.replay)
		t.replay = t.replay[n:]
		return n, nil
	}
	return t.Conn.Read(p)
}

func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(func() { close(t.closed) })
	return err
}

// connListener hands connections detected elsewhere to an http.Server.
type connListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "h2" }
