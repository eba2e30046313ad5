package integration

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/internal/httpapp"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// Ports of the server namespace's applications in TestUpgradeAndConnect.
const (
	wsPort      = 8085 // WebSocket echo, and /headers for the h2c check
	forwardPort = 3128 // an HTTP forward proxy answering CONNECT
	tlsPort     = 8443 // an HTTPS server reached through the tunnel
)

// tlsName is the name the TLS server's certificate carries; the forward
// proxy maps it to the server on loopback (no DNS).
const tlsName = "example.com"

// wsEcho echoes WebSocket messages after a greeting; /headers answers
// with the upgrade-related headers it received.
func wsEcho() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/headers" {
			fmt.Fprintf(w, "upgrade=%q http2-settings=%q", r.Header.Get("Upgrade"), r.Header.Get("Http2-Settings"))
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		if c.Write(ctx, websocket.MessageText, []byte("hello")) != nil {
			return
		}
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if c.Write(ctx, typ, append([]byte("echo: "), b...)) != nil {
				return
			}
		}
	})
}

// forwardProxy answers CONNECT for the targets in routes (name:port →
// address, dialled from ns) and splices; anything else is refused.
func forwardProxy(ns *meshtest.NetNS, routes map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, ok := routes[r.Host]
		if r.Method != http.MethodConnect || !ok {
			http.Error(w, "not allowed", http.StatusForbidden)
			return
		}
		up, err := ns.Dial(r.Context(), "tcp", addr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		w.WriteHeader(http.StatusOK)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.Flush()
		go func() {
			if n := brw.Reader.Buffered(); n > 0 {
				b, _ := brw.Reader.Peek(n)
				up.Write(b)
			}
			io.Copy(up, c)
			up.(*net.TCPConn).CloseWrite()
		}()
		io.Copy(c, up)
	})
}

func TestUpgradeAndConnect(t *testing.T) {
	meshtest.RequireRoot(t, "curl")
	m := &testMesh{Mesh: meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{})}
	t.Cleanup(httpapp.Serve(m.listen(t, wsPort), wsEcho()))
	t.Cleanup(httpapp.Serve(m.listen(t, forwardPort), forwardProxy(m.Server, map[string]string{
		fmt.Sprintf("%s:%d", tlsName, tlsPort): fmt.Sprintf("127.0.0.1:%d", tlsPort),
	})))
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret over "+r.Proto)
	}))
	tlsSrv.Listener = m.listen(t, tlsPort)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("websocket", func(t *testing.T) {
		before := m.snapshot(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, "ws://"+authority(wsPort)+"/chat", &websocket.DialOptions{HTTPClient: m.Client.HTTPClient(0)})
		if err != nil {
			t.Fatalf("WebSocket through the mesh: %v", err)
		}
		defer ws.CloseNow()
		ws.SetReadLimit(1 << 20)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %d", resp.StatusCode)
		}
		if _, b, err := ws.Read(ctx); err != nil || string(b) != "hello" {
			t.Fatalf("greeting %q, %v", b, err)
		}
		big := strings.Repeat("w", 200<<10)
		for _, msg := range []string{"one", "two", big} {
			if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			if _, b, err := ws.Read(ctx); err != nil || string(b) != "echo: "+msg {
				t.Fatalf("echo of %d bytes: %d bytes back, %v", len(msg), len(b), err)
			}
		}
		if err := ws.Close(websocket.StatusNormalClosure, "done"); err != nil {
			t.Fatalf("close handshake through the mesh: %v", err)
		}
		out := with(outbound, contract.LabelAuthority, authority(wsPort))
		in := with(inbound, contract.LabelAuthority, authority(wsPort))
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, out, 1)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseTotal, with(out, contract.LabelStatusCode, "101"), 1)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricRequestTotal, in, 1)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricResponseTotal, with(in, contract.LabelStatusCode, "101"), 1)
		for _, p := range []struct {
			proxy  *meshtest.Proxy
			before meshtest.Metrics
			dir    meshtest.Labels
		}{{m.ClientProxy, before.client, outbound}, {m.ServerProxy, before.server, inbound}} {
			expectAtLeast(t, p.proxy, p.before, contract.MetricTCPReadBytesTotal, p.dir, float64(len(big)))
			expectAtLeast(t, p.proxy, p.before, contract.MetricTCPWriteBytesTotal, p.dir, float64(len(big)))
		}
	})

	t.Run("connect tunnel carrying tls", func(t *testing.T) {
		before := m.snapshot(t)
		target := fmt.Sprintf("%s:%d", tlsName, tlsPort)
		got := m.curl(t, "--proxytunnel", "-x", "http://"+authority(forwardPort), "--cacert", caFile,
			"https://"+target+"/")
		if got != "secret over HTTP/1.1" {
			t.Fatalf("through the tunnel: %q", got)
		}
		out := with(outbound, contract.LabelAuthority, target)
		in := with(inbound, contract.LabelAuthority, target)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, out, 1)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricResponseTotal, with(out, contract.LabelStatusCode, "200"), 1)
		expectDelta(t, m.ServerProxy, before.server, contract.MetricResponseTotal, with(in, contract.LabelStatusCode, "200"), 1)
		// The TLS handshake's bytes (a certificate each way at least).
		expectAtLeast(t, m.ClientProxy, before.client, contract.MetricTCPReadBytesTotal, outbound, 300)
		expectAtLeast(t, m.ClientProxy, before.client, contract.MetricTCPWriteBytesTotal, outbound, 500)

		// A target the forward proxy refuses: its 403 comes back whole.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := m.Client.Output(ctx, "curl", "-sS", "--proxytunnel", "-x", "http://"+authority(forwardPort),
			"--cacert", caFile, "https://other.test:443/")
		if err == nil || !strings.Contains(err.Error(), "CONNECT tunnel failed, response 403") {
			t.Fatalf("refused CONNECT: curl said %v, want the forward proxy's 403", err)
		}
	})

	t.Run("h2c upgrade refused", func(t *testing.T) {
		got := m.curl(t, "--http2", "-w", " %{http_version}", url(wsPort, "/headers"))
		if want := `upgrade="" http2-settings="" 1.1`; got != want {
			t.Fatalf("curl --http2 (h2c upgrade) got %q, want %q", got, want)
		}
	})
}
