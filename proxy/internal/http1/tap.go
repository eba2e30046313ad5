package http1

import (
	"net/netip"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
)

// tapStart reports the request whose head is in cs.req. It runs only while
// someone taps.
func (p *Proxy) tapStart(c *conn.Conn, cs *clientState, seq uint64, start time.Time) *tap.Call {
	req := &cs.req
	r := &tap.Request{
		Time: start, Conn: c.ID, Stream: seq, Direction: p.direction,
		Destination: c.OrigDst,
		Method:      string(req.bytes(req.method)),
		Scheme:      "http",
		Authority:   cs.authStr,
		Path:        string(requestPath(req.bytes(req.target))),
	}
	if a, ok := c.RemoteAddr().(interface{ AddrPort() netip.AddrPort }); ok {
		r.Source = a.AddrPort()
	}
	return p.tap.Start(r)
}

// tapEnd reports the end of the tapped request: body bytes as sent to the
// client (chunk framing included), and the error that cut it short.
func (cs *clientState) tapEnd(body int64, err error) {
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	cs.call.End(body, tap.NoGRPCStatus, reason, time.Now())
	cs.call = nil
}

// requestPath is the path and query of a request target: origin form as
// is, absolute form without its scheme and authority, authority form (CONNECT)
// and asterisk form empty.
func requestPath(t []byte) []byte {
	if len(t) > 0 && t[0] == '/' {
		return t
	}
	for _, scheme := range []string{"http://", "https://"} {
		if len(t) > len(scheme) && equalFold(t[:len(scheme)], scheme) {
			t = t[len(scheme):]
			for i, c := range t {
				if c == '/' || c == '?' {
					return t[i:]
				}
			}
			return []byte("/")
		}
	}
	return nil
}
