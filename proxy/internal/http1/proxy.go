// Package http1 proxies HTTP/1.x connections: it parses each request head
// itself, forwards it on a pooled upstream connection, and streams bodies
// through fixed buffers. It avoids net/http on the hot path: a steady
// keep-alive connection forwards requests without allocating.
package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/proxyerr"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
)

// Proxy serves HTTP/1 connections for one direction.
type Proxy struct {
	direction string
	resolver  resolve.Resolver
	connector resolve.Connector
	metrics   *metrics.Metrics
	log       *slog.Logger
	pool      *pool
	bufSize   int
	states    sync.Pool
	tap       tap.Observer
	timeouts  Timeouts
}

// Timeouts bound how long a client or an upstream may keep a request
// waiting. Zero disables one.
type Timeouts struct {
	// HeadRead bounds reading a request head, from its first byte to its
	// end (a client trickling a head, Slowloris).
	HeadRead time.Duration
	// KeepAlive closes a client connection idle between requests.
	KeepAlive time.Duration
	// StreamIdle ends a request whose upstream sends nothing for that
	// long: before the response head it is answered 504, after it the
	// connection is closed.
	StreamIdle time.Duration
}

// DefaultTimeouts are the timeouts a Proxy has unless WithTimeouts says
// otherwise (the same as app.Defaults).
var DefaultTimeouts = Timeouts{HeadRead: 30 * time.Second, KeepAlive: 5 * time.Minute, StreamIdle: 5 * time.Minute}

// WithTimeouts sets the client and upstream timeouts.
func WithTimeouts(t Timeouts) Option { return func(p *Proxy) { p.timeouts = t } }

// Option configures a Proxy.
type Option func(*Proxy)

// WithLogger sets the logger for connection errors.
func WithLogger(l *slog.Logger) Option { return func(p *Proxy) { p.log = l } }

// WithTap reports requests to o (live tap).
func WithTap(o tap.Observer) Option { return func(p *Proxy) { p.tap = o } }

// WithPool sets how many idle connections are kept per endpoint and for how
// long (defaults 64 and DefaultPoolIdle).
func WithPool(maxIdle int, idleTimeout time.Duration) Option {
	return func(p *Proxy) { p.pool.maxIdle, p.pool.idleTimeout = maxIdle, idleTimeout }
}

// New returns a Proxy that resolves and connects upstream with r and c and
// records metrics in m.
func New(direction string, r resolve.Resolver, c resolve.Connector, m *metrics.Metrics, opts ...Option) *Proxy {
	const bufSize = 4096
	p := &Proxy{
		direction: direction, resolver: r, connector: c, metrics: m,
		log:      slog.New(slog.DiscardHandler),
		pool:     newPool(64, DefaultPoolIdle, bufSize),
		bufSize:  bufSize,
		timeouts: DefaultTimeouts,
	}
	p.states.New = func() any { return newClientState(bufSize) }
	for _, o := range opts {
		o(p)
	}
	p.pool.streamIdle = p.timeouts.StreamIdle
	return p
}

// DefaultPoolIdle is how long an idle upstream connection is kept: under
// the 5 s keep-alive of Node.js and Apache, so the upstream rarely closes
// a connection just as the proxy reuses it (see alive for the other
// cases).
const DefaultPoolIdle = 4 * time.Second

// Drain closes idle upstream connections; client connections drain
// through conn.Conn.OnDrain.
func (p *Proxy) Drain() { p.pool.closeIdle() }

const (
	stateIdle int32 = iota
	stateActive
	stateClosing
)

