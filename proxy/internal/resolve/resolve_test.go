package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestResolvers(t *testing.T) {
	dst := netip.MustParseAddrPort("10.1.2.3:8080")
	e, err := OrigDst{}.Resolve(context.Background(), Target{OrigDst: dst})
	if err != nil || e.Addr != dst {
		t.Fatalf("OrigDst: %v %v", e, err)
	}
	e, err = Local{}.Resolve(context.Background(), Target{OrigDst: dst})
	if err != nil || e.Addr != netip.MustParseAddrPort("127.0.0.1:8080") {
		t.Fatalf("Local: %v %v", e, err)
	}
	if _, err := (OrigDst{}).Resolve(context.Background(), Target{}); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("OrigDst without destination: %v", err)
	}
	if _, err := (TCP{}).Connect(context.Background(), Endpoint{Addr: dst, Identity: "x"}); err == nil {
		t.Fatal("TCP connector must refuse an endpoint that requires mTLS")
	}
}

// An application listening only on the pod's address is reached through
// the fallback when loopback refuses.
func TestLocalFallsBackToPodAddress(t *testing.T) {
	e, err := Local{}.Resolve(context.Background(), Target{OrigDst: netip.MustParseAddrPort("10.1.2.3:8080")})
	if err != nil || e.Fallback != netip.MustParseAddrPort("10.1.2.3:8080") {
		t.Fatalf("Local: %+v %v, want the original destination as fallback", e, err)
	}
	e, _ = Local{}.Resolve(context.Background(), Target{OrigDst: netip.MustParseAddrPort("127.0.0.1:8080")})
	if e.Fallback.IsValid() {
		t.Fatalf("loopback destination got a fallback: %+v", e)
	}

	// 127.0.0.2 stands for the pod's address: loopback (127.0.0.1) on the
	// same port refuses.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2:", err)
	}
	defer ln.Close()
	pod := netip.MustParseAddrPort(ln.Addr().String())
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := TCP{}.Connect(context.Background(), Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pod.Port()), Fallback: pod})
	if err != nil {
		t.Fatalf("connect with fallback: %v", err)
	}
	if got := c.RemoteAddr().String(); got != pod.String() {
		t.Fatalf("connected to %s, want the fallback %s", got, pod)
	}
	c.Close()
}
