package http1

import (
	"io"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/proxyerr"
)

// reject answers a request the proxy refuses to forward (a malformed or
// ambiguous head: 400, 431, 501) and closes the connection after it. It
// is counted in request_total and response_total and shown to tap like
// any other request; its authority is what the head gave before it was
// refused (empty when the head did not get that far).
func (p *Proxy) reject(c *conn.Conn, cs *clientState, status int, reason string, err error) {
	start := time.Now()
	req := &cs.req
	route := cs.routeFor(p, req)
	route.Request()
	cs.seq++
	if p.tap != nil && p.tap.Observing() {
		cs.call = p.tapStart(c, cs, cs.seq, start)
	}
	p.fail(cs, route, start, &proxyerr.Error{Status: status, Reason: reason, Err: err}, true, req.methodIs("HEAD"))
	linger(c)
}

// Lingering close, as nginx (lingering_close) and net/http do it: closing
// a socket with unread input sends a reset, and a client still sending
// (the rest of an oversized head, a body) may then lose the answer before
// reading it. After answering an error the proxy half-closes and reads
// what the client still sends, for a bounded time and amount.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 1 << 20
)

func linger(c *conn.Conn) {
	conn.CloseWrite(c.Conn)
	c.Raw().SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c.Reader, lingerBytes)
}