// clientState is the per-connection working set, pooled across
// connections.
type clientState struct {
	w     *bufio.Writer
	req   head
	up    *upstream // kept between requests while it is reusable
	state atomic.Int32

	// Caches so a connection that keeps asking the same authority and
	// getting the same status looks nothing up.
	authStr  string
	route    *metrics.Route
	status   int
	response *metrics.Response

	call *tap.Call // the request in flight, when tapped
	seq  uint64    // requests on this connection (tap ids)

	c    *conn.Conn
	cw   idleWriter               // writes to c under the stream idle timeout
	held atomic.Pointer[upstream] // what abort closes

	// The watch on the client while a response is slow (watchClient).
	watch      *time.Timer
	watchUp    atomic.Pointer[upstream]
	watchStop  atomic.Bool
	watchDone  chan struct{}
	clientGone atomic.Bool
	clientRC   syscall.RawConn // c's, once a watch needed it
	peekFn     func(fd uintptr) bool
	peekGone   bool
	peekBuf    [1]byte
	abortFn    func()
}

func newClientState(bufSize int) *clientState {
	cs := &clientState{w: bufio.NewWriterSize(nil, bufSize), watchDone: make(chan struct{}, 1)}
	cs.watch = time.AfterFunc(time.Hour, cs.watchClient)
	cs.watch.Stop()
	cs.peekFn, cs.abortFn = cs.peekClient, cs.abort
	return cs
}

// exchange is one request as serve's steps hand it on.
type exchange struct {
	start      time.Time
	route      *metrics.Route
	tunnel     bool // CONNECT
	switching  bool // CONNECT, or an Upgrade forwarded
	hasBody    bool
	isHead     bool
	idempotent bool
	reqLen     int64
	upErr      error // the upstream failed while taking the request
}

// ServeConn serves requests on c until the client closes, an error makes
// the connection unusable, or the server drains.
func (p *Proxy) ServeConn(c *conn.Conn) {
	cs := p.states.Get().(*clientState)
	cs.c, cs.clientRC = c, nil
	cs.cw = idleWriter{w: c, c: c, idle: p.timeouts.StreamIdle}
	cs.w.Reset(&cs.cw)
	cs.seq = 0
	cs.state.Store(stateActive)
	c.OnAbort(cs.abortFn)
	defer func() {
		c.OnAbort(nil)
		cs.held.Store(nil)
		if cs.up != nil {
			p.pool.put(cs.up, time.Now())
			cs.up = nil
		}
		cs.w.Reset(nil)
		cs.cw = idleWriter{}
		cs.c, cs.clientRC = nil, nil
		cs.req.trim()
		cs.route, cs.response = nil, nil
		p.states.Put(cs)
	}()
	c.OnDrain(func() {
		// An idle connection closes at once; a busy one after its response.
		if cs.state.CompareAndSwap(stateIdle, stateClosing) {
			c.Raw().SetReadDeadline(time.Unix(1, 0))
		}
	})
	defer c.OnDrain(nil)
	for {
		if !p.nextRequest(c, cs) {
			return
		}
		err := cs.req.read(c.Reader, true)
		if err != nil {
			if status, reason := requestErrorStatus(err); status != 0 {
				p.reject(c, cs, status, reason, err)
			}
			return
		}
		keep := p.serve(c, cs)
		if cs.call != nil {
			cs.call.End(0, tap.NoGRPCStatus, "connection closed", time.Now())
			cs.call = nil
		}
		if !keep {
			return
		}
	}
}

// requestErrorStatus maps a request head error to the status answering it;
// 0 means the connection just ended.
func requestErrorStatus(err error) (int, string) {
	switch err {
	case errHeadTooLarge:
		return 431, err.Error()
	case errBadTE:
		return 501, err.Error()
	case errBadRequestLine, errBadVersion, errBadField, errObsFold, errBareLF,
		errBadLength, errLengthAndChunks, errDupHost, errNoHost, errBadHost,
		errBadTarget, errConnFraming, errDupTE, errTEHTTP10, errConnOptions,
		errUnderscoreFraming:
		return 400, err.Error()
	}
	return 0, ""
}

type bodyMode uint8

