package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/internal/httpapp"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// authority6 is the server's IPv6 address and the port, as a client writes
// it in a URL and as the proxies label it.
func authority6(port int) string {
	return net.JoinHostPort(meshtest.ServerAddr6.String(), strconv.Itoa(port))
}

// withPeer serves GET /peer with the host of the connection's remote
// address (who connected to the application), and the app for the rest.
func withPeer(app http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/peer" {
			app.ServeHTTP(w, r)
			return
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, host)
	})
}

// newIPv6Mesh is the mesh on a dual-stack pair, with the applications
// listening on both families (one socket each) in the server namespace.
func newIPv6Mesh(t *testing.T) *testMesh {
	t.Helper()
	meshtest.RequireRoot(t, "curl")
	opaque := "--opaque-ports=" + strconv.Itoa(opaquePort)
	m := meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{
		IPv6:        true,
		ClientInit:  []string{"--skip-outbound-ports=" + strconv.Itoa(skipOutboundPort)},
		ServerInit:  []string{"--skip-inbound-ports=" + strconv.Itoa(skipInboundPort)},
		ClientProxy: []meshtest.ProxyOption{meshtest.WithArgs(opaque)},
		ServerProxy: []meshtest.ProxyOption{meshtest.WithArgs(opaque)},
	})
	tm := &testMesh{Mesh: m, app: httpapp.New()}
	listen := func(port int) net.Listener {
		// "tcp" on the unspecified address: IPv4 and IPv6.
		l, err := m.Server.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	for _, port := range []int{httpPort, skipInboundPort, skipOutboundPort} {
		t.Cleanup(httpapp.Serve(listen(port), withPeer(tm.app)))
	}
	go serveEcho(listen(opaquePort))
	return tm
}

// TestMeshIPv6 sends IPv6 traffic from the client namespace to the server
// namespace: conduit-init's inet table redirects it, the client proxy takes
// it on [::1]:4140 and the server proxy on its dual-stack :4143, which
// forwards it to the application at the pod's IPv6 address. Skip ports bypass the proxies
// as over IPv4, and IPv4 still goes through both proxies in the same run.
func TestMeshIPv6(t *testing.T) {
	m := newIPv6Mesh(t)
	url6 := func(port int, path string) string { return "http://" + authority6(port) + path }
	// -g: the brackets of the IPv6 literal are not a curl glob.
	curl6 := func(t *testing.T, args ...string) string { return m.curl(t, append([]string{"-g"}, args...)...) }

	t.Run("http1", func(t *testing.T) {
		before := m.snapshot(t)
		u := url6(httpPort, "/bytes?n=1024")
		out := curl6(t, "--http1.1", "-w", "%{http_code} %{size_download} %{num_connects}\n",
			"-o", "/dev/null", u, "-o", "/dev/null", u, "-o", "/dev/null", u)
		if want := "200 1024 1\n200 1024 0\n200 1024 0\n"; out != want {
			t.Fatalf("curl wrote %q, want %q", out, want)
		}
		sel := with(outbound, contract.LabelAuthority, authority6(httpPort))
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, sel, 3)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseTotal,
			with(sel, contract.LabelStatusCode, "200", contract.LabelClassification, contract.ClassificationSuccess), 3)
		in := with(inbound, contract.LabelAuthority, authority6(httpPort))
		expectDelta(t, m.ServerProxy, before.server, contract.MetricRequestTotal, in, 3)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricResponseTotal,
			with(in, contract.LabelStatusCode, "200", contract.LabelClassification, contract.ClassificationSuccess), 3)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricTCPOpenTotal, outbound, 1)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricTCPOpenTotal, inbound, 1)
	})

	t.Run("h2c prior knowledge", func(t *testing.T) {
		before := m.snapshot(t)
		if out := curl6(t, "--http2-prior-knowledge", url6(httpPort, "/proto")); out != "HTTP/2.0" {
			t.Fatalf("the app saw %q, want HTTP/2.0", out)
		}
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, with(outbound, contract.LabelAuthority, authority6(httpPort)), 1)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricRequestTotal, with(inbound, contract.LabelAuthority, authority6(httpPort)), 1)
	})

	// Who the application sees shows the path: the server proxy connects
	// to the pod's own address of the request's family (so it comes from
	// that address); a skipped inbound port is reached straight from the
	// client side.
	t.Run("application peer", func(t *testing.T) {
		for _, tc := range []struct{ url, want string }{
			{url6(httpPort, "/peer"), meshtest.ServerAddr6.String()},
			{url6(skipOutboundPort, "/peer"), meshtest.ServerAddr6.String()},
			{url6(skipInboundPort, "/peer"), meshtest.ClientAddr6.String()},
			{url(httpPort, "/peer"), meshtest.ServerAddr.String()},
		} {
			if out := curl6(t, "--http1.1", tc.url); out != tc.want {
				t.Errorf("%s: the application saw a connection from %q, want %q", tc.url, out, tc.want)
			}
		}
	})

	t.Run("skip ports", func(t *testing.T) { checkSkipPorts(t, m, authority6, curl6) })

	t.Run("opaque tcp", func(t *testing.T) {
		before := m.snapshot(t)
		const size = 256 << 10
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := m.Client.Dial(ctx, "tcp6", authority6(opaquePort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		payload := bytes.Repeat([]byte{0, 1, 2, 3}, size/4)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			errc <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("echo over IPv6: %d bytes back (%v), want the %d sent", len(got), err, size)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		for _, side := range []struct {
			p      *meshtest.Proxy
			before meshtest.Metrics
			sel    meshtest.Labels
		}{{m.ClientProxy, before.client, outbound}, {m.ServerProxy, before.server, inbound}} {
			expectAtLeast(t, side.p, side.before, contract.MetricTCPReadBytesTotal, side.sel, size)
			expectAtLeast(t, side.p, side.before, contract.MetricTCPWriteBytesTotal, side.sel, size)
		}
	})

	t.Run("ipv4 in the same run", func(t *testing.T) {
		before := m.snapshot(t)
		if out := m.curl(t, "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", url(httpPort, "/bytes?n=10")); out != "200" {
			t.Fatalf("status %s, want 200", out)
		}
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, with(outbound, contract.LabelAuthority, authority(httpPort)), 1)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricRequestTotal, with(inbound, contract.LabelAuthority, authority(httpPort)), 1)
	})

	// The proxies said which listeners they bound.
	for _, p := range []*meshtest.Proxy{m.ClientProxy, m.ServerProxy} {
		if log := p.Log(); !strings.Contains(log, "outbound_ipv6=[::1]:4140") || strings.Contains(log, "no IPv6") {
			t.Errorf("%s: the ready line does not show the IPv6 outbound listener:\n%s", p.NS.Name, log)
		}
	}
}

