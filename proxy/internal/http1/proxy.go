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
}

// Option configures a Proxy.
type Option func(*Proxy)

// WithLogger sets the logger for connection errors.
func WithLogger(l *slog.Logger) Option { return func(p *Proxy) { p.log = l } }

// WithTap reports requests to o (live tap).
func WithTap(o tap.Observer) Option { return func(p *Proxy) { p.tap = o } }

// WithPool sets how many idle connections are kept per endpoint and for how
// long (defaults 64 and 60s).
func WithPool(maxIdle int, idleTimeout time.Duration) Option {
	return func(p *Proxy) { p.pool.maxIdle, p.pool.idleTimeout = maxIdle, idleTimeout }
}

// New returns a Proxy that resolves and connects upstream with r and c and
// records metrics in m.
func New(direction string, r resolve.Resolver, c resolve.Connector, m *metrics.Metrics, opts ...Option) *Proxy {
	const bufSize = 4096
	p := &Proxy{
		direction: direction, resolver: r, connector: c, metrics: m,
		log:     slog.New(slog.DiscardHandler),
		pool:    newPool(64, 60*time.Second, bufSize),
		bufSize: bufSize,
	}
	p.states.New = func() any { return &clientState{w: bufio.NewWriterSize(nil, bufSize)} }
	for _, o := range opts {
		o(p)
	}
	return p
}

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
}

