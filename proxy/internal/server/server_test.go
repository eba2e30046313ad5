package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/detect"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
)

// recordBackend accepts one connection, optionally greets first, and
// reports every byte it receives until the peer half-closes.
func recordBackend(t *testing.T, greeting string) (netip.AddrPort, <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if greeting != "" {
			c.Write([]byte(greeting))
		}
		b, _ := io.ReadAll(c)
		got <- b
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), got
}

// marker records that a protocol handler was chosen.
type marker struct{ called chan string }

func (m marker) ServeConn(c *conn.Conn) { m.called <- "handled" }

func startServer(t *testing.T, cfg Config) string {
	t.Helper()
	if cfg.Direction == "" {
		cfg.Direction = contract.DirectionInbound
	}
	if cfg.Resolver == nil {
		cfg.Resolver = resolve.OrigDst{}
	}
	cfg.Connector = resolve.TCP{}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(metrics.Workload{})
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func send(t *testing.T, addr string, data []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(data)
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return b
}

func TestTLSPassesThroughAsOpaque(t *testing.T) {
	dst, got := recordBackend(t, "")
	h := marker{make(chan string, 1)}
	addr := startServer(t, Config{OrigDst: origdst.Fixed(dst), HTTP1: h, HTTP2: h})
	hello := []byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03}
	send(t, addr, hello)
	if b := <-got; !bytes.Equal(b, hello) {
		t.Fatalf("backend got %x, want the ClientHello %x untouched", b, hello)
	}
	if len(h.called) != 0 {
		t.Fatal("a TLS connection went to an HTTP handler")
	}
}

// On an opaque port even an HTTP request is forwarded byte for byte.
func TestOpaquePortSkipsDetection(t *testing.T) {
	dst, got := recordBackend(t, "")
	h := marker{make(chan string, 1)}
	addr := startServer(t, Config{OrigDst: origdst.Fixed(dst), OpaquePorts: ports.Of(dst.Port()), HTTP1: h})
	req := []byte("GET / HTTP/1.1\r\nBad Header\r\n\r\n")
	send(t, addr, req)
	if b := <-got; !bytes.Equal(b, req) {
		t.Fatalf("backend got %q, want %q", b, req)
	}
	if len(h.called) != 0 {
		t.Fatal("an opaque-port connection went to the HTTP handler")
	}
}

func TestHTTPGoesToHandlers(t *testing.T) {
	dst, _ := recordBackend(t, "")
	h1, h2 := marker{make(chan string, 1)}, marker{make(chan string, 1)}
	addr := startServer(t, Config{OrigDst: origdst.Fixed(dst), HTTP1: h1, HTTP2: h2})
	send(t, addr, []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	send(t, addr, []byte(detect.Preface))
	select {
	case <-h1.called:
	case <-time.After(2 * time.Second):
		t.Fatal("HTTP/1 request not handed to the HTTP/1 handler")
	}
	select {
	case <-h2.called:
	case <-time.After(2 * time.Second):
		t.Fatal("HTTP/2 preface not handed to the HTTP/2 handler")
	}
}

// A server-speaks-first protocol on a port that is not marked opaque works
// once the detection timeout passes: the client then sees the greeting.
func TestSilentClientFallsBackToOpaque(t *testing.T) {
	dst, got := recordBackend(t, "220 smtp ready\r\n")
	addr := startServer(t, Config{OrigDst: origdst.Fixed(dst), DetectTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "220 smtp ready\r\n" {
		t.Fatalf("greeting %q, %v", buf, err)
	}
	c.Write([]byte("QUIT\r\n"))
	c.(*net.TCPConn).CloseWrite()
	if b := <-got; string(b) != "QUIT\r\n" {
		t.Fatalf("backend got %q", b)
	}
}

// A connection that reached the proxy without a redirect has nowhere to
// go: it is closed, never forwarded to the proxy itself.
func TestNotRedirectedIsClosed(t *testing.T) {
	addr := startServer(t, Config{OrigDst: func(net.Conn) (netip.AddrPort, error) {
		return netip.AddrPort{}, origdst.ErrNotRedirected
	}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err != io.EOF && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection without an original destination left open")
		}
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{Direction: "inbound"}); err == nil {
		t.Fatal("New without OrigDst, Resolver, Connector and Metrics succeeded")
	}
}

// Shutdown with an opaque connection that never ends closes it when the
// drain deadline passes and reports the deadline.
func TestShutdownClosesStragglers(t *testing.T) {
	dst, _ := recordBackend(t, "")
	m := metrics.New(metrics.Workload{})
	s, err := New(Config{Direction: "inbound", OrigDst: origdst.Fixed(dst), OpaquePorts: ports.Of(dst.Port()),
		Resolver: resolve.OrigDst{}, Connector: resolve.TCP{}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("straggler connection still open after the drain deadline")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepting after Shutdown")
	}
}

// A client that connects to the proxy's own port has that port as its
// "original" destination; the proxy must not forward to itself.
func TestConnectionToSelfIsClosed(t *testing.T) {
	addr := startServer(t, Config{OrigDst: func(c net.Conn) (netip.AddrPort, error) {
		return c.LocalAddr().(*net.TCPAddr).AddrPort(), nil
	}, OpaquePorts: ports.MustParse("1-65535")})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection addressed to the proxy itself left open (forwarded in a loop?)")
	}
}
