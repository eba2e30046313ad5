package adversarial

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// Ports of the server namespace's applications in the exposure tests.
const (
	exposurePrivatePort      = 7001 // HTTP on 127.0.0.1 only: an admin endpoint meant to stay in the pod
	exposurePrivateTCPPort   = 7002 // TCP on 127.0.0.1 only, configured opaque
	exposureOptedPort        = 7003 // HTTP on 127.0.0.1 only, opted in with --inbound-loopback-ports
	exposurePodPort          = 7004 // HTTP on the pod's address only
	exposurePodOptedPort     = 7005 // HTTP on the pod's address only, opted in (fallback from loopback)
	exposureAnyPort          = 7006 // HTTP on 0.0.0.0
	exposurePrivateShadowTCP = 7007 // TCP on 127.0.0.1 with a different answer than on the pod's address
)

// exposureServeHTTP answers every request with body on l until the test
// ends.
func exposureServeHTTP(t *testing.T, l net.Listener, body string) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// exposureServeBanner writes banner to every connection on l, then closes
// it.
func exposureServeBanner(l net.Listener, banner string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(banner))
		c.Close()
	}
}

func exposureListen(t *testing.T, ns *meshtest.NetNS, addr string) net.Listener {
	t.Helper()
	l, err := ns.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// exposureGet fetches url from the client namespace through both proxies
// and returns the status and body.
func exposureGet(t *testing.T, m *meshtest.Mesh, port int) (int, string) {
	t.Helper()
	url := fmt.Sprintf("http://%s:%d/", meshtest.ServerAddr, port)
	resp, err := m.Client.HTTPClient(10 * time.Second).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// exposureReadTCP connects from the client namespace and returns what
// arrives before the connection ends.
func exposureReadTCP(t *testing.T, m *meshtest.Mesh, port int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := m.Client.Dial(ctx, "tcp4", fmt.Sprintf("%s:%d", meshtest.ServerAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read from port %d: %v", port, err)
	}
	return string(b)
}

// TestExposureLoopbackStaysPrivate: without the mesh a remote peer cannot
// reach a port bound to 127.0.0.1; through the mesh it must not either,
// unless the port is opted in to loopback.
func TestExposureLoopbackStaysPrivate(t *testing.T) {
	meshtest.RequireRoot(t)
	b := binaries(t)
	m := meshtest.NewMesh(t, b, meshtest.MeshOptions{
		ClientProxy: []meshtest.ProxyOption{meshtest.WithArgs(
			"--opaque-ports=" + strconv.Itoa(exposurePrivateTCPPort))},
		ServerProxy: []meshtest.ProxyOption{meshtest.WithArgs(
			"--opaque-ports="+strconv.Itoa(exposurePrivateTCPPort),
			fmt.Sprintf("--inbound-loopback-ports=%d,%d", exposureOptedPort, exposurePodOptedPort))},
	})
	lo := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	pod := func(port int) string { return fmt.Sprintf("%s:%d", meshtest.ServerAddr, port) }
	exposureServeHTTP(t, exposureListen(t, m.Server, lo(exposurePrivatePort)), "private admin")
	go exposureServeBanner(exposureListen(t, m.Server, lo(exposurePrivateTCPPort)), "private tcp")
	exposureServeHTTP(t, exposureListen(t, m.Server, lo(exposureOptedPort)), "opted in")
	exposureServeHTTP(t, exposureListen(t, m.Server, pod(exposurePodPort)), "pod address")
	exposureServeHTTP(t, exposureListen(t, m.Server, pod(exposurePodOptedPort)), "pod address, opted")
	exposureServeHTTP(t, exposureListen(t, m.Server, fmt.Sprintf("0.0.0.0:%d", exposureAnyPort)), "any address")
	go exposureServeBanner(exposureListen(t, m.Server, lo(exposurePrivateShadowTCP)), "loopback side")
	go exposureServeBanner(exposureListen(t, m.Server, pod(exposurePrivateShadowTCP)), "pod side")

	t.Run("loopback-only HTTP is not reachable", func(t *testing.T) {
		status, body := exposureGet(t, m, exposurePrivatePort)
		if status != http.StatusBadGateway || strings.Contains(body, "private admin") {
			t.Errorf("remote GET of a loopback-only port: %d %q, want the proxy's 502 and not the application", status, body)
		}
	})
	t.Run("loopback-only opaque TCP is not reachable", func(t *testing.T) {
		if got := exposureReadTCP(t, m, exposurePrivateTCPPort); got != "" {
			t.Errorf("remote connection to a loopback-only port read %q, want nothing", got)
		}
	})
	t.Run("the pod's address is what the application on both gets", func(t *testing.T) {
		if got := exposureReadTCP(t, m, exposurePrivateShadowTCP); got != "pod side" {
			t.Errorf("read %q, want the listener on the pod's address", got)
		}
	})
	for _, tc := range []struct {
		name string
		port int
		want string
	}{
		{"opted-in loopback port", exposureOptedPort, "opted in"},
		{"pod address", exposurePodPort, "pod address"},
		{"pod address on an opted-in port (fallback)", exposurePodOptedPort, "pod address, opted"},
		{"any address", exposureAnyPort, "any address"},
	} {
		t.Run(tc.name+" is reachable", func(t *testing.T) {
			if status, body := exposureGet(t, m, tc.port); status != http.StatusOK || body != tc.want {
				t.Errorf("GET: %d %q, want 200 %q", status, body, tc.want)
			}
		})
	}
}
