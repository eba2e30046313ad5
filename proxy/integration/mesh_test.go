package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/internal/grpcapp"
	"github.com/conduitmesh/conduit/proxy/integration/internal/httpapp"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// Ports of the server namespace's applications.
const (
	httpPort         = 8080 // httpapp: HTTP/1.1 and h2c
	grpcPort         = 8081 // grpcapp
	refusedPort      = 8090 // nothing listens
	resetPort        = 8091 // reads the request, then resets the connection
	skipInboundPort  = 9100 // httpapp, skipped by the server's redirect
	skipOutboundPort = 9200 // httpapp, skipped by the client's redirect
	opaquePort       = 9300 // TCP echo, configured opaque on both proxies
	undetectedPort   = 9301 // TCP echo, not configured: detection decides
)

var (
	server   = meshtest.ServerAddr.String()
	outbound = meshtest.Labels{contract.LabelDirection: contract.DirectionOutbound}
	inbound  = meshtest.Labels{contract.LabelDirection: contract.DirectionInbound}
)

func authority(port int) string { return fmt.Sprintf("%s:%d", server, port) }

func url(port int, path string) string { return "http://" + authority(port) + path }

// with returns sel plus the pairs k1, v1, k2, v2...
func with(sel meshtest.Labels, kv ...string) meshtest.Labels {
	out := meshtest.Labels{}
	for k, v := range sel {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// testMesh is the mesh with the applications running in the server
// namespace.
type testMesh struct {
	*meshtest.Mesh
	app  *httpapp.App
	grpc *grpcapp.Server
}

func newTestMesh(t *testing.T) *testMesh {
	t.Helper()
	meshtest.RequireRoot(t, "curl")
	b := binaries(t)
	opaque := "--opaque-ports=" + strconv.Itoa(opaquePort)
	m := meshtest.NewMesh(t, b, meshtest.MeshOptions{
		ClientInit:  []string{"--skip-outbound-ports=" + strconv.Itoa(skipOutboundPort)},
		ServerInit:  []string{"--skip-inbound-ports=" + strconv.Itoa(skipInboundPort)},
		ClientProxy: []meshtest.ProxyOption{meshtest.WithArgs(opaque)},
		ServerProxy: []meshtest.ProxyOption{meshtest.WithArgs(opaque)},
	})
	tm := &testMesh{Mesh: m, app: httpapp.New()}
	for _, port := range []int{httpPort, skipInboundPort, skipOutboundPort} {
		l := tm.listen(t, port)
		t.Cleanup(httpapp.Serve(l, tm.app))
	}
	gl := tm.listen(t, grpcPort)
	gs, svc := grpcapp.NewServer()
	tm.grpc = svc
	go gs.Serve(gl)
	t.Cleanup(gs.Stop)
	for _, port := range []int{opaquePort, undetectedPort} {
		go serveEcho(tm.listen(t, port))
	}
	go serveReset(tm.listen(t, resetPort))
	return tm
}

// listen opens an application port on all addresses of the server
// namespace, closed when the test ends.
func (m *testMesh) listen(t *testing.T, port int) net.Listener {
	t.Helper()
	l, err := m.Server.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// curl runs curl in the client namespace and returns its stdout.
func (m *testMesh) curl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := m.Client.Output(ctx, "curl", append([]string{"-sS", "--max-time", "100"}, args...)...)
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	return string(out)
}

func scrape(t *testing.T, p *meshtest.Proxy) meshtest.Metrics {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := p.Scrape(ctx)
	if err != nil {
		t.Fatalf("scrape %s: %v", p.NS.Name, err)
	}
	return m
}

// snapshot is a scrape of both proxies.
type snapshot struct{ client, server meshtest.Metrics }

func (m *testMesh) snapshot(t *testing.T) snapshot {
	return snapshot{scrape(t, m.ClientProxy), scrape(t, m.ServerProxy)}
}

// expectDelta waits (metrics may be recorded just after the response
// ends) until the counter on the proxy has moved by want since before.
func expectDelta(t *testing.T, p *meshtest.Proxy, before meshtest.Metrics, name string, sel meshtest.Labels, want float64) {
	t.Helper()
	check(t, p, func(after meshtest.Metrics) error {
		if got := meshtest.Delta(before, after, name, sel); got != want {
			return fmt.Errorf("%s%s on %s moved by %v, want %v; series: %v", name, sel, p.NS.Name, got, want, after.Series(name, nil))
		}
		return nil
	})
}

// expectAtLeast is expectDelta for counters other traffic may also move.
func expectAtLeast(t *testing.T, p *meshtest.Proxy, before meshtest.Metrics, name string, sel meshtest.Labels, want float64) {
	t.Helper()
	check(t, p, func(after meshtest.Metrics) error {
		if got := meshtest.Delta(before, after, name, sel); got < want {
			return fmt.Errorf("%s%s on %s moved by %v, want at least %v; series: %v", name, sel, p.NS.Name, got, want, after.Series(name, nil))
		}
		return nil
	})
}

func check(t *testing.T, p *meshtest.Proxy, f func(meshtest.Metrics) error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f(scrape(t, p))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Error(err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMesh drives real clients through the client proxy and the server
// proxy to unchanged applications and checks what arrives and what the
// proxies count.
func TestMesh(t *testing.T) {
	m := newTestMesh(t)

	t.Run("http1 keep-alive", func(t *testing.T) {
		before := m.snapshot(t)
		// One curl, three requests: curl reuses its connection.
		u := url(httpPort, "/bytes?n=1024")
		out := m.curl(t, "--http1.1", "-w", "%{http_code} %{size_download} %{num_connects}\n",
			"-o", "/dev/null", u, "-o", "/dev/null", u, "-o", "/dev/null", u)
		if want := "200 1024 1\n200 1024 0\n200 1024 0\n"; out != want {
			t.Fatalf("curl wrote %q, want %q", out, want)
		}
		sel := with(outbound, contract.LabelAuthority, authority(httpPort))
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, sel, 3)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseTotal,
			with(sel, contract.LabelStatusCode, "200", contract.LabelClassification, contract.ClassificationSuccess), 3)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseLatencyMs, sel, 3)
		in := with(inbound, contract.LabelAuthority, authority(httpPort))
		expectDelta(t, m.ServerProxy, before.server, contract.MetricRequestTotal, in, 3)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricResponseTotal,
			with(in, contract.LabelStatusCode, "200", contract.LabelClassification, contract.ClassificationSuccess), 3)
		// Keep-alive on both sides: one connection from curl, and the
		// client proxy's pool reused one connection to the server.
		expectDelta(t, m.ClientProxy, before.client, contract.MetricTCPOpenTotal, outbound, 1)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricTCPOpenTotal, inbound, 1)
	})

	t.Run("workload labels", func(t *testing.T) {
		for _, tc := range []struct {
			p   *meshtest.Proxy
			w   meshtest.Workload
			dir string
		}{{m.ClientProxy, meshtest.ClientWorkload, contract.DirectionOutbound}, {m.ServerProxy, meshtest.ServerWorkload, contract.DirectionInbound}} {
			sel := meshtest.Labels{
				contract.LabelDirection: tc.dir,
				contract.LabelNamespace: tc.w.Namespace,
				contract.LabelPod:       tc.w.Pod,
				tc.w.Kind:               tc.w.Name,
			}
			if got := scrape(t, tc.p).Sum(contract.MetricRequestTotal, sel); got < 1 {
				t.Errorf("%s: no %s series with %v", tc.p.NS.Name, contract.MetricRequestTotal, sel)
			}
		}
	})

	t.Run("admin endpoints", func(t *testing.T) {
		for _, p := range []*meshtest.Proxy{m.ClientProxy, m.ServerProxy} {
			c := p.NS.HTTPClient(5 * time.Second)
			for _, path := range []string{contract.AdminLivePath, contract.AdminReadyPath} {
				resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", contract.ProxyAdminPort, path))
				if err != nil {
					t.Fatalf("%s: %v", p.NS.Name, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s %s: %s, want 200", p.NS.Name, path, resp.Status)
				}
			}
		}
		// A scrape of the server pod's address, as Prometheus makes it from
		// outside, reaches the server proxy's admin port: inbound traffic to
		// it is not redirected into the proxy.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mm, err := meshtest.ScrapeURL(ctx, m.Client.HTTPClient(5*time.Second), url(contract.ProxyAdminPort, contract.AdminMetricsPath))
		if err != nil {
			t.Fatal(err)
		}
		sel := meshtest.Labels{contract.LabelPod: meshtest.ServerWorkload.Pod, contract.LabelDirection: contract.DirectionInbound}
		if mm.Sum(contract.MetricRequestTotal, sel) < 1 {
			t.Errorf("scrape of %s has no %s%s", url(contract.ProxyAdminPort, contract.AdminMetricsPath), contract.MetricRequestTotal, sel)
		}
	})

	t.Run("http1 failure status", func(t *testing.T) {
		before := m.snapshot(t)
		if out := m.curl(t, "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", url(httpPort, "/status/503")); out != "503" {
			t.Fatalf("status %s, want 503", out)
		}
		sel := with(outbound, contract.LabelAuthority, authority(httpPort), contract.LabelStatusCode, "503")
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseTotal,
			with(sel, contract.LabelClassification, contract.ClassificationFailure), 1)
	})

	t.Run("http1 chunked", func(t *testing.T) {
		out := m.curl(t, "--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url(httpPort, "/chunked?n=3000000"))
		if out != "200 3000000" {
			t.Fatalf("curl wrote %q, want 200 3000000", out)
		}
	})

	t.Run("h2c prior knowledge", func(t *testing.T) {
		before := m.snapshot(t)
		u := url(httpPort, "/bytes?n=1024")
		// One request per curl: Debian's curl 7.88 fails a second transfer
		// on a reused prior-knowledge connection even against a plain Go
		// server. (gRPC below multiplexes streams on one connection.)
		for range 2 {
			out := m.curl(t, "--http2-prior-knowledge", "-w", "%{http_code} %{http_version} %{size_download}\n", "-o", "/dev/null", u)
			if want := "200 2 1024\n"; out != want {
				t.Fatalf("curl wrote %q, want %q", out, want)
			}
		}
		sel := with(outbound, contract.LabelAuthority, authority(httpPort), contract.LabelStatusCode, "200")
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseTotal, sel, 2)
		in := with(inbound, contract.LabelAuthority, authority(httpPort), contract.LabelStatusCode, "200")
		expectDelta(t, m.ServerProxy, before.server, contract.MetricResponseTotal, in, 2)
	})

	t.Run("grpc", func(t *testing.T) { testGRPC(t, m) })

	t.Run("large bodies", func(t *testing.T) {
		t.Run("http1", func(t *testing.T) { testLargeBodies(t, m, "--http1.1") })
		// HTTP/2 flow control over 100 MB, both ways.
		t.Run("h2c", func(t *testing.T) { testLargeBodies(t, m, "--http2-prior-knowledge") })
	})

	t.Run("client aborts", func(t *testing.T) { testClientAborts(t, m) })

	t.Run("upstream refuses", func(t *testing.T) {
		before := m.snapshot(t)
		code, hdr := curlStatus(t, m, url(refusedPort, "/"))
		if code != http.StatusBadGateway && code != http.StatusServiceUnavailable {
			t.Errorf("refused upstream answered %d, want 502 or 503", code)
		}
		if hdr.Get(contract.ProxyErrorHeader) == "" {
			t.Errorf("refused upstream: no %s header in %v", contract.ProxyErrorHeader, hdr)
		}
		sel := with(outbound, contract.LabelAuthority, authority(refusedPort), contract.LabelClassification, contract.ClassificationFailure)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseTotal, sel, 1)
	})

	t.Run("upstream resets", func(t *testing.T) {
		before := m.snapshot(t)
		code, hdr := curlStatus(t, m, url(resetPort, "/"))
		if code != http.StatusBadGateway {
			t.Errorf("reset upstream answered %d, want 502", code)
		}
		if hdr.Get(contract.ProxyErrorHeader) == "" {
			t.Errorf("reset upstream: no %s header in %v", contract.ProxyErrorHeader, hdr)
		}
		sel := with(outbound, contract.LabelAuthority, authority(resetPort), contract.LabelClassification, contract.ClassificationFailure)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseTotal, sel, 1)
	})

	t.Run("skip ports", func(t *testing.T) { checkSkipPorts(t, m, authority, m.curl) })

	t.Run("opaque tcp", func(t *testing.T) {
		for _, port := range []int{opaquePort, undetectedPort} {
			t.Run(strconv.Itoa(port), func(t *testing.T) {
				before := m.snapshot(t)
				const size = 1 << 20
				echoThrough(t, m, port, size)
				for _, side := range []struct {
					p      *meshtest.Proxy
					before meshtest.Metrics
					sel    meshtest.Labels
				}{{m.ClientProxy, before.client, outbound}, {m.ServerProxy, before.server, inbound}} {
					expectAtLeast(t, side.p, side.before, contract.MetricTCPReadBytesTotal, side.sel, size)
					expectAtLeast(t, side.p, side.before, contract.MetricTCPWriteBytesTotal, side.sel, size)
					expectAtLeast(t, side.p, side.before, contract.MetricTCPCloseTotal, side.sel, 1)
					// Opaque traffic is not counted as HTTP requests.
					expectDelta(t, side.p, side.before, contract.MetricRequestTotal, side.sel, 0)
				}
			})
		}
	})

	t.Run("connections closed", func(t *testing.T) {
		// Every client above has gone, aborted ones included: the client
		// proxy holds no accepted connection. (The server proxy may: the
		// client proxy's pool keeps idle connections to it.)
		p := m.ClientProxy
		check(t, p, func(mm meshtest.Metrics) error {
			if n := mm.Sum(contract.MetricTCPOpenConnections, nil); n != 0 {
				return fmt.Errorf("%s: %s = %v, want 0; series %v", p.NS.Name, contract.MetricTCPOpenConnections, n, mm.Series(contract.MetricTCPOpenConnections, nil))
			}
			return nil
		})
	})

	for _, p := range []*meshtest.Proxy{m.ClientProxy, m.ServerProxy} {
		if p.Exited() {
			t.Errorf("proxy in %s exited during the test", p.NS.Name)
		}
	}
}

