package origdst

import (
	"errors"
	"net"
	"testing"
)

// A loopback connection that was never redirected has no original
// destination of its own: the lookup says so, or, when the kernel tracks
// connections (nf_conntrack is loaded once any NAT rule exists on the
// machine), reports the address the connection was made to. It must never
// invent another.
func TestLookupNotRedirected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			buf := make([]byte, 1)
			c.Read(buf)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, err := Lookup(c)
	if err == nil && dst.String() == c.LocalAddr().String() {
		return
	}
	if !errors.Is(err, ErrNotRedirected) {
		t.Fatalf("Lookup on a direct connection: got %v, %v; want ErrNotRedirected or %s", dst, err, c.LocalAddr())
	}
}
