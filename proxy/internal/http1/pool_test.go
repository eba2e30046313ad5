package http1

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestPoolExpiresIdleConnections(t *testing.T) {
	p := newPool(2, 50*time.Millisecond, 64)
	addr := netip.MustParseAddrPort("127.0.0.1:1")
	var closed []net.Conn
	mk := func() *upstream {
		a, b := net.Pipe()
		closed = append(closed, b)
		return p.wrap(a, addr)
	}
	now := time.Now()
	u1, u2, u3 := mk(), mk(), mk()
	p.put(u1, now)
	p.put(u2, now)
	p.put(u3, now) // over maxIdle: closed at once
	if got := p.get(addr, now); got != u2 {
		t.Fatal("get must return the most recently used connection")
	}
	if !u2.reused {
		t.Fatal("a pooled connection is marked reused")
	}
	if p.get(addr, now.Add(time.Second)) != nil {
		t.Fatal("a connection idle past the timeout was handed out")
	}
	p.put(u2, time.Now())
	time.Sleep(200 * time.Millisecond)
	p.mu.Lock()
	n := len(p.idle)
	p.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d endpoints still hold idle connections after the idle timeout", n)
	}
	// Every connection ended up closed: reads on the far ends fail.
	for i, c := range closed {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("connection %d not closed: %v", i, err)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
