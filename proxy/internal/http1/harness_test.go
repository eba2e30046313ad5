package http1

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/metrics/metricstest"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/server"
)

// testProxy is the HTTP/1 path behind a real server.Server on loopback,
// with every connection's original destination set to a backend.
type testProxy struct {
	addr    string
	metrics *metrics.Metrics
	srv     *server.Server
}

func startProxy(t testing.TB, backend string, opts ...func(*server.Config)) *testProxy {
	t.Helper()
	dst := netip.MustParseAddrPort(backend)
	m := metrics.New(metrics.Workload{})
	cfg := server.Config{
		Direction: contract.DirectionOutbound,
		OrigDst:   origdst.Fixed(dst),
		Resolver:  resolve.OrigDst{},
		Connector: resolve.TCP{},
		Metrics:   m,
		// A client slower than the default 1 ms (a loaded test machine)
		// would get an early upstream connection; these tests count
		// upstream connections, so they wait for the client as before.
		ClientWindow: time.Minute,
	}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.HTTP1 = New(cfg.Direction, cfg.Resolver, cfg.Connector, m)
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

// backend serves h on loopback and counts the connections it accepts.
type backend struct {
	addr  string
	conns chan struct{}
	srv   *http.Server
}

func startBackend(t testing.TB, h http.Handler) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), conns: make(chan struct{}, 10000)}
	b.srv = &http.Server{Handler: h, ConnState: func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns <- struct{}{}
		}
	}}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// client sends every request through the proxy, whatever the URL says.
func (p *testProxy) client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.addr)
		},
		MaxIdleConnsPerHost: 100,
		DisableCompression:  true,
	}}
}

// sample returns the value of the metric family name with the given labels.
func (p *testProxy) sample(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Sample(t, p.metrics.Registry(), name, labels)
}

func drain(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
