package origdst

import (
	"errors"
	"net"
	"testing"
)

// A loopback connection that was never redirected has no original
// destination; the lookup must say so rather than invent one.
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
	_, err = Lookup(c)
	if !errors.Is(err, ErrNotRedirected) {
		t.Fatalf("Lookup on a direct connection: got %v, want ErrNotRedirected", err)
	}
}
