package adversarial

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// The HTTP/1 request flow under slow and silent clients and upstreams:
// client timeouts, upstream timeouts and cancellation, retries, stale
// pooled connections, drain. A raw backend in the server namespace records
// what it received and when each of its connections ended.

const flowPort = 8071

// flowBackend is the application in the server namespace.
type flowBackend struct {
	requests chan flowRequest
	gone     chan time.Time // when one of its connections ended
	mu       sync.Mutex
	conns    []net.Conn
}

type flowRequest struct {
	line string // the request line
	body string
}

// flowAnswer handles one request read on c (n counts requests on c, from
// 1) and returns false to go silent: the connection then stays open until
// the proxy closes it (at most 20s).
type flowAnswer func(c net.Conn, r flowRequest, n int) bool

// flowMesh starts both proxies with the given extra flags each, and the
// backend on flowPort.
func flowMesh(t *testing.T, clientArgs, serverArgs []string, answer flowAnswer) (*meshtest.Mesh, *flowBackend) {
	t.Helper()
	meshtest.RequireRoot(t, "ss")
	m := meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{
		ClientProxy: []meshtest.ProxyOption{meshtest.WithArgs(clientArgs...)},
		ServerProxy: []meshtest.ProxyOption{meshtest.WithArgs(serverArgs...)},
	})
	l, err := m.Server.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", flowPort))
	if err != nil {
		t.Fatal(err)
	}
	b := &flowBackend{requests: make(chan flowRequest, 100), gone: make(chan time.Time, 100)}
	t.Cleanup(func() {
		l.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			go b.serve(c, answer)
		}
	}()
	return m, b
}

func (b *flowBackend) serve(c net.Conn, answer flowAnswer) {
	defer func() { b.gone <- time.Now() }()
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		r := flowRequest{line: strings.TrimSpace(line)}
		length := 0
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if l == "\r\n" {
				break
			}
			if v, ok := strings.CutPrefix(strings.ToLower(l), "content-length:"); ok {
				fmt.Sscan(v, &length)
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		r.body = string(body)
		b.requests <- r
		if !answer(c, r, n) {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			io.Copy(io.Discard, br)
			return
		}
	}
}

// flowUpstreamConns counts the server proxy's established connections to
// the backend.
func flowUpstreamConns(t *testing.T, m *meshtest.Mesh) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := m.Server.Output(ctx, "ss", "-Htn", "state", "established", "(", "dport", "=", fmt.Sprintf(":%d", flowPort), ")")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), "\n")
}

func flowOK(c net.Conn, _ flowRequest, _ int) bool {
	_, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	return err == nil
}

func flowHang(net.Conn, flowRequest, int) bool { return false }

// flowReset drops the connection with a reset (SO_LINGER 0).
func flowReset(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

func (b *flowBackend) waitRequest(t *testing.T) flowRequest {
	t.Helper()
	select {
	case r := <-b.requests:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the backend")
		return flowRequest{}
	}
}

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

// flowDial connects from the client namespace to the backend's port
// (through both proxies).
func flowDial(t *testing.T, m *meshtest.Mesh) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := m.DialServer(t, flowPort)
	return c, bufio.NewReader(c)
}

func flowResponse(t *testing.T, c net.Conn, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// flowClosed waits up to d for the proxy to close c and returns how long
// it took.
func flowClosed(t *testing.T, c net.Conn, r io.Reader, d time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, r)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: connection still open after %v", what, d)
	}
	return time.Since(start)
}

// Slowloris: 200 clients each trickle a head that never ends. Every one is
// cut at the head read timeout and nothing reaches the backend; a client
// that pauses before its request is not cut by it.
func TestFlowSlowHeadersCut(t *testing.T) {
	args := []string{"--head-read-timeout=1s", "--keepalive-timeout=30s"}
	m, b := flowMesh(t, args, args, flowOK)
	const n = 200
	conns := make([]net.Conn, n)
	began := make([]time.Time, n) // each head's first byte
	for i := range conns {
		conns[i], _ = flowDial(t, m)
		began[i] = time.Now()
		fmt.Fprintf(conns[i], "GET / HTTP/1.1\r\nHost: a\r\n")
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// One more header byte every 200ms on each: never idle.
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, c := range conns {
				c.Write([]byte("X"))
			}
		}
	}()
	var wg sync.WaitGroup
	cut := make(chan time.Duration, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return
			}
			cut <- time.Since(began[i])
		}()
	}
	wg.Wait()
	close(cut)
	if len(cut) != n {
		t.Fatalf("%d of %d slow-header connections still open after 10s (head read timeout 1s)", n-len(cut), n)
	}
	for d := range cut {
		if d < 800*time.Millisecond {
			t.Fatalf("a slow-header connection was cut after %v, before the head read timeout", d)
		}
	}
	select {
	case r := <-b.requests:
		t.Fatalf("backend received %q from a head that never ended", r.line)
	default:
	}

	c, br := flowDial(t, m)
	time.Sleep(1500 * time.Millisecond) // the client's own pause, longer than the head read timeout
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := flowResponse(t, c, br); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("request after a pause: %d %q", resp.StatusCode, body)
	}
}

// A keep-alive connection idle between requests is closed at the
// keep-alive timeout.
func TestFlowIdleKeepAliveClosed(t *testing.T) {
	args := []string{"--keepalive-timeout=1s"}
	m, _ := flowMesh(t, args, args, flowOK)
	c, br := flowDial(t, m)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := flowResponse(t, c, br); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	if d := flowClosed(t, c, br, 10*time.Second, "idle keep-alive connection"); d < 800*time.Millisecond {
		t.Fatalf("idle connection closed after %v, before the keep-alive timeout", d)
	}
}