// drainAppEvents forgets the bodies earlier subtests left on the app's
// channels, so the next event read is the one a subtest caused.
func (m *testMesh) drainAppEvents() {
	for {
		select {
		case <-m.app.Uploads():
		case <-m.app.Downloads():
		default:
			return
		}
	}
}

// curlStatus returns the status and headers of a GET.
func curlStatus(t *testing.T, m *testMesh, u string) (int, http.Header) {
	t.Helper()
	out := m.curl(t, "--http1.1", "-o", "/dev/null", "-D", "-", u)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("parse curl's headers %q: %v", out, err)
	}
	return resp.StatusCode, resp.Header
}

// testLargeBodies moves 100 MB each way through both proxies and checks
// every byte, and that the proxies streamed rather than held the bodies.
func testLargeBodies(t *testing.T, m *testMesh, proto string) {
	const size = 100 << 20
	m.drainAppEvents()
	t.Run("download", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := m.Client.Command(ctx, "curl", "-sS", proto, "--fail", url(httpPort, fmt.Sprintf("/bytes?n=%d", size)))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		n, mismatch := comparePattern(stdout)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("curl: %v: %s", err, stderr.String())
		}
		if n != size || mismatch >= 0 {
			t.Fatalf("downloaded %d bytes (first mismatch at %d), want %d bytes of the pattern", n, mismatch, size)
		}
		if err := <-m.app.Downloads(); err != nil {
			t.Errorf("server saw the download end with %v", err)
		}
	})

	file := filepath.Join(t.TempDir(), "body")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), httpapp.PatternReader(size)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := fmt.Sprintf("%d %s", size, hex.EncodeToString(h.Sum(nil)))

	for _, tc := range []struct{ name, arg string }{
		{"upload content-length", file}, // -T FILE sends Content-Length
		{"upload chunked", "-"},         // -T - streams stdin (chunked in HTTP/1.1)
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := m.Client.Command(ctx, "curl", "-sS", proto, "--fail", "-X", "POST", "-H", "Expect:", "-T", tc.arg, url(httpPort, "/upload"))
			if tc.arg == "-" {
				cmd.Stdin = httpapp.PatternReader(size)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, stderr.String())
			}
			if string(out) != want {
				t.Errorf("server answered %q, want %q", out, want)
			}
			if u := <-m.app.Uploads(); u.Err != nil || u.Bytes != size {
				t.Errorf("server read %d bytes, error %v", u.Bytes, u.Err)
			}
		})
	}

	// Streaming, not buffering: neither proxy's peak RSS came near a body.
	const limit = 64 << 20
	for _, p := range []*meshtest.Proxy{m.ClientProxy, m.ServerProxy} {
		st, err := meshtest.ReadProcStatus(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		if st.VmHWM > limit {
			t.Errorf("proxy in %s peaked at %d MiB RSS moving 100 MB bodies: they were buffered, not streamed", p.NS.Name, st.VmHWM>>20)
		}
	}
}