// ServeConn serves requests on c until the client closes, an error makes
// the connection unusable, or the server drains.
func (p *Proxy) ServeConn(c *conn.Conn) {
	cs := p.states.Get().(*clientState)
	cs.w.Reset(c)
	cs.seq = 0
	cs.state.Store(stateActive)
	defer func() {
		if cs.up != nil {
			p.pool.put(cs.up, time.Now())
			cs.up = nil
		}
		cs.w.Reset(nil)
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
		cs.state.Store(stateIdle)
		if c.Draining() {
			return
		}
		err := cs.req.read(c.Reader, true)
		if !cs.state.CompareAndSwap(stateIdle, stateActive) {
			return
		}
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
// client connection can carry another request.
func (p *Proxy) serve(c *conn.Conn, cs *clientState) bool {
	start := time.Now()
	req := &cs.req
	route := cs.routeFor(p, req)
	route.Request()
	cs.seq++
	if p.tap != nil && p.tap.Observing() {
		cs.call = p.tapStart(c, cs, cs.seq, start)
	}

	// A tunnel (CONNECT) or a protocol switch (Upgrade) takes a
	// connection of its own, spliced once the upstream agrees.
	tunnel := req.methodIs("CONNECT")
	if req.upgrade {
		req.switchTo = req.upgradeValue()
	}
	switching := tunnel || req.switchTo.end > req.switchTo.start
	if switching && cs.up != nil {
		// The switch takes a fresh connection; the kept one goes back to
		// the pool rather than being replaced unclosed.
		p.pool.put(cs.up, start)
		cs.up = nil
	}
	reqLen := max(req.contentLength, 0)
	hasBody := req.teChunked || reqLen > 0
	isHead := req.methodIs("HEAD")

	ep, err := p.resolver.Resolve(context.Background(), resolve.Target{OrigDst: c.OrigDst, Authority: cs.authStr})
	if err != nil {
		return p.fail(cs, route, start, proxyerr.Map(proxyerr.Resolve, err), hasBody, isHead)
	}

	var u *upstream
	var upErr error // the upstream failed while taking the request
	for attempt := 0; ; attempt++ {
		if u, err = p.upstreamFor(cs, ep, start, attempt > 0 || switching); err != nil {
			return p.fail(cs, route, start, proxyerr.Map(proxyerr.Connect, err), hasBody, isHead)
		}
		writeRequestHead(u.w, req, c.OrigDst)
		if hasBody {
			if req.expectContinue && req.minor == 1 {
				cs.w.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
				if cs.w.Flush() != nil {
					u.close()
					return false
				}
			}
			if req.teChunked {
				err = copyChunked(u.w, c.Reader, false)
			} else {
				err = copyLength(u.w, c.Reader, reqLen)
			}
			var re readError
			if errors.As(err, &re) {
				// The client went away or sent a broken body: the upstream
				// has a partial request and cannot be reused. A broken
				// body is answered, as no response has started.
				u.close()
				if status, reason := bodyErrorStatus(err); status != 0 {
					p.fail(cs, route, start, &proxyerr.Error{Status: status, Reason: reason, Err: err}, true, isHead)
					linger(c)
				}
				return false
			}
			upErr = err
		}
		if err := u.w.Flush(); err != nil && upErr == nil {
			upErr = err
		}
		err = readResponseHead(u, cs, req.minor)
		if err == nil {
			break
		}
		u.close()
		// A pooled connection the upstream had already closed fails
		// before any response byte; a request without a body can be sent
		// again on a fresh connection.
		if attempt == 0 && u.reused && !hasBody && staleConnError(err, upErr) {
			continue
		}
		if upErr != nil && errors.Is(err, io.EOF) {
			err = upErr
		}
		return p.fail(cs, route, start, proxyerr.Map(proxyerr.Response, err), hasBody && upErr != nil, isHead)
	}

	resp := &u.resp
	cs.responseFor(route, resp.status).Observe(time.Since(start))
	if cs.call != nil {
		cs.call.Response(resp.status, time.Now())
	}
	if switching {
		if (tunnel && resp.status/100 == 2) || (!tunnel && resp.status == 101) {
			p.splice(c, cs, u, tunnel)
			return false
		}
		// Refused: the answer is forwarded as usual, and the connection
		// closes after it (a tunnel's client may already be sending).
		req.connClose = tunnel || req.connClose
	}

	mode := bodyUntilClose
	switch {
	case isHead || resp.status < 200 || resp.status == 204 || resp.status == 304:
		mode = bodyNone
	case resp.hasTE && resp.teChunked:
		mode = bodyChunked
	case resp.hasTE:
	case resp.contentLength >= 0:
		mode = bodyLength
	}
	upKeep := upErr == nil && mode != bodyUntilClose &&
		((resp.minor == 1 && !resp.connClose) || (resp.minor == 0 && resp.connKeepAlive))
	clientKeep := upErr == nil && !c.Draining() &&
		((req.minor == 1 && !req.connClose) || (req.minor == 0 && req.connKeepAlive))
	rechunk := mode == bodyUntilClose && req.minor == 1
	dechunk := mode == bodyChunked && req.minor == 0
	if (mode == bodyUntilClose && !rechunk) || dechunk {
		clientKeep = false
	}
	writeResponseHead(cs.w, resp, clientKeep, req.minor, rechunk, dechunk)
	var headEnd int64
	if cs.call != nil {
		headEnd = c.Written() + int64(cs.w.Buffered())
	}
	switch mode {
	case bodyLength:
		err = copyLength(cs.w, u.r, resp.contentLength)
	case bodyChunked:
		err = copyChunked(cs.w, u.r, dechunk)
	case bodyUntilClose:
		err = copyUntilEOF(cs.w, u.r, rechunk)
	}
	if err == nil {
		err = cs.w.Flush()
	}
	if cs.call != nil {
		cs.tapEnd(c.Written()-headEnd, err)
	}
	if err != nil || !upKeep {
		u.close()
		cs.up = nil
		return err == nil && clientKeep
	}
	cs.up = u
	return clientKeep
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
// one.
func (p *Proxy) upstreamFor(cs *clientState, ep resolve.Endpoint, now time.Time, fresh bool) (*upstream, error) {
	if u := cs.up; u != nil && !fresh {
		cs.up = nil
		if u.addr == ep.Addr && ep.Identity == "" {
			u.reused = true
			return u, nil
		}
		p.pool.put(u, now)
	}
	if ep.Identity == "" && !fresh {
		if u := p.pool.get(ep.Addr, now); u != nil {
			return u, nil
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
