package adversarial

import (
	"context"
	"errors"
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
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// Ports of the server namespace's applications in the resource tests.
const (
	resourcesSilentPort = 7101 // accepts, reads, never writes; configured opaque
	resourcesEchoPort   = 7102 // echoes; configured opaque
	resourcesDetectPort = 7103 // accepts, reads, never writes; not configured: detection decides
)

// resourcesServeSilent accepts connections on l and reads them to the
// end without ever writing; each accepted connection is reported on
// accepted, each end on closed (when not full).
func resourcesServeSilent(l net.Listener, accepted, closed chan<- struct{}) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		select {
		case accepted <- struct{}{}:
		default:
		}
		go func() {
			defer c.Close()
			io.Copy(io.Discard, c)
			select {
			case closed <- struct{}{}:
			default:
			}
		}()
	}
}

// resourcesServeEcho echoes each connection.
func resourcesServeEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

type resourcesApps struct {
	accepted, closed chan struct{}
}

// resourcesMesh builds the mesh with both proxies configured as given
// and the applications on every address of the server namespace.
func resourcesMesh(t *testing.T, client, server []meshtest.ProxyOption) (*meshtest.Mesh, *resourcesApps) {
	t.Helper()
	meshtest.RequireRoot(t, "prlimit")
	opaque := meshtest.WithArgs(fmt.Sprintf("--opaque-ports=%d,%d", resourcesSilentPort, resourcesEchoPort))
	m := meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{
		ClientProxy: append([]meshtest.ProxyOption{opaque}, client...),
		ServerProxy: append([]meshtest.ProxyOption{opaque}, server...),
	})
	apps := &resourcesApps{accepted: make(chan struct{}, 4096), closed: make(chan struct{}, 4096)}
	for _, port := range []int{resourcesSilentPort, resourcesDetectPort} {
		go resourcesServeSilent(exposureListen(t, m.Server, fmt.Sprintf("0.0.0.0:%d", port)), apps.accepted, apps.closed)
	}
	go resourcesServeEcho(exposureListen(t, m.Server, fmt.Sprintf("0.0.0.0:%d", resourcesEchoPort)))
	return m, apps
}

func resourcesDial(t *testing.T, m *meshtest.Mesh, port int) net.Conn {
	t.Helper()
	return m.DialServer(t, port)
}

// resourcesClosedAfter waits up to limit for c to be closed by the other
// end and returns how long that took from start.
func resourcesClosedAfter(t *testing.T, c net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open %v after it went quiet", limit)
	}
	return time.Since(start)
}

// TestResourcesOpaqueIdleTimeout: opaque connections on which nobody says
// anything are closed at --opaque-idle-timeout, those that talk are not,
// and a silent client on a detected port ends the same way (detection
// times out, then the idle timeout applies).
func TestResourcesOpaqueIdleTimeout(t *testing.T) {
	const idle = time.Second
	args := meshtest.WithArgs("--opaque-idle-timeout="+idle.String(), "--detect-timeout=300ms")
	m, apps := resourcesMesh(t, []meshtest.ProxyOption{args}, []meshtest.ProxyOption{args})

	// The proxies' idle clocks start when they accept, after this.
	start := time.Now()
	silent := resourcesDial(t, m, resourcesSilentPort)
	detected := resourcesDial(t, m, resourcesDetectPort)
	talking := resourcesDial(t, m, resourcesEchoPort)
	talkDone := make(chan error, 1)
	go func() {
		// One byte every 200 ms for four idle periods, echoed back.
		buf := make([]byte, 1)
		for i := range 20 {
			if _, err := talking.Write([]byte{byte(i)}); err != nil {
				talkDone <- fmt.Errorf("write %d: %v", i, err)
				return
			}
			talking.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.ReadFull(talking, buf); err != nil {
				talkDone <- fmt.Errorf("echo %d after %v: %v", i, time.Since(start), err)
				return
			}
			time.Sleep(200 * time.Millisecond) // the traffic's pace
		}
		talkDone <- nil
	}()

	if d := resourcesClosedAfter(t, silent, start, 10*time.Second); d < idle {
		t.Errorf("silent opaque connection closed after %v, before the idle timeout %v", d, idle)
	}
	if d := resourcesClosedAfter(t, detected, start, 10*time.Second); d < idle {
		t.Errorf("silent connection on a detected port closed after %v, before the idle timeout %v", d, idle)
	}
	if err := <-talkDone; err != nil {
		t.Errorf("a connection with traffic every 200ms was cut: %v", err)
	}
	// The application's connections were closed too.
	for i := range 2 {
		select {
		case <-apps.closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("application connection %d still open after the idle timeout", i+1)
		}
	}
}