// comparePattern reads r to the end and returns its length and the offset
// of the first byte that differs from the pattern (-1 if none).
func comparePattern(r io.Reader) (int64, int64) {
	buf := make([]byte, 1<<16)
	var off int64
	mismatch := int64(-1)
	for {
		n, err := r.Read(buf)
		for i := 0; i < n && mismatch < 0; i++ {
			if buf[i] != httpapp.Pattern(off+int64(i)) {
				mismatch = off + int64(i)
			}
		}
		off += int64(n)
		if err != nil {
			return off, mismatch
		}
	}
}

// testClientAborts closes client connections in the middle of a request
// body and of a response body: the server must see the abort, and the
// proxies must go on serving.
func testClientAborts(t *testing.T, m *testMesh) {
	m.drainAppEvents()
	dial := func(t *testing.T) net.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := m.Client.Dial(ctx, "tcp4", authority(httpPort))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Run("mid request body", func(t *testing.T) {
		c := dial(t)
		const declared, sent = 10 << 20, 1 << 20
		fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", authority(httpPort), declared)
		if _, err := io.Copy(c, httpapp.PatternReader(sent)); err != nil {
			t.Fatal(err)
		}
		c.Close()
		select {
		case u := <-m.app.Uploads():
			if u.Err == nil || u.Bytes >= declared {
				t.Errorf("server read %d of %d bytes with error %v, want a cut-short body", u.Bytes, declared, u.Err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the server never learned that the client went away mid-body")
		}
	})
	t.Run("mid response body", func(t *testing.T) {
		c := dial(t)
		fmt.Fprintf(c, "GET /bytes?n=%d HTTP/1.1\r\nHost: %s\r\n\r\n", 100<<20, authority(httpPort))
		if _, err := io.CopyN(io.Discard, c, 1<<20); err != nil {
			t.Fatal(err)
		}
		c.Close()
		select {
		case err := <-m.app.Downloads():
			if err == nil {
				t.Error("server finished the 100 MB response to a client that left after 1 MB")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the server never learned that the client went away mid-response")
		}
	})
	t.Run("proxies still serve", func(t *testing.T) {
		if out := m.curl(t, "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", url(httpPort, "/bytes?n=10")); out != "200" {
			t.Fatalf("status %s after the aborts, want 200", out)
		}
	})
}

// echoThrough sends size bytes to the echo server on port from the client
// namespace and checks they come back.
func echoThrough(t *testing.T, m *testMesh, port, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := m.Client.Dial(ctx, "tcp4", authority(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	// The first bytes are not any protocol the proxy knows.
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*13 + 1)
	}
	payload[0] = 0
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(payload))
	}
}

// serveEcho echoes each connection, half-close included.
func serveEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
			c.(*net.TCPConn).CloseWrite()
		}()
	}
}

