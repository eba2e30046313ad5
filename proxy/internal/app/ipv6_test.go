package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/ports"
)

// requireIPv6Loopback fails in CI and skips elsewhere when the host has
// no ::1.
func requireIPv6Loopback(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("no ::1 on this host (CI=1 makes this a failure):", err)
		}
		t.Fatal("no ::1 on this host:", err)
	}
	ln.Close()
}

func TestDefaultsListenOnBothFamilies(t *testing.T) {
	d := Defaults()
	for name, got := range map[string][2]string{
		"inbound (dual-stack)": {d.InboundAddr, "0.0.0.0:4143"},
		"outbound":             {d.OutboundAddr, "127.0.0.1:4140"},
		"outbound IPv6":        {d.OutboundAddrIPv6, "[::1]:4140"},
	} {
		if got[0] != got[1] {
			t.Errorf("default %s address = %q, want %q", name, got[0], got[1])
		}
	}
}

// The inbound listener on 0.0.0.0 takes IPv6 connections too: an HTTP
// request over either family reaches the application on loopback of the
// original destination's family (here IPv6, so ::1; the port is opted in
// to loopback) and is counted.
func TestInboundDualStack(t *testing.T) {
	requireIPv6Loopback(t)
	app, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})}
	go srv.Serve(app)
	defer srv.Close()
	port := netip.MustParseAddrPort(app.Addr().String()).Port()
	// The original destination is the pod's IPv6 address: inbound goes to
	// [::1] on its port (the fallback to fd00:c0d::2 is never needed).
	dst := netip.AddrPortFrom(netip.MustParseAddr("fd00:c0d::2"), port)
	r := start(t, dst, func(o *Options) { o.InboundAddr = "0.0.0.0:0"; o.InboundLoopbackPorts = ports.Of(port) })
	inPort := netip.MustParseAddrPort(r.in.String()).Port()
	for _, host := range []string{"127.0.0.1", "::1"} {
		in := net.JoinHostPort(host, strconv.Itoa(int(inPort)))
		c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", in)
		}}}
		resp, err := c.Get("http://web.shop.svc.cluster.local/")
		if err != nil {
			t.Fatalf("GET through %s: %v", in, err)
		}
		resp.Body.Close()
		c.CloseIdleConnections()
		if resp.StatusCode != http.StatusTeapot {
			t.Fatalf("GET through %s: status %d, want 418 from the app on [::1]", in, resp.StatusCode)
		}
	}
	labels := map[string]string{"direction": "inbound", "authority": "web.shop.svc.cluster.local"}
	if v, _ := value(scrape(t, r.admin), "request_total", labels); v != 2 {
		t.Errorf("inbound request_total = %v, want 2 (one per family)", v)
	}
}

// Outbound opaque TCP over the IPv6 listener reaches the original
// destination through the outbound server; shutdown closes that listener
// too.
func TestOutboundIPv6(t *testing.T) {
	requireIPv6Loopback(t)
	echo := echoServer(t)
	r := start(t, echo, func(o *Options) {
		o.OutboundAddrIPv6 = "[::1]:0"
		o.OpaquePorts = ports.Of(echo.Port())
	})
	if r.out6 == nil {
		t.Fatalf("IPv6 outbound listener not bound\nlog:\n%s", r.log)
	}
	if ap := netip.MustParseAddrPort(r.out6.String()); ap.Addr() != netip.IPv6Loopback() {
		t.Fatalf("IPv6 outbound listener bound on %s, want [::1]", r.out6)
	}
	if !strings.Contains(r.log.String(), "outbound_ipv6="+r.out6.String()) {
		t.Errorf("ready log does not name the IPv6 outbound listener:\n%s", r.log)
	}
	c, err := net.Dial("tcp", r.out6.String())
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("v6"), 500)
	c.Write(msg)
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the IPv6 outbound listener: got %d bytes (%v), want %d", len(got), err, len(msg))
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		v, _ := value(scrape(t, r.admin), "tcp_read_bytes_total", map[string]string{"direction": "outbound"})
		if v == float64(len(msg)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbound tcp_read_bytes_total = %v, want %d", v, len(msg))
		}
		time.Sleep(20 * time.Millisecond)
	}

	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	r.done <- nil // for Cleanup
	if c, err := net.DialTimeout("tcp", r.out6.String(), time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after shutdown", r.out6)
	}
}

// A host without IPv6 (here: an address the host does not have, the same
// EADDRNOTAVAIL a pod with IPv6 disabled gets for ::1) is logged once at
// info, and the proxy serves IPv4 and becomes ready.
func TestNoIPv6IsNotFatal(t *testing.T) {
	r := start(t, echoServer(t), func(o *Options) { o.OutboundAddrIPv6 = "[fd00:c0d::98]:0" })
	if r.out6 != nil {
		t.Fatalf("IPv6 outbound listener reported bound on %v", r.out6)
	}
	if code := get(t, "http://"+r.admin.String()+"/ready"); code != 200 {
		t.Fatalf("/ready = %d, want 200", code)
	}
	log := r.log.String()
	if n := strings.Count(log, "no IPv6 on this host"); n != 1 {
		t.Fatalf("log has %d notes about missing IPv6, want 1:\n%s", n, log)
	}
	for _, want := range []string{"level=INFO", "addr=[fd00:c0d::98]:0", "cannot assign requested address", "outbound_ipv6=none"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// IPv4 still serves.
	c, err := net.Dial("tcp", r.out.String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("x"))
	c.(*net.TCPConn).CloseWrite()
	if got, _ := io.ReadAll(c); string(got) != "x" {
		t.Errorf("IPv4 echo = %q, want \"x\"", got)
	}
	c.Close()
}

// Any other bind error on an IPv6 listener fails the run like an IPv4 one.
func TestIPv6BindFailure(t *testing.T) {
	requireIPv6Loopback(t)
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := Defaults()
	o.InboundAddr, o.OutboundAddr, o.AdminAddr, o.TapAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	o.OutboundAddrIPv6 = ln.Addr().String()
	err = Run(context.Background(), o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "outbound IPv6 listener on "+ln.Addr().String()) {
		t.Fatalf("Run with a taken IPv6 port: %v, want an error naming the outbound IPv6 listener", err)
	}
}