// TestProxyWithoutIPv6: in a pod with IPv6 disabled (no ::1), the proxy
// says so once, becomes ready, and IPv4 traffic goes through both proxies.
func TestProxyWithoutIPv6(t *testing.T) {
	meshtest.RequireRoot(t, "curl")
	b := binaries(t)
	p := meshtest.NewPair(t)
	// The sysctls of the client namespace (a thread inside it sees its own
	// /proc/sys/net).
	err := p.Client.Do(func() error {
		for _, conf := range []string{"all", "lo"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/disable_ipv6", []byte("1\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("disable IPv6 in the client namespace: %v", err)
	}
	if out, err := p.Client.Output(context.Background(), "ip", "-6", "addr", "show", "dev", "lo"); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("IPv6 still on the client's loopback (%v): %s", err, out)
	}
	p.Client.InstallRedirect(t, b)
	p.Server.InstallRedirect(t, b)
	client := p.Client.StartProxy(t, b, meshtest.ClientWorkload)
	server := p.Server.StartProxy(t, b, meshtest.ServerWorkload)

	l, err := p.Server.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	t.Cleanup(httpapp.Serve(l, httpapp.New()))
	m := &testMesh{Mesh: &meshtest.Mesh{Pair: p, Bin: b, ClientProxy: client, ServerProxy: server}}
	before := m.snapshot(t)
	if out := m.curl(t, "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", url(httpPort, "/bytes?n=10")); out != "200" {
		t.Fatalf("status %s, want 200", out)
	}
	expectDelta(t, client, before.client, contract.MetricRequestTotal, with(outbound, contract.LabelAuthority, authority(httpPort)), 1)
	expectDelta(t, server, before.server, contract.MetricRequestTotal, with(inbound, contract.LabelAuthority, authority(httpPort)), 1)

	log := client.Log()
	if n := strings.Count(log, "no IPv6 on this host"); n != 1 || !strings.Contains(log, "level=INFO") || !strings.Contains(log, "outbound_ipv6=none") {
		t.Errorf("client proxy log (IPv6 disabled) has %d notes about it, want 1 at info and outbound_ipv6=none:\n%s", n, log)
	}
	if strings.Contains(server.Log(), "no IPv6") {
		t.Errorf("server proxy (IPv6 enabled) says it has none:\n%s", server.Log())
	}
}