// serveReset reads a request head and answers with a TCP reset.
func serveReset(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}()
	}
}

// checkSkipPorts asks each skip port for a page and checks, by the proxies'
// request counts, that it bypassed the proxy it should. addr is the
// server's host:port of a port; curl runs curl in the client namespace.
func checkSkipPorts(t *testing.T, m *testMesh, addr func(port int) string, curl func(*testing.T, ...string) string) {
	before := m.snapshot(t)
	for _, port := range []int{skipInboundPort, skipOutboundPort} {
		if out := curl(t, "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", "http://"+addr(port)+"/bytes?n=10"); out != "200" {
			t.Fatalf("port %d: status %s, want 200", port, out)
		}
	}
	// Skipped inbound: the client proxy sees the request, the server
	// proxy does not.
	expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, with(outbound, contract.LabelAuthority, addr(skipInboundPort)), 1)
	expectDelta(t, m.ServerProxy, before.server, contract.MetricRequestTotal, with(inbound, contract.LabelAuthority, addr(skipInboundPort)), 0)
	// Skipped outbound: the other way round.
	expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, with(outbound, contract.LabelAuthority, addr(skipOutboundPort)), 0)
	expectDelta(t, m.ServerProxy, before.server, contract.MetricRequestTotal, with(inbound, contract.LabelAuthority, addr(skipOutboundPort)), 1)
}