// resourcesAdminGet asks the server proxy's admin port for path from
// inside its namespace, as the kubelet's probes do.
func resourcesAdminGet(m *meshtest.Mesh, path string) (int, error) {
	resp, err := m.Server.HTTPClient(3 * time.Second).Get(fmt.Sprintf("http://127.0.0.1:%d%s", contract.ProxyAdminPort, path))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// resourcesNofile reads the soft "Max open files" of pid.
func resourcesNofile(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			n, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatalf("limits line %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no Max open files in /proc/%d/limits", pid)
	return 0
}

// TestResourcesFDFloodKeepsAdminAnswering: the server proxy runs with 256
// descriptors; a client holds 600 connections to an opaque port whose
// application never answers. The proxy sheds what does not fit, counts
// it, and /live and /ready keep answering 200 throughout; once the flood
// is gone, new connections are served again.
func TestResourcesFDFloodKeepsAdminAnswering(t *testing.T) {
	const limit, flood = 256, 600
	m, apps := resourcesMesh(t, nil, []meshtest.ProxyOption{
		meshtest.WithWrapper("prlimit", fmt.Sprintf("--nofile=%d:%d", limit, limit)),
	})
	if n := resourcesNofile(t, m.ServerProxy.PID()); n != limit {
		t.Fatalf("server proxy runs with %d descriptors, want %d (prlimit did not exec it?)", n, limit)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range flood {
		c := resourcesDial(t, m, resourcesSilentPort)
		// A byte makes the path whole: the server proxy has accepted it
		// and connected upstream (or shed it).
		c.Write([]byte{byte(i)})
		conns = append(conns, c)
		if i%100 == 99 {
			for _, path := range []string{contract.AdminLivePath, contract.AdminReadyPath} {
				if code, err := resourcesAdminGet(m, path); err != nil || code != http.StatusOK {
					t.Fatalf("%s with %d connections held: %d %v, want 200", path, i+1, code, err)
				}
			}
		}
	}
	for _, path := range []string{contract.AdminLivePath, contract.AdminReadyPath, contract.AdminMetricsPath} {
		if code, err := resourcesAdminGet(m, path); err != nil || code != http.StatusOK {
			t.Fatalf("%s with %d connections held: %d %v, want 200", path, flood, code, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics, err := m.ServerProxy.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inbound := meshtest.Labels{contract.LabelDirection: contract.DirectionInbound}
	shed := metrics.Sum(contract.MetricTCPShedTotal, inbound)
	open := metrics.Sum(contract.MetricTCPOpenConnections, inbound)
	t.Logf("%d held: server proxy has %v inbound connections open, %v shed; the application saw %d", flood, open, shed, len(apps.accepted))
	if shed < 1 {
		t.Errorf("%s{direction=inbound} = %v with %d connections held against %d descriptors, want > 0", contract.MetricTCPShedTotal, shed, flood, limit)
	}
	if open < 50 {
		t.Errorf("only %v inbound connections open: the budget should hold about a hundred", open)
	}
	if !strings.Contains(m.ServerProxy.Log(), "near the file descriptor limit") {
		t.Error("shedding not logged")
	}

	// The flood ends; within the budget's recount, a new connection is
	// served again (echoed).
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := resourcesDial(t, m, resourcesEchoPort)
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("again"))
		buf := make([]byte, 5)
		_, err := io.ReadFull(c, buf)
		c.Close()
		if err == nil && string(buf) == "again" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections still not served 10s after the flood ended: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestResourcesDrainOpaqueSilentServer: SIGTERM while an opaque
// connection waits on a server that never answers; the proxy exits at the
// drain timeout (2s, set by the harness), cleanly, and the application's
// connection is closed.
func TestResourcesDrainOpaqueSilentServer(t *testing.T) {
	m, apps := resourcesMesh(t, nil, nil)
	c := resourcesDial(t, m, resourcesSilentPort)
	c.Write([]byte("request the server never answers"))
	select {
	case <-apps.accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection never reached the application")
	}
	if d := m.ServerProxy.Terminate(t, 10*time.Second); d < 2*time.Second || d > 4*time.Second {
		t.Errorf("proxy exited %v after SIGTERM, want at the 2s drain timeout", d)
	}
	select {
	case <-apps.closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the application's connection outlived the proxy's drain")
	}
}
