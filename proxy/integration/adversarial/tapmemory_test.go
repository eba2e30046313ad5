package adversarial

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

const tapmemoryPort = 8091

// tapmemoryServe runs an HTTP/1.1 app in the server namespace.
func tapmemoryServe(t *testing.T, m *meshtest.Mesh) {
	t.Helper()
	l, err := m.Server.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", tapmemoryPort))
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
}

// tapmemoryTraffic sends n requests from the client namespace through
// both proxies, on 8 keep-alive connections, to paths of about 1 KiB
// with a token in the query.
func tapmemoryTraffic(t *testing.T, m *meshtest.Mesh, n int, path string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: m.Client.Dial, MaxIdleConnsPerHost: 8}}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				resp, err := c.Get(fmt.Sprintf("http://%s:%d%s", meshtest.ServerAddr, tapmemoryPort, fmt.Sprintf(path, i)))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// tapmemoryOpen sends a tap request from inside the server namespace on a
// socket with a small receive buffer, reads only the response head, and
// returns the status and the connection (never read again: a stalled
// subscriber).
func tapmemoryOpen(t *testing.T, m *meshtest.Mesh, query string) (int, string, net.Conn) {
	t.Helper()
	var c net.Conn
	err := m.Server.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return serr
		}}
		var err error
		c, err = d.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", contract.ProxyTapPort))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET %s?%s HTTP/1.1\r\nHost: tap\r\n\r\n", contract.TapPath, query)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("tap response: %v", err)
	}
	var body string
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		body = string(b)
	}
	return resp.StatusCode, body, c
}

// tapmemoryPath subscribes (reading) with q, sends one request with a
// token in its query, and returns the path its req event shows.
func tapmemoryPath(t *testing.T, m *meshtest.Mesh, q neturl.Values) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := fmt.Sprintf("http://127.0.0.1:%d%s?%s", contract.ProxyTapPort, contract.TapPath, q.Encode())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := m.Server.HTTPClient(0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("tap: %s", resp.Status)
	}
	tapmemoryTraffic(t, m, 1, "/login?token=s3cr3t&user=bob&n=%d")
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var e contract.TapEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type == contract.TapRequest {
			return e.Path
		}
	}
	t.Fatalf("no req event: %v", sc.Err())
	return ""
}

// Query values are redacted unless the subscriber asks for them.
func TestTapMemoryQueryRedacted(t *testing.T) {
	m := meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{})
	tapmemoryServe(t, m)
	if p := tapmemoryPath(t, m, nil); p != "/login?token=<redacted>&user=<redacted>&n=<redacted>" {
		t.Errorf("default subscriber saw %q", p)
	}
	if p := tapmemoryPath(t, m, neturl.Values{contract.TapParamQuery: {"1"}}); p != "/login?token=s3cr3t&user=bob&n=0" {
		t.Errorf("subscriber with query=1 saw %q", p)
	}
}

// 200 subscribers that never read, through a burst of requests with long
// paths: the proxy takes a bounded number of them, refuses the rest with
// 503 and a reason, and its resident memory stays bounded (200 such
// subscribers made it grow by about 280 MB before).
func TestTapMemoryIdleSubscribers(t *testing.T) {
	m := meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{})
	tapmemoryServe(t, m)
	long := "/items/%d/" + strings.Repeat("x", 1000) + "?token=" + strings.Repeat("s", 64)
	tapmemoryTraffic(t, m, 200, long) // warm up
	base, err := meshtest.ReadProcStatus(m.ServerProxy.PID())
	if err != nil {
		t.Fatal(err)
	}
	const subscribers = 200
	accepted, refused := 0, 0
	for range subscribers {
		code, body, _ := tapmemoryOpen(t, m, "max_rps=100000")
		switch code {
		case 200:
			accepted++
		case http.StatusServiceUnavailable:
			refused++
			if !strings.Contains(body, "subscribers, its limit") {
				t.Fatalf("503 without the reason: %q", body)
			}
		default:
			t.Fatalf("tap answered %d %q", code, body)
		}
	}
	tapmemoryTraffic(t, m, 1500, long)
	after, err := meshtest.ReadProcStatus(m.ServerProxy.PID())
	if err != nil {
		t.Fatal(err)
	}
	grew := (after.VmRSS - base.VmRSS) >> 20
	t.Logf("%d stalled subscribers (%d taken, %d refused), 1500 requests with 1 KiB paths: server proxy VmRSS %d MiB -> %d MiB (+%d MiB), VmHWM %d MiB",
		subscribers, accepted, refused, base.VmRSS>>20, after.VmRSS>>20, grew, after.VmHWM>>20)
	if accepted == 0 || accepted > 16 || refused != subscribers-accepted {
		t.Errorf("%d subscribers taken, %d refused; want at most 16 taken and the rest refused", accepted, refused)
	}
	if grew > 40 {
		t.Errorf("the proxy's resident memory grew by %d MiB, want at most 40", grew)
	}
}
