package speakfirst

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/detect"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
)

// pair returns the proxy's side of an accepted connection and the
// client's side.
func pair(t *testing.T) (*conn.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); accepted.Close() })
	tcp := metrics.New(metrics.Workload{}).TCP("inbound", false)
	return conn.New(accepted, netip.AddrPort{}, tcp, 4096), client
}

// upstream is a server that runs serve on each connection; dial counts
// the connections the proxy opens to it.
type upstream struct {
	addr  string
	dials atomic.Int32
}

func newUpstream(t *testing.T, serve func(net.Conn)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return &upstream{addr: ln.Addr().String()}
}

func (u *upstream) dial(ctx context.Context) (net.Conn, error) {
	u.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, "tcp", u.addr)
}

func greeter(greeting string) func(net.Conn) {
	return func(c net.Conn) {
		c.Write([]byte(greeting))
		io.Copy(io.Discard, c)
	}
}

func silent(c net.Conn) { io.Copy(io.Discard, c) }

// The timeout is far longer than any test may take: a test that passes did
// not wait it out.
const long = time.Minute

func TestServerFirstGoesOpaqueWithoutWaiting(t *testing.T) {
	c, _ := pair(t)
	up := newUpstream(t, greeter("220 mail ready\r\n"))
	r, err := Detect(c, up.dial, time.Millisecond, long)
	if err != nil {
		t.Fatal(err)
	}
	if r.Protocol != detect.Opaque || !r.ServerFirst || r.Upstream == nil {
		t.Fatalf("result %+v, want opaque, server first, with the upstream", r)
	}
	defer r.Upstream.Close()
	// The greeting is still there to forward: nothing was consumed.
	buf := make([]byte, 16)
	r.Upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r.Upstream, buf); err != nil || string(buf) != "220 mail ready\r\n" {
		t.Fatalf("greeting %q, %v", buf, err)
	}
}

func TestPromptClientIsDetectedWithoutUpstream(t *testing.T) {
	c, client := pair(t)
	up := newUpstream(t, greeter("not for http\r\n"))
	client.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	// The bytes are in the proxy's socket before detection starts.
	time.Sleep(20 * time.Millisecond)
	r, err := Detect(c, up.dial, 10*time.Millisecond, long)
	if err != nil {
		t.Fatal(err)
	}
	if r.Protocol != detect.HTTP1 || r.Upstream != nil || up.dials.Load() != 0 {
		t.Fatalf("result %+v after %d dials, want HTTP/1 with no upstream connection", r, up.dials.Load())
	}
}

func TestSlowClientStillDetected(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first string
		want  detect.Protocol
	}{
		{"http1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", detect.HTTP1},
		{"h2", detect.Preface, detect.HTTP2},
		{"tls", "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03", detect.TLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, client := pair(t)
			up := newUpstream(t, silent)
			go func() {
				time.Sleep(50 * time.Millisecond) // well past the window
				client.Write([]byte(tc.first))
			}()
			r, err := Detect(c, up.dial, time.Millisecond, long)
			if err != nil {
				t.Fatal(err)
			}
			if r.Protocol != tc.want || r.ServerFirst || r.Upstream == nil {
				t.Fatalf("result %+v, want %v from the client, with the early upstream", r, tc.want)
			}
			r.Upstream.Close()
			if got, _ := c.Reader.Peek(len(tc.first)); string(got) != tc.first {
				t.Fatalf("client bytes %q not kept for the handler", got)
			}
		})
	}
}

func TestNeitherSpeaksTimesOutOpaque(t *testing.T) {
	c, _ := pair(t)
	up := newUpstream(t, silent)
	r, err := Detect(c, up.dial, time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Protocol != detect.Opaque || r.ServerFirst || r.Upstream == nil {
		t.Fatalf("result %+v, want opaque at the timeout with the upstream", r)
	}
	r.Upstream.Close()
}

func TestUpstreamClosingFirstIsServerFirst(t *testing.T) {
	c, _ := pair(t)
	up := newUpstream(t, func(net.Conn) {})
	r, err := Detect(c, up.dial, time.Millisecond, long)
	if err != nil {
		t.Fatal(err)
	}
	if r.Protocol != detect.Opaque || !r.ServerFirst {
		t.Fatalf("result %+v, want opaque: the server closed first", r)
	}
	r.Upstream.Close()
}

// An upstream that cannot be reached does not stop an HTTP client from
// being detected (its handler answers with the error).
func TestDialFailureFallsBackToClient(t *testing.T) {
	c, client := pair(t)
	go func() {
		time.Sleep(20 * time.Millisecond)
		client.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	}()
	refused := func(context.Context) (net.Conn, error) { return nil, errors.New("refused") }
	r, err := Detect(c, refused, time.Millisecond, long)
	if err != nil {
		t.Fatal(err)
	}
	if r.Protocol != detect.HTTP1 || r.Upstream != nil {
		t.Fatalf("result %+v, want HTTP/1 and no upstream", r)
	}
}

// An HTTP/2 server (gRPC) writes its SETTINGS frame as soon as it accepts.
// When the client is slower than the window, that must not pass for a
// server-first greeting: the client's HTTP/2 preface decides.
func TestHTTP2ServerPrefaceIsNoGreeting(t *testing.T) {
	settings := string([]byte{0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3, 0, 0, 0, 100})
	up := newUpstream(t, greeter(settings))
	c, client := pair(t)
	go func() {
		time.Sleep(50 * time.Millisecond)
		client.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	}()
	r, err := Detect(c, up.dial, time.Millisecond, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Upstream != nil {
		defer r.Upstream.Close()
	}
	if r.Protocol != detect.HTTP2 || r.ServerFirst {
		t.Fatalf("got %v (server first %v), want HTTP/2 from the client's preface", r.Protocol, r.ServerFirst)
	}
}

// A greeting that merely starts like a frame header is still a greeting.
func TestShortServerBytesStayServerFirst(t *testing.T) {
	up := newUpstream(t, greeter("\x00\x00"))
	c, _ := pair(t)
	r, err := Detect(c, up.dial, time.Millisecond, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Upstream != nil {
		defer r.Upstream.Close()
	}
	if r.Protocol != detect.Opaque || !r.ServerFirst {
		t.Fatalf("got %v (server first %v), want opaque, server first", r.Protocol, r.ServerFirst)
	}
}
