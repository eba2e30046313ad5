package server

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
)

// isSelf recognises a connection addressed to the proxy's own listener in
// both families, also for IPv4 on a dual-stack socket (local address
// ::ffff:127.0.0.1, original destination 127.0.0.1).
func TestIsSelfBothFamilies(t *testing.T) {
	ln, err := net.Listen("tcp", ":0") // dual-stack, as the inbound listener
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	for _, tc := range []struct {
		dial string
		self []string // original destinations that are the listener itself
		not  []string
	}{
		{"127.0.0.1", []string{"127.0.0.1"}, []string{"::1", "10.1.2.3"}},
		{"::1", []string{"::1"}, []string{"127.0.0.1", "fd00:c0d::2"}},
	} {
		c, err := net.Dial("tcp", net.JoinHostPort(tc.dial, strconv.Itoa(int(port))))
		if err != nil {
			if tc.dial == "::1" && os.Getenv("CI") == "" {
				t.Skip("no ::1 on this host (CI=1 makes this a failure):", err)
			}
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range tc.self {
			if dst := netip.AddrPortFrom(netip.MustParseAddr(h), port); !isSelf(s, dst) {
				t.Errorf("connection via %s (local %s): isSelf(%s) = false, want true", tc.dial, s.LocalAddr(), dst)
			}
			if dst := netip.AddrPortFrom(netip.MustParseAddr(h), port+1); isSelf(s, dst) {
				t.Errorf("connection via %s: isSelf(%s) = true for another port", tc.dial, dst)
			}
		}
		for _, h := range tc.not {
			if dst := netip.AddrPortFrom(netip.MustParseAddr(h), port); isSelf(s, dst) {
				t.Errorf("connection via %s (local %s): isSelf(%s) = true, want false", tc.dial, s.LocalAddr(), dst)
			}
		}
		s.Close()
		c.Close()
	}
}
