package http1

import (
	"net"
	"net/netip"
	"time"
)

// Adopt keeps c, an upstream connection opened while the client had not
// yet spoken (see package speakfirst) for a client that turned out to
// speak HTTP/1, idle in the pool for the address it is connected to, so
// the request that follows uses it instead of opening another.
func (p *Proxy) Adopt(c net.Conn) {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		c.Close()
		return
	}
	ap := a.AddrPort()
	p.pool.put(p.pool.wrap(c, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), time.Now())
}
