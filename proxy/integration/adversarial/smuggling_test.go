package adversarial

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// Ports of the recording application in the server namespace: the first
// goes through both proxies, the second is skipped by the client's
// redirect, so it reaches the server proxy (inbound) alone.
const (
	smugglingPort        = 8080
	smugglingInboundPort = 8081
)

// smugglingApp is an unchanged net/http application that records every
// request that reaches it, as it parsed it, and answers with the path.
type smugglingApp struct {
	mu   sync.Mutex
	seen []string // "METHOD target Host"
}

func (a *smugglingApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	a.mu.Lock()
	a.seen = append(a.seen, r.Method+" "+r.RequestURI+" "+r.Host)
	a.mu.Unlock()
	w.Header().Set("X-Cookie-Len", strconv.Itoa(len(r.Header.Get("Cookie"))))
	w.Header().Set("X-Authorization-Len", strconv.Itoa(len(r.Header.Get("Authorization"))))
	if n, _ := strconv.Atoi(r.URL.Query().Get("big")); n > 0 {
		w.Header().Set("X-Big", strings.Repeat("b", n))
	}
	io.WriteString(w, r.URL.Path)
}

func (a *smugglingApp) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

type smugglingMesh struct {
	*meshtest.Mesh
	app *smugglingApp
}

func smugglingNewMesh(t *testing.T) *smugglingMesh {
	t.Helper()
	meshtest.RequireRoot(t)
	m := &smugglingMesh{
		Mesh: meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{
			ClientInit: []string{"--skip-outbound-ports=" + strconv.Itoa(smugglingInboundPort)},
		}),
		app: &smugglingApp{},
	}
	for _, port := range []int{smugglingPort, smugglingInboundPort} {
		l, err := m.Server.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: m.app, MaxHeaderBytes: 1 << 20}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
	return m
}

func smugglingAuthority(port int) string {
	return net.JoinHostPort(meshtest.ServerAddr.String(), strconv.Itoa(port))
}

// smugglingSend writes raw bytes from the client namespace to the server's
// port and reads everything that comes back until the connection closes,
// or until want responses have been read.
func smugglingSend(t *testing.T, m *smugglingMesh, port int, raw string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := m.Client.Dial(ctx, "tcp4", smugglingAuthority(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("writing: %v", err)
	}
	out, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("reading: %v (got %q)", err, out)
	}
	return string(out)
}

