package http1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/server"
)

func TestKeepAliveBothSides(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s", r.Method, r.URL.Path)
	}))
	p := startProxy(t, be.addr)
	c := p.client()
	for i := range 50 {
		resp, err := c.Get("http://web.ns.svc:8080/x" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		body := drain(t, resp.Body)
		resp.Body.Close()
		if want := "hello GET /x" + strconv.Itoa(i); string(body) != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	if n := len(be.conns); n != 1 {
		t.Fatalf("backend saw %d connections for 50 sequential requests, want 1 (pooled)", n)
	}
	labels := map[string]string{"direction": "outbound", "authority": "web.ns.svc:8080", "tls": "false"}
	if v := p.sample(t, "request_total", labels); v != 50 {
		t.Fatalf("request_total = %v, want 50", v)
	}
	labels["status_code"], labels["classification"], labels["grpc_status_code"] = "200", "success", ""
	if v := p.sample(t, "response_total", labels); v != 50 {
		t.Fatalf("response_total = %v, want 50", v)
	}
	if v := p.sample(t, "response_latency_ms", labels); v != 50 {
		t.Fatalf("response_latency_ms count = %v, want 50", v)
	}
}

func TestStatusClassification(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
	}))
	p := startProxy(t, be.addr)
	c := p.client()
	for _, code := range []int{200, 404, 500, 503} {
		resp, err := c.Get("http://app/?code=" + strconv.Itoa(code))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Fatalf("got %d, want %d", resp.StatusCode, code)
		}
	}
	for code, class := range map[string]string{"200": "success", "404": "success", "500": "failure", "503": "failure"} {
		v := p.sample(t, "response_total", map[string]string{"authority": "app", "status_code": code, "classification": class})
		if v != 1 {
			t.Errorf("response_total{status_code=%s,classification=%s} = %v, want 1", code, class, v)
		}
	}
}

// Bodies stream both ways in both framings and arrive intact.
func TestBodiesBothFramings(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Len", strconv.FormatInt(n, 10))
		w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		if r.URL.Query().Get("cl") == "1" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		w.Write(bytes.Repeat([]byte{'z'}, size))
	}))
	p := startProxy(t, be.addr)
	c := p.client()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB
	sum := fmt.Sprintf("%x", sha256.Sum256(payload))
	for _, chunkedReq := range []bool{false, true} {
		for _, clResp := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(payload)
			if chunkedReq {
				body = io.MultiReader(body) // unknown length: the client sends chunked
			}
			url := fmt.Sprintf("http://app/?size=3000000&cl=%v", map[bool]string{true: "1"}[clResp])
			resp, err := c.Post(url, "application/octet-stream", body)
			if err != nil {
				t.Fatal(err)
			}
			got := drain(t, resp.Body)
			resp.Body.Close()
			if resp.Header.Get("X-Sum") != sum || resp.Header.Get("X-Len") != strconv.Itoa(len(payload)) {
				t.Fatalf("chunked=%v: backend got len %s sum %s", chunkedReq, resp.Header.Get("X-Len"), resp.Header.Get("X-Sum"))
			}
			if wantTE := map[bool]string{true: "chunked"}[chunkedReq]; resp.Header.Get("X-TE") != wantTE {
				t.Fatalf("backend saw Transfer-Encoding %q, want %q", resp.Header.Get("X-TE"), wantTE)
			}
			if len(got) != 3000000 || bytes.Count(got, []byte{'z'}) != 3000000 {
				t.Fatalf("response body: %d bytes", len(got))
			}
			wantCL := int64(-1)
			if clResp {
				wantCL = 3000000
			}
			if resp.ContentLength != wantCL {
				t.Fatalf("response ContentLength %d, want %d", resp.ContentLength, wantCL)
			}
		}
	}
}

// A response that trickles reaches the client as it is produced: the proxy
// does not wait for the body to end.
func TestStreamingNotBuffered(t *testing.T) {
	release := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first\n"))
		w.(http.Flusher).Flush()
		<-release
		w.Write([]byte("second\n"))
	}))
	p := startProxy(t, be.addr)
	resp, err := p.client().Get("http://app/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(release)
	line, _ = br.ReadString('\n')
	if line != "second\n" {
		t.Fatalf("second line %q", line)
	}
}

// rawBackend accepts connections and hands them to serve.
func rawBackend(t testing.TB, serve func(net.Conn)) string {
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
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// A 200 MB body through the proxy in each direction allocates next to
// nothing in the proxy: bodies stream through fixed buffers. Both ends are
// raw sockets writing from one buffer, so the allocation count is the
// proxy's.
func TestLargeBodyMemoryBounded(t *testing.T) {
	const size = 200 << 20
	chunk := bytes.Repeat([]byte{'q'}, 64<<10)
	addr := rawBackend(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			var cl int64 = -1
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
					cl, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
				if line == "\r\n" {
					break
				}
			}
			if _, err := io.CopyN(io.Discard, br, max(cl, 0)); err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
			for sent := 0; sent < size; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}
	})
	p := startProxy(t, addr)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Warm up pools before measuring.
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
	br := bufio.NewReaderSize(c, 64<<10)
	readResponse := func() int64 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return n
	}
	readResponse()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	go func() {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	if n := readResponse(); n != size {
		t.Fatalf("downloaded %d bytes, want %d", n, size)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("moving 2x%d MB allocated %d bytes; bodies are being buffered", size>>20, alloc)
	}
}

// A client that dies mid-body leaves the backend with a short body (an
// error, not a hang) and the proxy still serves others.
func TestClientAbortMidBody(t *testing.T) {
	got := make(chan error, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		got <- err
	}))
	p := startProxy(t, be.addr)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
	c.Write(bytes.Repeat([]byte{'a'}, 100000))
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("backend read the whole body of an aborted request without error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend still waiting for the body after the client aborted")
	}
	resp, err := p.client().Get("http://a/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after an abort: %d", resp.StatusCode)
	}
}

