package http1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/server"
)

// flowProxy is startProxy with Proxy options.
func flowProxy(t testing.TB, backend string, opts ...Option) *testProxy {
	t.Helper()
	m := metrics.New(metrics.Workload{})
	cfg := server.Config{
		Direction:    contract.DirectionOutbound,
		OrigDst:      origdst.Fixed(netip.MustParseAddrPort(backend)),
		Resolver:     resolve.OrigDst{},
		Connector:    resolve.TCP{},
		Metrics:      m,
		ClientWindow: time.Minute,
	}
	cfg.HTTP1 = New(cfg.Direction, cfg.Resolver, cfg.Connector, m, opts...)
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv.Shutdown(ctx)
	})
	return &testProxy{addr: ln.Addr().String(), metrics: m, srv: srv}
}

// flowBackend is a raw upstream that records each request head it reads
// and when each of its connections ends.
type flowBackend struct {
	addr     string
	requests chan string    // request lines, in arrival order
	gone     chan time.Time // one per connection, when its client left
	mu       sync.Mutex
	conns    []net.Conn
}

// startFlowBackend runs answer for each request head read (its request
// line and the reader positioned after the head); answer returns false to
// stop reading that connection (it stays open until the client leaves).
func startFlowBackend(t *testing.T, answer func(c net.Conn, br *bufio.Reader, line string) bool) *flowBackend {
	b := &flowBackend{requests: make(chan string, 100), gone: make(chan time.Time, 100)}
	b.addr = rawBackend(t, func(c net.Conn) {
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		defer func() { b.gone <- time.Now() }()
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\r\n" {
					break
				}
			}
			line = strings.TrimSpace(line)
			b.requests <- line
			if !answer(c, br, line) {
				// Silent: wait for the client to go away (at most 10s, so
				// that a proxy that never lets go fails the test rather
				// than hanging it).
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, br)
				return
			}
		}
	})
	t.Cleanup(b.closeAll)
	return b
}

// closeAll closes the backend's connections (so a test that failed does
// not leave the proxy waiting on them).
func (b *flowBackend) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
}

func (b *flowBackend) waitRequest(t *testing.T) string {
	t.Helper()
	select {
	case r := <-b.requests:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the backend")
		return ""
	}
}

// waitGone waits up to d for one of the backend's connections to end and
// returns when it did.
func (b *flowBackend) waitGone(t *testing.T, d time.Duration, what string) time.Time {
	t.Helper()
	select {
	case at := <-b.gone:
		return at
	case <-time.After(d):
		t.Fatalf("%s: the backend's connection still open after %v", what, d)
		return time.Time{}
	}
}

func hang(net.Conn, *bufio.Reader, string) bool { return false }

func answerOK(c net.Conn, _ *bufio.Reader, _ string) bool {
	_, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	return err == nil
}

// flowDial connects to the proxy.
func flowDial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// waitClosed reads from c until it ends and returns how long that took;
// it fails if c is still open after d.
func waitClosed(t *testing.T, c net.Conn, r io.Reader, d time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, r)
	if isTimeout(err) {
		t.Fatalf("%s: connection still open after %v", what, d)
	}
	return time.Since(start)
}

func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// A client that trickles its head (Slowloris) is cut off at the head read
// timeout, counted from the head's first byte; a connection idle before a
// request is under the keep-alive timeout instead.
func TestFlowHeadReadTimeout(t *testing.T) {
	be := startFlowBackend(t, answerOK)
	p := flowProxy(t, be.addr, WithTimeouts(Timeouts{HeadRead: 300 * time.Millisecond, KeepAlive: 5 * time.Second, StreamIdle: 5 * time.Second}))

	slow, slowR := flowDial(t, p.addr)
	fmt.Fprintf(slow, "GET / HTTP/1.1\r\nHost: a\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := slow.Write([]byte("X")); err != nil {
				return
			}
		}
	}()
	if d := waitClosed(t, slow, slowR, 5*time.Second, "trickled head"); d < 250*time.Millisecond {
		t.Fatalf("trickled head cut after %v, before the 300ms head read timeout", d)
	}
	select {
	case r := <-be.requests:
		t.Fatalf("backend got %q from a head that never ended", r)
	default:
	}

	// Idle for longer than the head read timeout before the request: the
	// head timeout has not started, so the request is served.
	c, cr := flowDial(t, p.addr)
	time.Sleep(600 * time.Millisecond) // the client's own pause, not synchronisation
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, body := readResponse(t, cr); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("request after an idle spell: %d %q", resp.StatusCode, body)
	}
}