const (
	bodyNone bodyMode = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// serve forwards one request and its response. It reports whether the
// client connection can carry another request. Its steps: begin (what
// kind of request), resolve, forward (send it, with one retry when that is
// safe, and read the response head), respond (forward the response).
func (p *Proxy) serve(c *conn.Conn, cs *clientState) bool {
	var x exchange
	p.begin(c, cs, &x)
	ep, err := p.resolver.Resolve(context.Background(), resolve.Target{OrigDst: c.OrigDst, Authority: cs.authStr})
	if err != nil {
		return p.fail(cs, x.route, x.start, proxyerr.Map(proxyerr.Resolve, err), x.hasBody, x.isHead)
	}
	u, keep := p.forward(c, cs, &x, ep)
	if u == nil {
		cs.held.Store(cs.up)
		return keep
	}
	keep = p.respond(c, cs, &x, u)
	cs.held.Store(cs.up)
	return keep
}

// begin counts the request and works out what kind it is.
func (p *Proxy) begin(c *conn.Conn, cs *clientState, x *exchange) {
	x.start = time.Now()
	req := &cs.req
	x.route = cs.routeFor(p, req)
	x.route.Request()
	cs.seq++
	if p.tap != nil && p.tap.Observing() {
		cs.call = p.tapStart(c, cs, cs.seq, x.start)
	}
	method := req.bytes(req.method)
	// A tunnel (CONNECT) or a protocol switch (Upgrade) takes a
	// connection of its own, spliced once the upstream agrees.
	x.tunnel = req.methodIs("CONNECT")
	if req.upgrade {
		req.switchTo = req.upgradeValue()
	}
	x.switching = x.tunnel || req.switchTo.end > req.switchTo.start
	if x.switching && cs.up != nil {
		// The switch takes a fresh connection; the kept one goes back to
		// the pool rather than being replaced unclosed.
		p.pool.put(cs.up, x.start)
		cs.up = nil
	}
	x.reqLen = max(req.contentLength, 0)
	x.hasBody = req.teChunked || x.reqLen > 0
	x.isHead = req.methodIs("HEAD")
	x.idempotent = isIdempotent(method)
}

// forward sends the request to ep and reads the response head. A request
// that failed on a reused connection before any response byte goes once
// more on a fresh one when that is safe (retryable). It returns the
// upstream holding the response head, or nil when the request is over
// (answered by the proxy, or the client is gone) with whether the client
// connection goes on.
func (p *Proxy) forward(c *conn.Conn, cs *clientState, x *exchange, ep resolve.Endpoint) (*upstream, bool) {
	for attempt := 0; ; attempt++ {
		u, err := p.upstreamFor(cs, ep, x.start, attempt > 0 || x.switching)
		if err != nil {
			return nil, p.fail(cs, x.route, x.start, proxyerr.Map(proxyerr.Connect, err), x.hasBody, x.isHead)
		}
		cs.held.Store(u)
		u.lastUsed = x.start
		unsent, err := p.send(c, cs, x, u)
		if err != nil {
			// The client went away or sent a broken body: the upstream
			// has a partial request and cannot be reused. A broken body
			// is answered, as no response has started.
			u.close()
			if status, reason := bodyErrorStatus(err); status != 0 {
				p.fail(cs, x.route, x.start, &proxyerr.Error{Status: status, Reason: reason, Err: err}, true, x.isHead)
				linger(c)
			}
			return nil, false
		}
		err = p.awaitResponse(cs, u)
		if err == nil {
			return u, false
		}
		u.close()
		if err == errClientGone {
			return nil, false
		}
		if attempt == 0 && x.retryable(u, err, unsent) {
			continue
		}
		if x.upErr != nil && errors.Is(err, io.EOF) {
			err = x.upErr
		}
		return nil, p.fail(cs, x.route, x.start, proxyerr.Map(proxyerr.Response, err), x.hasBody && x.upErr != nil, x.isHead)
	}
}

// send writes the request head and body to u. It returns an error only
// when the client failed; an upstream that failed to take the request is
// noted in x.upErr (it may still have answered), and unsent reports that
// the head never fully left.
func (p *Proxy) send(c *conn.Conn, cs *clientState, x *exchange, u *upstream) (unsent bool, err error) {
	req := &cs.req
	x.upErr = nil
	writeRequestHead(u.w, req, c.OrigDst)
	if x.hasBody {
		if req.expectContinue && req.minor == 1 {
			cs.w.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := cs.w.Flush(); err != nil {
				return false, err
			}
		}
		// The body is bounded by the stream idle timeout, not the head's.
		setReadTimeout(c, u.iw.idle)
		u.iw.src = c
		if req.teChunked {
			err = copyChunked(u.w, c.Reader, false)
		} else {
			err = copyLength(u.w, c.Reader, x.reqLen)
		}
		u.iw.src = nil
		var re readError
		if errors.As(err, &re) {
			return false, err
		}
		x.upErr = err
	}
	if err := u.w.Flush(); err != nil {
		if x.upErr == nil {
			x.upErr = err
		}
		// A head cut short cannot have been acted on.
		unsent = !x.hasBody && u.w.Buffered() > 0
	}
	return unsent, nil
}

// retryable reports whether a request that failed on a reused connection
// may go again on a fresh one: the failure looks like a connection the
// upstream closed, the request had no body (it has been consumed), and it
// cannot run twice: an idempotent method (RFC 9110 section 9.2.2), or a
// head that never fully left. A POST the upstream may have run before
// resetting is answered 502 rather than run again.
func (x *exchange) retryable(u *upstream, err error, unsent bool) bool {
	return u.reused && !x.hasBody && (x.idempotent || unsent) && staleConnError(err, x.upErr)
}

// respond forwards the response whose head u holds: a switch is spliced,
// anything else has its body forwarded in the framing the client can read.
// It reports whether the client connection goes on.
func (p *Proxy) respond(c *conn.Conn, cs *clientState, x *exchange, u *upstream) bool {
	req, resp := &cs.req, &u.resp
	cs.responseFor(x.route, resp.status).Observe(time.Since(x.start))
	if cs.call != nil {
		cs.call.Response(resp.status, time.Now())
	}
	if x.switching {
		if (x.tunnel && resp.status/100 == 2) || (!x.tunnel && resp.status == 101) {
			// A tunnel has no stream idle timeout, like opaque TCP.
			u.ir.disarm()
			u.iw.disarm()
			cs.cw.disarm()
			c.Raw().SetReadDeadline(time.Time{})
			p.splice(c, cs, u, x.tunnel)
			return false
		}
		// Refused: the answer is forwarded as usual, and the connection
		// closes after it (a tunnel's client may already be sending).
		req.connClose = x.tunnel || req.connClose
	}
	f := framingFor(req, resp, x, c.Draining())
	writeResponseHead(cs.w, resp, f.clientKeep, req.minor, f.rechunk, f.dechunk)
	var headEnd int64
	if cs.call != nil {
		headEnd = c.Written() + int64(cs.w.Buffered())
	}
	err := copyResponseBody(cs.w, u, &f)
	if cs.call != nil {
		cs.tapEnd(c.Written()-headEnd, err)
	}
	if err != nil || !f.upKeep {
		u.close()
		cs.up = nil
		return err == nil && f.clientKeep
	}
	cs.up = u
	return f.clientKeep
}

// framing is how a response goes to the client, and which connections
// stay open after it.
type framing struct {
	mode               bodyMode
	upKeep, clientKeep bool
	rechunk, dechunk   bool // close-delimited to chunked (1.1 client), chunked to raw (1.0)
}

func framingFor(req, resp *head, x *exchange, draining bool) framing {
	f := framing{mode: responseBodyMode(resp, x.isHead)}
	f.upKeep = x.upErr == nil && f.mode != bodyUntilClose && keepAlive(resp)
	f.clientKeep = x.upErr == nil && !draining && keepAlive(req)
	f.rechunk = f.mode == bodyUntilClose && req.minor == 1
	f.dechunk = f.mode == bodyChunked && req.minor == 0
	if (f.mode == bodyUntilClose && !f.rechunk) || f.dechunk {
		f.clientKeep = false // the end of the body is the end of the connection
	}
	return f
}

// keepAlive reports whether a message's sender keeps the connection open
// after it (RFC 9112 section 9.3).
func keepAlive(h *head) bool {
	return (h.minor == 1 && !h.connClose) || (h.minor == 0 && h.connKeepAlive)
}

// copyResponseBody forwards the response body from u to w and flushes.
func copyResponseBody(w *bufio.Writer, u *upstream, f *framing) error {
	var err error
	switch f.mode {
	case bodyLength:
		err = copyLength(w, u.r, u.resp.contentLength)
	case bodyChunked:
		err = copyChunked(w, u.r, f.dechunk)
	case bodyUntilClose:
		err = copyUntilEOF(w, u.r, f.rechunk)
	}
	if err == nil {
		err = w.Flush()
	}
	return err
}

// responseBodyMode is how the response body is delimited (RFC 9112
// section 6.3).
func responseBodyMode(resp *head, isHead bool) bodyMode {
	switch {
	case isHead || resp.status < 200 || resp.status == 204 || resp.status == 304:
		return bodyNone
	case resp.hasTE && resp.teChunked:
		return bodyChunked
	case resp.hasTE:
		return bodyUntilClose
	case resp.contentLength >= 0:
		return bodyLength
	}
	return bodyUntilClose
}

// staleConnError reports whether a failure looks like a reused connection
// the upstream had closed while it was idle.
func staleConnError(readErr, writeErr error) bool {
	for _, err := range []error{readErr, writeErr} {
		if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
			return true
		}
	}
	return false
}