func TestUpstreamErrors(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := ln.Addr().String()
	ln.Close()
	reset := rawBackend(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	garbage := rawBackend(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		c.Write([]byte("SSH-2.0-OpenSSH\r\n\r\n"))
		c.Close()
	})
	tests := []struct {
		name, addr string
		opt        func(*server.Config)
		status     int
		reason     string
	}{
		{"refused", refused, nil, 502, "connection refused"},
		{"reset", reset, nil, 502, "connection reset"},
		{"not http", garbage, nil, 502, "bad response"},
		{"no endpoint", refused, func(c *server.Config) {
			c.Resolver = resolve.Func(func(context.Context, resolve.Target) (resolve.Endpoint, error) {
				return resolve.Endpoint{}, resolve.ErrNoEndpoint
			})
		}, 503, "no endpoint"},
		{"connect timeout", refused, func(c *server.Config) {
			c.Connector = timeoutConnector{}
		}, 504, "connect timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []func(*server.Config)
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			p := startProxy(t, tt.addr, opts...)
			c := p.client()
			for range 2 { // the connection stays usable after an error
				resp, err := c.Get("http://svc/")
				if err != nil {
					t.Fatal(err)
				}
				body := drain(t, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || resp.Header.Get(contract.ProxyErrorHeader) != tt.reason {
					t.Fatalf("got %d %s=%q (%q), want %d %q", resp.StatusCode, contract.ProxyErrorHeader,
						resp.Header.Get(contract.ProxyErrorHeader), body, tt.status, tt.reason)
				}
			}
			v := p.sample(t, "response_total", map[string]string{"status_code": strconv.Itoa(tt.status), "classification": "failure"})
			if v != 2 {
				t.Fatalf("response_total for %d = %v, want 2", tt.status, v)
			}
		})
	}
}

type timeoutConnector struct{}

func (timeoutConnector) Connect(context.Context, resolve.Endpoint) (net.Conn, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

// An upstream that closes idle connections without saying so: the next
// request on the pooled connection is retried on a fresh one.
func TestStalePooledConnectionRetried(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	addr := rawBackend(t, func(c net.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				c.Close()
				return
			}
			if line == "\r\n" {
				break
			}
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		time.Sleep(20 * time.Millisecond)
		c.Close() // keep-alive promised, then closed while idle
	})
	p := startProxy(t, addr)
	c := p.client()
	for i := range 3 {
		resp, err := c.Get("http://a/")
		if err != nil {
			t.Fatal(err)
		}
		body := drain(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d: %d %q (%s)", i, resp.StatusCode, body, resp.Header.Get(contract.ProxyErrorHeader))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// raw sends raw bytes to the proxy and returns everything it answers
// until it closes.
func raw(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(req))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("reading: %v (got %q)", err, b)
	}
	return string(b)
}

func TestPipeliningAndHTTP10(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.Write([]byte("aa"))
			w.(http.Flusher).Flush()
			w.Write([]byte("bb"))
			return
		}
		w.Header().Set("Content-Length", "1")
		w.Write([]byte(r.URL.Path[1:]))
	}))
	p := startProxy(t, be.addr)
	out := raw(t, p.addr, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if strings.Count(out, "HTTP/1.1 200 OK") != 3 || !strings.HasSuffix(out, "\r\n\r\n3") ||
		strings.Index(out, "\r\n\r\n1") > strings.Index(out, "\r\n\r\n2") || !strings.Contains(out, "Connection: close") {
		t.Fatalf("pipelined responses out of order or missing:\n%s", out)
	}
	// An HTTP/1.0 client gets a chunked response de-chunked, then a close.
	out = raw(t, p.addr, "GET /chunked HTTP/1.0\r\n\r\n")
	if !strings.HasSuffix(out, "\r\n\r\naabb") || strings.Contains(out, "chunked") {
		t.Fatalf("HTTP/1.0 response:\n%q", out)
	}
}

func TestExpectContinue(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	p := startProxy(t, be.addr)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("before sending the body: %q %v", line, err)
	}
	br.ReadString('\n')
	c.Write([]byte("hello"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := drain(t, resp.Body); string(b) != "hello" {
		t.Fatalf("echo %q", b)
	}
}

func TestBadRequestAnswered(t *testing.T) {
	be := startBackend(t, http.NotFoundHandler())
	p := startProxy(t, be.addr)
	out := raw(t, p.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, contract.ProxyErrorHeader+": both Content-Length and Transfer-Encoding") {
		t.Fatalf("smuggling attempt answered %q", out)
	}
	if n := len(be.conns); n != 0 {
		t.Fatalf("backend saw %d connections for a refused request", n)
	}
}

// On shutdown an idle keep-alive connection is closed at once, and a
// request in flight finishes with Connection: close.
func TestDrain(t *testing.T) {
	inFlight := make(chan struct{})
	release := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inFlight)
			<-release
		}
		w.Write([]byte("done"))
	}))
	p := startProxy(t, be.addr)
	idle, _ := net.Dial("tcp", p.addr)
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	idleR := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(idleR, nil); err != nil {
		t.Fatal(err)
	} else {
		drain(t, resp.Body)
	}
	busy, _ := net.Dial("tcp", p.addr)
	fmt.Fprintf(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-inFlight
	shut := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- p.srv.Shutdown(ctx)
	}()
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection during drain: %v, want EOF", err)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := drain(t, resp.Body); string(b) != "done" || !resp.Close {
		t.Fatalf("in-flight request during drain: %q close=%v", b, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