// A keep-alive connection idle between requests is closed at the keep-alive
// timeout.
func TestFlowKeepAliveTimeout(t *testing.T) {
	be := startFlowBackend(t, answerOK)
	p := flowProxy(t, be.addr, WithTimeouts(Timeouts{HeadRead: 5 * time.Second, KeepAlive: 300 * time.Millisecond, StreamIdle: 5 * time.Second}))
	c, cr := flowDial(t, p.addr)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, body := readResponse(t, cr); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("first request: %d %q", resp.StatusCode, body)
	}
	if d := waitClosed(t, c, cr, 5*time.Second, "idle keep-alive connection"); d < 250*time.Millisecond {
		t.Fatalf("idle connection closed after %v, before the 300ms keep-alive timeout", d)
	}
}

// A client that goes away (FIN or RST) while its request waits for the
// response makes the proxy close the upstream connection, as the backend
// would see directly.
func TestFlowClientGoneClosesUpstream(t *testing.T) {
	for _, rst := range []bool{false, true} {
		name := "FIN"
		if rst {
			name = "RST"
		}
		t.Run(name, func(t *testing.T) {
			be := startFlowBackend(t, hang)
			p := flowProxy(t, be.addr)
			c, _ := flowDial(t, p.addr)
			fmt.Fprintf(c, "GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
			be.waitRequest(t)
			if rst {
				c.(*net.TCPConn).SetLinger(0)
			}
			c.Close()
			left := time.Now()
			if at := be.waitGone(t, 3*time.Second, "client gone"); at.Sub(left) > time.Second {
				t.Fatalf("backend saw its client go away %v after the client left", at.Sub(left))
			}
		})
	}
}

// A request pipelined behind a slow response is not a cancellation: both
// are answered, in order, on the one upstream connection.
func TestFlowPipelinedNotCancellation(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond) // a slow response
		fmt.Fprint(w, r.URL.Path)
	}))
	p := flowProxy(t, be.addr)
	c, cr := flowDial(t, p.addr)
	fmt.Fprintf(c, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the second request arrives while the first waits
	fmt.Fprintf(c, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"/one", "/two"} {
		if resp, body := readResponse(t, cr); resp.StatusCode != 200 || body != want {
			t.Fatalf("pipelined: %d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
	if n := len(be.conns); n != 1 {
		t.Fatalf("backend saw %d connections, want 1", n)
	}
}

// An upstream that sends nothing for the stream idle timeout gets the
// request answered 504 (nothing sent yet) or the connection closed (the
// body stalled), and its connection closed; a slow body that keeps moving
// is not cut.
func TestFlowStreamIdleTimeout(t *testing.T) {
	timeouts := WithTimeouts(Timeouts{HeadRead: 5 * time.Second, KeepAlive: 5 * time.Second, StreamIdle: 300 * time.Millisecond})
	t.Run("no response", func(t *testing.T) {
		be := startFlowBackend(t, hang)
		p := flowProxy(t, be.addr, timeouts)
		c, cr := flowDial(t, p.addr)
		start := time.Now()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, _ := readResponse(t, cr)
		if resp.StatusCode != 504 || resp.Header.Get(contract.ProxyErrorHeader) != "response timeout" {
			t.Fatalf("hung upstream: %d %q, want 504 response timeout", resp.StatusCode, resp.Header.Get(contract.ProxyErrorHeader))
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("504 after %v, before the 300ms stream idle timeout", d)
		}
		be.waitGone(t, 3*time.Second, "timed-out upstream")
	})
	t.Run("stalled body", func(t *testing.T) {
		be := startFlowBackend(t, func(c net.Conn, _ *bufio.Reader, _ string) bool {
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"))
			return false
		})
		p := flowProxy(t, be.addr, timeouts)
		c, cr := flowDial(t, p.addr)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(cr, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if isTimeout(err) || err == nil {
			t.Fatalf("stalled body: read %q, %v; want the connection closed early", b, err)
		}
		be.waitGone(t, 3*time.Second, "stalled upstream")
	})
	t.Run("slow body keeps moving", func(t *testing.T) {
		be := startFlowBackend(t, func(c net.Conn, _ *bufio.Reader, _ string) bool {
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"))
			for range 8 {
				time.Sleep(150 * time.Millisecond) // under the idle timeout each, 1.2s in all
				c.Write([]byte("x"))
			}
			return true
		})
		p := flowProxy(t, be.addr, timeouts)
		c, cr := flowDial(t, p.addr)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, body := readResponse(t, cr); resp.StatusCode != 200 || body != "xxxxxxxx" {
			t.Fatalf("slow body: %d %q", resp.StatusCode, body)
		}
	})
}

// At the drain timeout's end the server aborts what is left: a request
// waiting on a hung upstream ends, its upstream connection is closed, and
// Shutdown returns.
func TestFlowAbortClosesUpstream(t *testing.T) {
	be := startFlowBackend(t, hang)
	p := flowProxy(t, be.addr)
	c, _ := flowDial(t, p.addr)
	fmt.Fprintf(c, "GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
	be.waitRequest(t)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		shut <- p.srv.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want the drain timeout", err)
		}
	case <-time.After(3 * time.Second):
		be.closeAll() // lets the stuck Shutdown finish
		t.Fatal("Shutdown still waiting 3s after a 200ms drain timeout")
	}
	be.waitGone(t, time.Second, "aborted request's upstream")
}

// The backend runs a request and resets the connection without answering:
// the proxy answers 502 and sends a POST only once (it may have run), while
// a GET, idempotent, is sent again.
func TestFlowRetryOnlyIdempotent(t *testing.T) {
	for _, tc := range []struct {
		method string
		status int
		sent   int
	}{{"POST", 502, 1}, {"GET", 200, 2}, {"DELETE", 200, 2}} {
		t.Run(tc.method, func(t *testing.T) {
			var mu sync.Mutex
			served := map[net.Conn]int{}
			be := startFlowBackend(t, func(c net.Conn, _ *bufio.Reader, line string) bool {
				mu.Lock()
				served[c]++
				n := served[c]
				mu.Unlock()
				if n == 2 {
					// Ran the request, then the connection broke.
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
					return false
				}
				return answerOK(c, nil, line)
			})
			p := flowProxy(t, be.addr)
			c, cr := flowDial(t, p.addr)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp, _ := readResponse(t, cr); resp.StatusCode != 200 {
				t.Fatalf("first request: %d", resp.StatusCode)
			}
			be.waitRequest(t)
			fmt.Fprintf(c, "%s /second HTTP/1.1\r\nHost: a\r\n\r\n", tc.method)
			resp, _ := readResponse(t, cr)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s after a reset: %d (%s), want %d", tc.method, resp.StatusCode, resp.Header.Get(contract.ProxyErrorHeader), tc.status)
			}
			sent := 0
			for len(be.requests) > 0 {
				if r := <-be.requests; strings.HasPrefix(r, tc.method+" /second") {
					sent++
				}
			}
			if sent != tc.sent {
				t.Fatalf("backend received the %s %d times, want %d", tc.method, sent, tc.sent)
			}
		})
	}
}

// The backend closes (FIN or RST) a keep-alive connection while it is
// idle; a POST with a body that would have gone on it goes on a fresh one,
// delivered once.
func TestFlowStalePooledConnection(t *testing.T) {
	for _, rst := range []bool{false, true} {
		name := "FIN"
		if rst {
			name = "RST"
		}
		t.Run(name, func(t *testing.T) {
			bodies := make(chan string, 10)
			be := startFlowBackend(t, func(c net.Conn, br *bufio.Reader, line string) bool {
				if strings.HasPrefix(line, "POST") {
					b := make([]byte, 5)
					if _, err := io.ReadFull(br, b); err != nil {
						return false
					}
					bodies <- string(b)
					return answerOK(c, br, line)
				}
				answerOK(c, br, line)
				if rst {
					c.(*net.TCPConn).SetLinger(0)
				}
				return false // and closed while idle
			})
			p := flowProxy(t, be.addr)
			c, cr := flowDial(t, p.addr)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp, _ := readResponse(t, cr); resp.StatusCode != 200 {
				t.Fatalf("first request: %d", resp.StatusCode)
			}
			be.waitRequest(t)
			be.closeAll()
			be.waitGone(t, 3*time.Second, "backend closing")
			time.Sleep(2 * aliveCheckAfter) // the connection idle, as before an application's idle close
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
			if resp, body := readResponse(t, cr); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("POST after the upstream closed its idle connection: %d %q (%s)", resp.StatusCode, body, resp.Header.Get(contract.ProxyErrorHeader))
			}
			if got := <-bodies; got != "hello" || len(bodies) != 0 {
				t.Fatalf("backend received %q and %d more", got, len(bodies))
			}
		})
	}
}

// flowLoopback returns both ends of a loopback TCP connection.
func flowLoopback(b *testing.B) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := <-accepted
	b.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// BenchmarkFlowOverhead is what the request flow's bounds add to one
// steady keep-alive request, in CPU: the keep-alive and head read
// deadlines, the watch timer's reset and stop, and the idle deadlines'
// clock reads (a read and a write on each side). The kept upstream
// connection is not checked alive when it carried a request under
// aliveCheckAfter ago (BenchmarkAliveCheck is that check).
func BenchmarkFlowOverhead(b *testing.B) {
	c, _ := flowLoopback(b)
	cs := newClientState(4096)
	ir := idleReader{c: c, idle: time.Minute, armed: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		setReadTimeout(c, time.Minute)
		setReadTimeout(c, 30*time.Second)
		cs.watch.Reset(watchDelay)
		cs.watch.Stop()
		for range 4 {
			if now := time.Now(); now.Sub(ir.armed) > ir.idle/8 {
				b.Fatal("re-armed")
			}
		}
	}
}

// BenchmarkAliveCheck is the cost of checking a pooled connection before
// reuse: one recv(MSG_PEEK) on an open, quiet loopback socket.
func BenchmarkAliveCheck(b *testing.B) {
	c, _ := flowLoopback(b)
	u := newPool(1, time.Minute, 4096).wrap(c, netip.AddrPort{})
	b.ReportAllocs()
	for b.Loop() {
		if !u.alive() {
			b.Fatal("an open, quiet connection reported dead")
		}
	}
}

// A client that stops sending its request body is cut at the stream idle
// timeout, and the upstream connection that had the partial request is
// closed; a body that trickles steadily is delivered.
func TestFlowStalledRequestBody(t *testing.T) {
	timeouts := WithTimeouts(Timeouts{HeadRead: 5 * time.Second, KeepAlive: 5 * time.Second, StreamIdle: 300 * time.Millisecond})
	bodies := make(chan string, 10)
	be := startFlowBackend(t, func(c net.Conn, br *bufio.Reader, line string) bool {
		b := make([]byte, 8)
		if _, err := io.ReadFull(br, b); err != nil {
			return false
		}
		bodies <- string(b)
		return answerOK(c, br, line)
	})
	p := flowProxy(t, be.addr, timeouts)

	c, cr := flowDial(t, p.addr)
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\nxxxx")
	be.waitRequest(t)
	if d := waitClosed(t, c, cr, 5*time.Second, "stalled request body"); d < 200*time.Millisecond {
		t.Fatalf("stalled body cut after %v, before the 300ms stream idle timeout", d)
	}
	be.waitGone(t, 3*time.Second, "upstream with a partial request")

	c, cr = flowDial(t, p.addr)
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n")
	for range 8 {
		time.Sleep(100 * time.Millisecond) // the client's pace: under the idle timeout, 800ms in all
		c.Write([]byte("y"))
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, body := readResponse(t, cr); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("trickled body: %d %q", resp.StatusCode, body)
	}
	if got := <-bodies; got != "yyyyyyyy" {
		t.Fatalf("backend got %q", got)
	}
}
