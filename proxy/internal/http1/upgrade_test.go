package http1

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/server"
)

func TestWebSocketThroughProxy(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		// Greet first, so a frame may follow the 101 in the same read.
		c.Write(r.Context(), websocket.MessageText, []byte("hello"))
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if c.Write(r.Context(), typ, append([]byte("echo: "), b...)) != nil {
				return
			}
		}
	}))
	p := startProxy(t, be.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws://"+be.addr+"/chat", &websocket.DialOptions{HTTPClient: p.client()})
	if err != nil {
		t.Fatalf("dial through the proxy: %v", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("handshake answered %d %v", resp.StatusCode, resp.Header)
	}
	if _, b, err := ws.Read(ctx); err != nil || string(b) != "hello" {
		t.Fatalf("greeting %q %v", b, err)
	}
	big := strings.Repeat("x", 100<<10)
	for _, msg := range []string{"one", "two", big} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, b, err := ws.Read(ctx)
		if err != nil || string(b) != "echo: "+msg {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(b), err)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "bye")

	labels := map[string]string{contract.LabelDirection: contract.DirectionOutbound, contract.LabelAuthority: be.addr}
	if n := p.sample(t, contract.MetricRequestTotal, labels); n != 1 {
		t.Errorf("request_total %v, want 1", n)
	}
	labels[contract.LabelStatusCode] = "101"
	if n := p.sample(t, contract.MetricResponseTotal, labels); n != 1 {
		t.Errorf("response_total{status_code=101} %v, want 1", n)
	}
	dir := map[string]string{contract.LabelDirection: contract.DirectionOutbound}
	deadline := time.Now().Add(5 * time.Second)
	for p.sample(t, contract.MetricTCPReadBytesTotal, dir) < float64(len(big)) || p.sample(t, contract.MetricTCPWriteBytesTotal, dir) < float64(len(big)) {
		if time.Now().After(deadline) {
			t.Fatalf("tcp bytes read %v written %v, want both over %d", p.sample(t, contract.MetricTCPReadBytesTotal, dir),
				p.sample(t, contract.MetricTCPWriteBytesTotal, dir), len(big))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An h2c upgrade is refused by not forwarding it: the request is answered
// over HTTP/1.1 and the server never sees Upgrade or HTTP2-Settings.
func TestH2CUpgradeRefused(t *testing.T) {
	seen := make(chan string, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- fmt.Sprintf("upgrade=%q settings=%q connection=%q", r.Header.Get("Upgrade"), r.Header.Get("Http2-Settings"), r.Header.Get("Connection"))
		io.WriteString(w, "plain")
	}))
	p := startProxy(t, be.addr)
	out := raw(t, p.addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, "plain") {
		t.Fatalf("h2c upgrade answered %q", out)
	}
	if got := <-seen; got != `upgrade="" settings="" connection=""` {
		t.Fatalf("server saw %s", got)
	}
}

// connectProxy is a forward proxy: it answers CONNECT with 200 and splices
// to the target, or 403 for targets other than allowed.
func connectProxy(allowed string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != allowed {
			http.Error(w, "not allowed", http.StatusForbidden)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() {
			if n := brw.Reader.Buffered(); n > 0 {
				b, _ := brw.Reader.Peek(n)
				up.Write(b)
			}
			io.Copy(up, c)
			up.(*net.TCPConn).CloseWrite()
		}()
		io.Copy(c, up)
		c.Close()
		up.Close()
	})
}

// openTunnel sends CONNECT target through the proxy and returns the
// connection after the proxy's answer head.
func openTunnel(t *testing.T, proxyAddr, target string) (net.Conn, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == 200 && br.Buffered() > 0 {
		t.Fatalf("%d bytes after the CONNECT answer before the tunnel was used", br.Buffered())
	}
	return c, resp
}

func TestConnectTunnelCarriesTLS(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret over "+r.Proto)
	}))
	defer tlsSrv.Close()
	target := tlsSrv.Listener.Addr().String()
	be := startBackend(t, connectProxy(target))
	p := startProxy(t, be.addr)

	c, resp := openTunnel(t, p.addr, target)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT answered %s", resp.Status)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())
	tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "example.com"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS through the tunnel: %v", err)
	}
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	r, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != "secret over HTTP/1.1" {
		t.Fatalf("body through the tunnel %q", b)
	}
	labels := map[string]string{contract.LabelDirection: contract.DirectionOutbound, contract.LabelAuthority: target, contract.LabelStatusCode: "200"}
	if n := p.sample(t, contract.MetricResponseTotal, labels); n != 1 {
		t.Errorf("response_total for the CONNECT %v, want 1", n)
	}
}

// One side half-closes; the other still answers through the tunnel.
func TestConnectTunnelHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // until the client's half-close
		fmt.Fprintf(c, "got %d bytes", len(b))
	}()
	target := ln.Addr().String()
	be := startBackend(t, connectProxy(target))
	p := startProxy(t, be.addr)
	c, resp := openTunnel(t, p.addr, target)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT answered %s", resp.Status)
	}
	c.Write([]byte(strings.Repeat("z", 70000)))
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "got 70000 bytes" {
		t.Fatalf("after half-close: %q %v", b, err)
	}
}

// A refused CONNECT is forwarded as an ordinary answer and the connection
// closes after it.
func TestConnectRefusedByUpstream(t *testing.T) {
	be := startBackend(t, connectProxy("allowed.test:443"))
	p := startProxy(t, be.addr)
	c, resp := openTunnel(t, p.addr, "other.test:443")
	if resp.StatusCode != 403 || !resp.Close {
		t.Fatalf("refused CONNECT: %s close=%v", resp.Status, resp.Close)
	}
	b, _ := io.ReadAll(resp.Body)
	if strings.TrimSpace(string(b)) != "not allowed" {
		t.Fatalf("body %q", b)
	}
	// The answer was small enough to be read whole: the socket has
	// nothing more, and the proxy closes it.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the refusal: %v, want EOF (connection closed)", err)
	}
}

// A refused upgrade after a keep-alive request: both upstream connections
// end up reusable, none is dropped unclosed, and the client connection
// carries on.
func TestRefusedUpgradeKeepsConnections(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "no switch")
	}))
	p := startProxy(t, be.addr)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, req := range []string{
		"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /2 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "no switch" {
			t.Fatalf("request %d: %d %q", i+1, resp.StatusCode, b)
		}
	}
	// The first request's connection went back to the pool when the
	// upgrade took a fresh one, so a second client reuses it.
	c2, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET /4 HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("second client: %v", err)
	}
	if n := len(be.conns); n != 2 {
		t.Fatalf("backend saw %d connections, want 2 (the pooled one reused)", n)
	}
}

// A client that waits before its first request gets an upstream
// connection early (it might have been a server-first protocol); the
// request then uses that connection rather than opening another.
func TestSlowClientUsesEarlyConnection(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	p := startProxy(t, be.addr, func(cfg *server.Config) { cfg.ClientWindow = time.Millisecond })
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Well past the window: the proxy has connected upstream by now.
	deadline := time.Now().Add(5 * time.Second)
	for len(be.conns) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if len(be.conns) != 1 {
		t.Fatal("no early upstream connection for a silent client")
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request after silence: %v", err)
	}
	if n := len(be.conns); n != 1 {
		t.Fatalf("backend saw %d connections, want the early one only", n)
	}
}
