package http1

import (
	"bytes"
	"sync/atomic"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/opaque"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
)

// upgradeValue is the Upgrade field the proxy forwards: present, named in
// Connection, on HTTP/1.1, and not h2c. An h2c upgrade is refused by not
// forwarding it (RFC 9110 section 7.8 lets a server ignore Upgrade): the
// request goes on as HTTP/1.1, and HTTP2-Settings, named in Connection,
// is dropped with it.
func (h *head) upgradeValue() span {
	if !h.upgrade || h.minor != 1 {
		return span{}
	}
	listed := false
	for _, t := range h.connTokens {
		if equalFold(h.bytes(t), "upgrade") {
			listed = true
		}
	}
	if !listed {
		return span{}
	}
	for _, f := range h.fields {
		if !equalFold(h.bytes(f.name), "upgrade") {
			continue
		}
		v := h.bytes(f.value)
		if len(v) == 0 || hasToken(v, "h2c") {
			return span{}
		}
		return f.value
	}
	return span{}
}

// hasToken reports whether the comma-separated list v names tok
// (case-insensitively, ignoring a /version).
func hasToken(v []byte, tok string) bool {
	for part := range bytes.SplitSeq(v, []byte(",")) {
		part = bytes.TrimSpace(part)
		if i := bytes.IndexByte(part, '/'); i >= 0 {
			part = part[:i]
		}
		if equalFold(part, tok) {
			return true
		}
	}
	return false
}

// splice answers the client with the upstream's 101 or 2xx and then
// forwards bytes both ways, half-close included, until both sides are
// done. The upstream connection is used up; the request has been counted
// and its response recorded, and the TCP metrics count the bytes.
func (p *Proxy) splice(c *conn.Conn, cs *clientState, u *upstream, tunnel bool) {
	resp := &u.resp
	writeSwitchHead(cs.w, resp, tunnel)
	if err := cs.w.Flush(); err != nil {
		u.close()
		if cs.call != nil {
			cs.tapEnd(0, err)
		}
		return
	}
	counts := &spliceCounts{inner: c.Counts()}
	// Bytes the upstream sent right after its head (a first WebSocket
	// frame) go to the client before the splice starts.
	if n := u.r.Buffered(); n > 0 {
		b, _ := u.r.Peek(n)
		if _, err := c.Raw().Write(b); err != nil {
			u.close()
			if cs.call != nil {
				cs.tapEnd(0, err)
			}
			return
		}
		counts.Transferred(0, int64(n))
	}
	// Bytes the client sent early are still in its reader (already
	// counted when read).
	var prefix []byte
	if n := c.Reader.Buffered(); n > 0 {
		prefix, _ = c.Reader.Peek(n)
	}
	c.OnDrain(nil) // the tunnel runs until a side closes or the drain deadline
	opaque.Forward(c.Raw(), prefix, u.conn, counts)
	if cs.call != nil {
		cs.call.End(counts.written.Load(), tap.NoGRPCStatus, "", time.Now())
		cs.call = nil
	}
}

// spliceCounts passes counts on and keeps the bytes sent to the client
// (the tap's response bytes).
type spliceCounts struct {
	inner   opaque.Counts
	written atomic.Int64
}

func (s *spliceCounts) Transferred(read, written int64) {
	s.written.Add(written)
	s.inner.Transferred(read, written)
}

// writeSwitchHead writes the upstream's 101 (with the Upgrade it agreed
// to) or its 2xx to CONNECT (whose framing fields mean nothing: the
// tunnel follows the head).
func writeSwitchHead(w interface {
	WriteString(string) (int, error)
	Write([]byte) (int, error)
	WriteByte(byte) error
}, resp *head, tunnel bool) {
	w.WriteString("HTTP/1.1 ")
	s := resp.status
	w.WriteByte(byte('0' + s/100))
	w.WriteByte(byte('0' + s/10%10))
	w.WriteByte(byte('0' + s%10))
	w.WriteByte(' ')
	w.Write(resp.bytes(resp.reason))
	w.WriteString("\r\n")
	var upgrade []byte
	for _, f := range resp.fields {
		name := resp.bytes(f.name)
		if equalFold(name, "upgrade") {
			upgrade = resp.bytes(f.value)
		}
		if f.drop || (tunnel && (equalFold(name, "content-length") || equalFold(name, "transfer-encoding"))) {
			continue
		}
		w.Write(resp.buf[f.name.start:f.value.end])
		w.WriteString("\r\n")
	}
	if !tunnel {
		w.WriteString("Connection: Upgrade\r\n")
		if len(upgrade) > 0 {
			w.WriteString("Upgrade: ")
			w.Write(upgrade)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
}