// smugglingGet sends one request on a fresh connection and returns the
// response and its body.
func smugglingGet(t *testing.T, m *smugglingMesh, port int, raw string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := m.Client.Dial(ctx, "tcp4", smugglingAuthority(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("writing: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %.60q: %v", raw, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

func smugglingScrape(t *testing.T, p *meshtest.Proxy) meshtest.Metrics {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mt, err := p.Scrape(ctx)
	if err != nil {
		t.Fatalf("scrape %s: %v", p.NS.Name, err)
	}
	return mt
}

// smugglingExpectDelta polls until name{sel} on p has moved by want since
// before (metrics are recorded as the response ends).
func smugglingExpectDelta(t *testing.T, p *meshtest.Proxy, before meshtest.Metrics, name string, sel meshtest.Labels, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := smugglingScrape(t, p)
		got := meshtest.Delta(before, after, name, sel)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s%s on %s moved by %v, want %v; series: %v", name, sel, p.NS.Name, got, want, after.Series(name, nil))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSmuggling sends the request smuggling attempts of the issue through
// both proxies and to the server proxy alone: each must be answered 400,
// the application must never see the hidden request, and a victim on
// another connection must get its own response.
func TestSmuggling(t *testing.T) {
	m := smugglingNewMesh(t)
	hidden := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	attacks := []struct{ name, raw string }{
		{"connection names content-length", "POST /front HTTP/1.1\r\nHost: %s\r\nConnection: Content-Length\r\nContent-Length: " +
			strconv.Itoa(len(hidden)) + "\r\n\r\n" + hidden},
		{"connection names transfer-encoding", "POST /front HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive, Transfer-Encoding\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(hidden)), 16) + "\r\n" + hidden + "\r\n0\r\n\r\n"},
		{"connection names host", "GET /front HTTP/1.1\r\nHost: %s\r\nConnection: Host\r\n\r\n"},
		{"CL.TE", "POST /front HTTP/1.1\r\nHost: %s\r\nContent-Length: " + strconv.Itoa(len("0\r\n\r\n"+hidden)) +
			"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden},
		{"TE.TE obfuscated", "POST /front HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n" + hidden},
		{"chunk size with whitespace inside", "POST /front HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"1 0\r\nx\r\n0\r\n\r\n" + hidden},
		{"bare LF in the chunk line", "POST /front HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"1\nx\r\n0\r\n\r\n" + hidden},
		{"NUL in a value", "GET /front HTTP/1.1\r\nHost: %s\r\nX-A: a\x00\r\n\r\n" + hidden},
	}
	for _, path := range []struct {
		name string
		port int
		p    func() *meshtest.Proxy
	}{
		{"both proxies", smugglingPort, func() *meshtest.Proxy { return m.ClientProxy }},
		{"inbound", smugglingInboundPort, func() *meshtest.Proxy { return m.ServerProxy }},
	} {
		for _, a := range attacks {
			t.Run(path.name+"/"+a.name, func(t *testing.T) {
				auth := smugglingAuthority(path.port)
				before := smugglingScrape(t, path.p())
				out := smugglingSend(t, m, path.port, fmt.Sprintf(a.raw, auth))
				if !strings.HasPrefix(out, "HTTP/1.1 400 ") || strings.Count(out, "HTTP/1.1 ") != 1 {
					t.Fatalf("answered %q, want one 400", out)
				}
				if !strings.Contains(strings.ToLower(out), contract.ProxyErrorHeader+":") {
					t.Fatalf("400 without the %s header: %q", contract.ProxyErrorHeader, out)
				}
				// A victim on another connection gets its own response.
				resp, body := smugglingGet(t, m, path.port, "GET /victim HTTP/1.1\r\nHost: "+auth+"\r\n\r\n")
				if resp.StatusCode != 200 || body != "/victim" {
					t.Fatalf("victim got %d %q", resp.StatusCode, body)
				}
				for _, r := range m.app.requests() {
					if strings.Contains(r, "/smuggled") || strings.Contains(r, "/front") {
						t.Fatalf("the application received %q; all: %q", r, m.app.requests())
					}
				}
				sel := meshtest.Labels{contract.LabelAuthority: auth}
				smugglingExpectDelta(t, path.p(), before, contract.MetricRequestTotal, sel, 2)
				smugglingExpectDelta(t, path.p(), before, contract.MetricResponseTotal,
					meshtest.Labels{contract.LabelAuthority: auth, contract.LabelStatusCode: "400"}, 1)
			})
		}
	}
}

// HTTP/1.1 without Host is refused (RFC 9112 section 3.2), through both
// proxies and inbound; an absolute-form target's authority reaches the
// application as Host, never a conflicting Host field.
func TestSmugglingHost(t *testing.T) {
	m := smugglingNewMesh(t)
	for _, port := range []int{smugglingPort, smugglingInboundPort} {
		out := smugglingSend(t, m, port, "GET /nohost HTTP/1.1\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
			t.Fatalf("port %d: HTTP/1.1 without Host answered %q", port, out)
		}
		auth := smugglingAuthority(port)
		resp, body := smugglingGet(t, m, port, "GET http://"+auth+"/abs HTTP/1.1\r\nHost: evil.example\r\n\r\n")
		if resp.StatusCode != 200 || body != "/abs" {
			t.Fatalf("port %d: absolute form answered %d %q", port, resp.StatusCode, body)
		}
	}
	for _, r := range m.app.requests() {
		if strings.Contains(r, "/nohost") || strings.Contains(r, "evil.example") {
			t.Fatalf("the application received %q", r)
		}
	}
}
