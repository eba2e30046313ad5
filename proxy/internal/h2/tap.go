package h2

import (
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
)

// tapStart reports a request. It runs only while someone taps. The
// stream number is the request's sequence number on the connection.
func (p *Proxy) tapStart(c *conn.Conn, r *http.Request, start time.Time) *tap.Call {
	t := &tap.Request{
		Time: start, Direction: p.direction,
		Method: r.Method, Scheme: "http", Authority: r.Host, Path: r.URL.RequestURI(),
	}
	if c != nil {
		t.Conn, t.Stream, t.Destination = c.ID, c.NextRequest(), c.OrigDst
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		t.Source = ap
	}
	return p.tap.Start(t)
}

// countingReader counts the response body bytes of a tapped request.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
