package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type running struct {
	in, out, admin net.Addr
	out6           net.Addr // nil when not bound
	log            *lockedBuffer
	cancel         context.CancelFunc
	done           chan error
}

// lockedBuffer is the proxy's log, written while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs the proxy on loopback ports with every connection's original
// destination set to dst. It binds no IPv6 listeners unless mod asks.
func start(t *testing.T, dst netip.AddrPort, mod func(*Options)) *running {
	t.Helper()
	o := Defaults()
	o.InboundAddr, o.OutboundAddr, o.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	o.OutboundAddrIPv6 = ""
	o.TapAddr = "127.0.0.1:0"
	o.OrigDst = origdst.Fixed(dst)
	o.Workload = metrics.Workload{Namespace: "ns", Pod: "web-1", Kind: "deployment", Name: "web"}
	o.DrainTimeout = 2 * time.Second
	if mod != nil {
		mod(&o)
	}
	r := &running{done: make(chan error, 1), log: &lockedBuffer{}}
	ready := make(chan struct{})
	o.OnIPv6Ready = func(out net.Addr) { r.out6 = out }
	o.OnReady = func(in, out, admin net.Addr) { r.in, r.out, r.admin = in, out, admin; close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- Run(ctx, o, r.log) }()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func echoServer(t *testing.T) netip.AddrPort {
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
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func scrape(t *testing.T, admin net.Addr) map[string]*metricFamily {
	t.Helper()
	resp, err := http.Get("http://" + admin.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestOpaqueForwardingCountsBytes(t *testing.T) {
	backend := echoServer(t)
	r := start(t, backend, func(o *Options) { o.OpaquePorts = ports.Of(backend.Port()) })
	if code := get(t, "http://"+r.admin.String()+"/ready"); code != 200 {
		t.Fatalf("/ready = %d, want 200", code)
	}
	if code := get(t, "http://"+r.admin.String()+"/live"); code != 200 {
		t.Fatalf("/live = %d, want 200", code)
	}
	c, err := net.Dial("tcp", r.out.String())
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("abc"), 1000)
	c.Write(msg)
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through proxy: got %d bytes (%v), want %d", len(got), err, len(msg))
	}
	want := map[string]float64{
		"tcp_open_total": 1, "tcp_close_total": 1, "tcp_open_connections": 0,
		"tcp_read_bytes_total": 3000, "tcp_write_bytes_total": 3000,
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		fams := scrape(t, r.admin)
		bad := ""
		for name, v := range want {
			got, ok := value(fams, name, map[string]string{"direction": "outbound", "tls": "false", "namespace": "ns", "pod": "web-1", "deployment": "web"})
			if !ok || got != v {
				bad += name + "=" + formatF(got) + " "
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics off: %s", bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Run drains and returns nil when its context ends; /ready goes away with it.
func TestShutdownReturnsNil(t *testing.T) {
	r := start(t, echoServer(t), nil)
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run returned %v after shutdown, want nil", err)
		}
		r.done <- nil // for Cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestBindFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := Defaults()
	o.InboundAddr, o.OutboundAddr, o.AdminAddr = "127.0.0.1:0", ln.Addr().String(), "127.0.0.1:0"
	o.OutboundAddrIPv6 = ""
	o.TapAddr = "127.0.0.1:0"
	err = Run(context.Background(), o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "outbound listener on "+ln.Addr().String()) {
		t.Fatalf("Run with a taken port: %v, want an error naming the outbound listener", err)
	}
}

// HTTP/1 through the whole proxy: the inbound direction sends a port
// opted in with InboundLoopbackPorts to 127.0.0.1, and a scrape of /metrics shows the request
// with the workload labels.
func TestInboundHTTPMetricsScraped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	// The original destination is a pod IP; inbound goes to 127.0.0.1 on
	// its port, which is opted in to loopback.
	r := start(t, netip.AddrPortFrom(netip.MustParseAddr("10.9.9.9"), port), func(o *Options) { o.InboundLoopbackPorts = ports.Of(port) })
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", r.in.String())
	}}}
	for range 3 {
		resp, err := c.Get("http://web.shop.svc.cluster.local/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot {
			t.Fatalf("status %d, want 418 from the app", resp.StatusCode)
		}
	}
	fams := scrape(t, r.admin)
	labels := map[string]string{
		"direction": "inbound", "authority": "web.shop.svc.cluster.local", "tls": "false",
		"namespace": "ns", "pod": "web-1", "deployment": "web",
	}
	if v, _ := value(fams, "request_total", labels); v != 3 {
		t.Fatalf("request_total = %v, want 3", v)
	}
	labels["status_code"], labels["classification"], labels["grpc_status_code"] = "418", "success", ""
	if v, _ := value(fams, "response_total", labels); v != 3 {
		t.Fatalf("response_total = %v, want 3", v)
	}
	if v, _ := value(fams, "response_latency_ms", labels); v != 3 {
		t.Fatalf("response_latency_ms count = %v, want 3", v)
	}
	if v, _ := value(fams, "tcp_open_total", map[string]string{"direction": "inbound"}); v != 1 {
		t.Fatalf("tcp_open_total = %v, want 1 (one keep-alive connection)", v)
	}
	if v, _ := value(fams, "tcp_read_bytes_total", map[string]string{"direction": "inbound"}); v < float64(3*len("GET / HTTP/1.1\r\n")) {
		t.Fatalf("tcp_read_bytes_total = %v: bytes of HTTP connections are not counted", v)
	}
}