// readResponseHead reads the response head into u.resp, forwarding
// interim (1xx) responses to an HTTP/1.1 client.
func readResponseHead(u *upstream, cs *clientState, clientMinor int) error {
	for {
		if err := u.resp.read(u.r, false); err != nil {
			return err
		}
		s := u.resp.status
		if s >= 200 {
			return nil
		}
		if s == 101 {
			if cs.req.switchTo.end > cs.req.switchTo.start {
				return nil // the switch the client asked for
			}
			// Upgrade was not forwarded, so a switch is a broken upstream.
			return errors.New("unexpected 101 Switching Protocols")
		}
		if clientMinor == 1 {
			writeResponseHead(cs.w, &u.resp, true, 1, false, false)
			if err := cs.w.Flush(); err != nil {
				return err
			}
		}
	}
}

// upstreamFor returns a connection to ep: the one this client used last if
// it goes to the same place, else a pooled one, else (or when fresh) a new
// one. A kept or pooled connection is used only if it is still alive: one
// the upstream closed while it was idle is dropped before any byte is
// written to it. The kept one is checked once it has carried no request
// for aliveCheckAfter.
func (p *Proxy) upstreamFor(cs *clientState, ep resolve.Endpoint, now time.Time, fresh bool) (*upstream, error) {
	if u := cs.up; u != nil && !fresh {
		cs.up = nil
		switch {
		case u.addr != ep.Addr || ep.Identity != "":
			p.pool.put(u, now)
		case u.r.Buffered() == 0 && now.Sub(u.lastUsed) < aliveCheckAfter, u.alive():
			u.reused = true
			return u, nil
		default:
			u.close()
		}
	}
	if ep.Identity == "" && !fresh {
		for {
			u := p.pool.get(ep.Addr, now)
			if u == nil {
				break
			}
			if u.alive() {
				return u, nil
			}
			u.close()
		}
	}
	c, err := p.connector.Connect(context.Background(), ep)
	if err != nil {
		return nil, err
	}
	return p.pool.wrap(c, ep.Addr), nil
}

