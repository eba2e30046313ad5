package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/conduitmesh/conduit/pkg/ports"
)

func TestResolvers(t *testing.T) {
	dst := netip.MustParseAddrPort("10.1.2.3:8080")
	e, err := OrigDst{}.Resolve(context.Background(), Target{OrigDst: dst})
	if err != nil || e.Addr != dst {
		t.Fatalf("OrigDst: %v %v", e, err)
	}
	e, err = Inbound{}.Resolve(context.Background(), Target{OrigDst: dst})
	if err != nil || e.Addr != dst || e.Fallback.IsValid() {
		t.Fatalf("Inbound: %+v %v, want the original destination and no fallback", e, err)
	}
	if _, err := (Inbound{}).Resolve(context.Background(), Target{}); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("Inbound without destination: %v", err)
	}
	if _, err := (OrigDst{}).Resolve(context.Background(), Target{}); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("OrigDst without destination: %v", err)
	}
	if _, err := (TCP{}).Connect(context.Background(), Endpoint{Addr: dst, Identity: "x"}); err == nil {
		t.Fatal("TCP connector must refuse an endpoint that requires mTLS")
	}
}

// By default an inbound connection goes to the pod's address, never to
// loopback: an application port bound only to loopback stays private.
func TestInboundDefaultIsThePodAddress(t *testing.T) {
	for _, dst := range []string{"10.1.2.3:8080", "[fd00:c0d::2]:8080", "[::ffff:10.1.2.3]:8080"} {
		e, err := Inbound{LoopbackPorts: ports.Of(9090)}.Resolve(context.Background(), Target{OrigDst: netip.MustParseAddrPort(dst)})
		want := netip.AddrPortFrom(netip.MustParseAddrPort(dst).Addr().Unmap(), 8080)
		if err != nil || e.Addr != want || e.Fallback.IsValid() || e.Addr.Addr().IsLoopback() {
			t.Errorf("Inbound(%s) = %+v %v, want %s only", dst, e, err, want)
		}
	}

	// 127.0.0.2 stands for the pod's address; an application listening
	// on 127.0.0.1 only, on the same port, is not reached.
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	port := netip.MustParseAddrPort(lo.Addr().String()).Port()
	e, _ := Inbound{}.Resolve(context.Background(), Target{OrigDst: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)})
	if c, err := (TCP{}).Connect(context.Background(), e); err == nil {
		c.Close()
		t.Fatalf("reached the loopback-only application at %s through %+v", lo.Addr(), e)
	}
}

// A port opted in to loopback reaches an application listening only
// there; one listening only on the pod's address is reached through the
// fallback when loopback refuses.
func TestInboundLoopbackPortFallsBackToPodAddress(t *testing.T) {
	loopback := Inbound{LoopbackPorts: ports.MustParse("1-65535")}
	e, err := loopback.Resolve(context.Background(), Target{OrigDst: netip.MustParseAddrPort("10.1.2.3:8080")})
	if err != nil || e.Fallback != netip.MustParseAddrPort("10.1.2.3:8080") {
		t.Fatalf("Inbound: %+v %v, want the original destination as fallback", e, err)
	}
	e, _ = loopback.Resolve(context.Background(), Target{OrigDst: netip.MustParseAddrPort("127.0.0.1:8080")})
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

// On a loopback port an IPv6 connection goes to the application on ::1,
// an IPv4 one (also when written as an IPv4-mapped address) on 127.0.0.1.
func TestInboundLoopbackKeepsTheFamily(t *testing.T) {
	loopback := Inbound{LoopbackPorts: ports.MustParse("1-65535")}
	for _, tc := range []struct {
		dst, addr, fallback string
	}{
		{"[fd00:c0d::2]:8080", "[::1]:8080", "[fd00:c0d::2]:8080"},
		{"[::1]:8080", "[::1]:8080", ""},
		{"[::ffff:10.1.2.3]:8080", "127.0.0.1:8080", "10.1.2.3:8080"},
		{"10.1.2.3:8080", "127.0.0.1:8080", "10.1.2.3:8080"},
	} {
		e, err := loopback.Resolve(context.Background(), Target{OrigDst: netip.MustParseAddrPort(tc.dst)})
		if err != nil {
			t.Fatalf("Inbound(%s): %v", tc.dst, err)
		}
		var fallback string
		if e.Fallback.IsValid() {
			fallback = e.Fallback.String()
		}
		if e.Addr.String() != tc.addr || fallback != tc.fallback {
			t.Errorf("Inbound(%s) = %s fallback %q, want %s fallback %q", tc.dst, e.Addr, fallback, tc.addr, tc.fallback)
		}
	}

	// And the connector reaches an application listening on ::1.
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("no ::1 on this host (CI=1 makes this a failure):", err)
		}
		t.Fatal("no ::1 on this host:", err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	e, _ := loopback.Resolve(context.Background(), Target{OrigDst: netip.AddrPortFrom(netip.MustParseAddr("fd00:c0d::2"), port)})
	c, err := TCP{}.Connect(context.Background(), e)
	if err != nil {
		t.Fatalf("connect to %s: %v", e.Addr, err)
	}
	if got := c.RemoteAddr().String(); got != ln.Addr().String() {
		t.Errorf("connected to %s, want %s", got, ln.Addr())
	}
	c.Close()
}