// A client that gives up (FIN or RST) while its request waits on a slow
// backend: the backend sees its connection close promptly, as it would
// with the client connected directly.
func TestFlowClientGoneClosesBackend(t *testing.T) {
	m, b := flowMesh(t, nil, nil, flowHang)
	for _, rst := range []bool{false, true} {
		c, _ := flowDial(t, m)
		fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
		b.waitRequest(t)
		if rst {
			c.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
		left := time.Now()
		if at := b.waitGone(t, 5*time.Second, fmt.Sprintf("client gone (reset %v)", rst)); at.Sub(left) > 2*time.Second {
			t.Fatalf("backend saw its client go %v after it left (reset %v)", at.Sub(left), rst)
		}
	}
}

// A hung backend: the request is answered 504 by the server-side proxy at
// its stream idle timeout, and the backend's connection is closed.
func TestFlowHungBackend504(t *testing.T) {
	m, b := flowMesh(t, []string{"--stream-idle-timeout=30s"}, []string{"--stream-idle-timeout=1s"}, flowHang)
	c, br := flowDial(t, m)
	start := time.Now()
	fmt.Fprintf(c, "GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, _ := flowResponse(t, c, br)
	if resp.StatusCode != 504 || resp.Header.Get(contract.ProxyErrorHeader) != "response timeout" {
		t.Fatalf("hung backend: %d %q, want 504 response timeout", resp.StatusCode, resp.Header.Get(contract.ProxyErrorHeader))
	}
	if d := time.Since(start); d < 800*time.Millisecond || d > 5*time.Second {
		t.Fatalf("504 after %v, want about the 1s stream idle timeout", d)
	}
	b.waitGone(t, 5*time.Second, "timed-out backend")
}

// SIGTERM while a request waits on a hung backend: the proxy exits at its
// drain timeout (2s) and the backend's connection is closed.
func TestFlowSIGTERMHungBackend(t *testing.T) {
	m, b := flowMesh(t, nil, nil, flowHang)
	c, br := flowDial(t, m)
	fmt.Fprintf(c, "GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
	b.waitRequest(t)
	if d := m.ServerProxy.Terminate(t, 10*time.Second); d < 1500*time.Millisecond || d > 5*time.Second {
		t.Fatalf("proxy exited %v after SIGTERM, want about its 2s drain timeout", d)
	}
	b.waitGone(t, 2*time.Second, "backend of the aborted request")
	// The client gets an answer or a close, not a hang.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadResponse(br, nil); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("client still waiting after the proxy exited")
		}
	}
}

// The backend runs a POST without a body and then resets the connection
// without answering: the POST is not sent again (it may not run twice);
// the client gets 502.
func TestFlowBodilessPostNotRetried(t *testing.T) {
	m, b := flowMesh(t, nil, nil, func(c net.Conn, r flowRequest, n int) bool {
		if strings.HasPrefix(r.line, "POST") {
			flowReset(c)
			return false
		}
		return flowOK(c, r, n)
	})
	c, br := flowDial(t, m)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := flowResponse(t, c, br); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	b.waitRequest(t)
	fmt.Fprintf(c, "POST /charge HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	resp, _ := flowResponse(t, c, br)
	if resp.StatusCode != 502 {
		t.Fatalf("POST reset by the backend: %d, want 502", resp.StatusCode)
	}
	posts := 0
	for len(b.requests) > 0 {
		if r := <-b.requests; strings.HasPrefix(r.line, "POST /charge") {
			posts++
		}
	}
	if posts != 1 {
		t.Fatalf("backend received the POST %d times, want 1", posts)
	}
}

// The backend closes (as Node.js does after 5s) its keep-alive connection
// while idle; a POST with a body that follows is delivered exactly once
// and answered.
func TestFlowStalePooledPostDelivered(t *testing.T) {
	for _, rst := range []bool{false, true} {
		t.Run(map[bool]string{false: "FIN", true: "RST"}[rst], func(t *testing.T) {
			idleClose := make(chan struct{}) // the application's idle timeout
			m, b := flowMesh(t, nil, nil, func(c net.Conn, r flowRequest, n int) bool {
				flowOK(c, r, n)
				if strings.HasPrefix(r.line, "GET") {
					go func() {
						<-idleClose
						if rst {
							flowReset(c)
						} else {
							c.Close()
						}
					}()
				}
				return true
			})
			c, br := flowDial(t, m)
			sent := time.Now()
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp, _ := flowResponse(t, c, br); resp.StatusCode != 200 {
				t.Fatalf("first request: %d", resp.StatusCode)
			}
			b.waitRequest(t)
			open := flowUpstreamConns(t, m)
			close(idleClose)
			b.waitGone(t, 5*time.Second, "backend's idle close")
			// The close has reached the proxy's socket (a loaded host may
			// deliver it late; a request that meets it on the way is the
			// race no proxy can win).
			deadline := time.Now().Add(5 * time.Second)
			for flowUpstreamConns(t, m) >= open {
				if time.Now().After(deadline) {
					t.Fatal("the proxy's connection to the backend still established 5s after the backend closed it")
				}
				time.Sleep(10 * time.Millisecond)
			}
			// Idle a while, as before an application's idle close.
			time.Sleep(time.Until(sent.Add(50 * time.Millisecond)))
			fmt.Fprintf(c, "POST /order HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
			resp, body := flowResponse(t, c, br)
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("POST after the backend closed its idle connection: %d %q (%s)", resp.StatusCode, body, resp.Header.Get(contract.ProxyErrorHeader))
			}
			r := b.waitRequest(t)
			if r.line != "POST /order HTTP/1.1" || r.body != "hello" || len(b.requests) != 0 {
				t.Fatalf("backend received %q %q and %d more", r.line, r.body, len(b.requests))
			}
		})
	}
}