// fail answers with the proxy's own error response and records it.
func (p *Proxy) fail(cs *clientState, route *metrics.Route, start time.Time, e *proxyerr.Error, bodyUnread, isHead bool) bool {
	p.log.Debug("request failed", "direction", p.direction, "status", e.Status, "err", e)
	cs.responseFor(route, e.Status).Observe(time.Since(start))
	if cs.call != nil {
		cs.call.Response(e.Status, time.Now())
	}
	// With the request body unread the connection cannot be reused.
	keep := !bodyUnread && !cs.req.connClose && cs.req.minor == 1
	writeErrorResponse(cs.w, e.Status, e.Reason, keep, isHead)
	err := cs.w.Flush()
	if cs.call != nil {
		n := int64(len(e.Reason) + 1)
		if isHead {
			n = 0
		}
		cs.tapEnd(n, err)
	}
	if err != nil {
		return false
	}
	return keep
}

// routeFor returns the metrics route for the request's authority, caching
// the authority string across requests on the connection.
func (cs *clientState) routeFor(p *Proxy, req *head) *metrics.Route {
	auth := req.authority()
	if cs.route != nil && string(auth) == cs.authStr {
		return cs.route
	}
	cs.authStr = string(auth)
	cs.route = p.metrics.Route(p.direction, auth, false)
	cs.response = nil
	return cs.route
}

func (cs *clientState) responseFor(route *metrics.Route, status int) *metrics.Response {
	if cs.response != nil && cs.status == status && route == cs.route {
		return cs.response
	}
	r := route.Response(status, metrics.NoGRPCStatus)
	if route == cs.route {
		cs.status, cs.response = status, r
	}
	return r
}

// authority is the authority of an absolute-form (or CONNECT) target, else
// the Host field (see head.finishAuthority); nil for an HTTP/1.0 request
// without either.
func (h *head) authority() []byte {
	if h.hasHost {
		return h.bytes(h.host)
	}
	return nil
}

func writeRequestHead(w *bufio.Writer, req *head, origDst netip.AddrPort) {
	w.Write(req.bytes(req.method))
	w.WriteByte(' ')
	w.Write(req.bytes(req.target))
	w.WriteString(" HTTP/1.1\r\n")
	switch {
	case req.hostFromTarget:
		// The target's authority wins over Host (the Host fields are
		// dropped): the next hop sees the authority the proxy routed by.
		w.WriteString("Host: ")
		w.Write(req.bytes(req.host))
		w.WriteString("\r\n")
	case !req.hasHost:
		// An HTTP/1.0 client may not have sent Host; HTTP/1.1 requires it.
		w.WriteString("Host: ")
		w.WriteString(origDst.String())
		w.WriteString("\r\n")
	}
	for _, f := range req.fields {
		if !f.drop {
			w.Write(req.buf[f.name.start:f.value.end])
			w.WriteString("\r\n")
		}
	}
	if req.switchTo.end > req.switchTo.start {
		w.WriteString("Connection: Upgrade\r\nUpgrade: ")
		w.Write(req.bytes(req.switchTo))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

func writeResponseHead(w *bufio.Writer, resp *head, keep bool, clientMinor int, rechunk, dechunk bool) {
	w.WriteString("HTTP/1.1 ")
	s := resp.status
	w.WriteByte(byte('0' + s/100))
	w.WriteByte(byte('0' + s/10%10))
	w.WriteByte(byte('0' + s%10))
	w.WriteByte(' ')
	w.Write(resp.bytes(resp.reason))
	w.WriteString("\r\n")
	for _, f := range resp.fields {
		if f.drop || (dechunk && equalFold(resp.bytes(f.name), "transfer-encoding")) {
			continue
		}
		w.Write(resp.buf[f.name.start:f.value.end])
		w.WriteString("\r\n")
	}
	switch {
	case !keep:
		w.WriteString("Connection: close\r\n")
	case clientMinor == 0:
		w.WriteString("Connection: keep-alive\r\n")
	}
	if rechunk {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	w.WriteString("\r\n")
}

func writeErrorResponse(w *bufio.Writer, status int, reason string, keep, isHead bool) {
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(status))
	w.WriteByte(' ')
	w.WriteString(statusText(status))
	w.WriteString("\r\n" + contract.ProxyErrorHeader + ": ")
	w.WriteString(reason)
	w.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(reason) + 1))
	w.WriteString("\r\n")
	if !keep {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	if !isHead {
		w.WriteString(reason)
		w.WriteByte('\n')
	}
}

func statusText(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return "Error"
}
