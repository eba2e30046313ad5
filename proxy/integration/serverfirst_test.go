package integration

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/internal/httpapp"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
	"github.com/conduitmesh/conduit/proxy/integration/serverapps"
)

// Ports that are in no list (not the default opaque ports 3306 and 25).
const (
	mariadbPort = 3407
	smtpPort    = 2525
)

// serverFirstMesh is a mesh whose proxies have no opaque ports and a
// detection timeout far longer than the clients wait: a server-first
// protocol works only if the proxies do not wait for the client.
func serverFirstMesh(t *testing.T) *testMesh {
	t.Helper()
	args := meshtest.WithArgs("--opaque-ports=", "--detect-timeout=10m")
	return &testMesh{Mesh: meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{
		ClientProxy: []meshtest.ProxyOption{args},
		ServerProxy: []meshtest.ProxyOption{args},
	})}
}

// TestServerSpeaksFirst runs MariaDB and SMTP, whose servers speak first,
// through the client and server proxies on ports no list names. The
// proxies' detection timeout is 10 minutes and the clients give up after
// 30 s, so these pass only because the proxies notice the server's
// greeting instead of waiting for the client.
func TestServerSpeaksFirst(t *testing.T) {
	meshtest.RequireRoot(t, "mariadbd", "mariadb", "mariadb-install-db", "swaks")
	m := serverFirstMesh(t)

	t.Run("mariadb", func(t *testing.T) {
		serverapps.StartMariaDB(t, m.Server, t.TempDir(), server, mariadbPort)
		before := m.snapshot(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := m.Client.Output(ctx, "mariadb", "--no-defaults", "--protocol=TCP", "-h", server,
			"-P", strconv.Itoa(mariadbPort), "-u", "root", "--connect-timeout=30", "--batch", "--skip-column-names",
			"-e", "CREATE DATABASE mesh; CREATE TABLE mesh.v (n INT, s VARCHAR(20));"+
				" INSERT INTO mesh.v VALUES (1, 'one'), (2, 'two'), (3, 'three');"+
				" SELECT n, s FROM mesh.v ORDER BY n;")
		if err != nil {
			t.Fatalf("mariadb through the mesh: %v", err)
		}
		if want := "1\tone\n2\ttwo\n3\tthree\n"; string(out) != want {
			t.Fatalf("query returned %q, want %q", out, want)
		}
		// It went through both proxies as TCP, not as HTTP.
		expectAtLeast(t, m.ClientProxy, before.client, contract.MetricTCPOpenTotal, outbound, 1)
		expectAtLeast(t, m.ServerProxy, before.server, contract.MetricTCPOpenTotal, inbound, 1)
		expectAtLeast(t, m.ClientProxy, before.client, contract.MetricTCPReadBytesTotal, outbound, 50)
		expectAtLeast(t, m.ServerProxy, before.server, contract.MetricTCPWriteBytesTotal, inbound, 50)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, outbound, 0)
	})

	t.Run("smtp", func(t *testing.T) {
		be := serverapps.ServeSMTP(t, m.listen(t, smtpPort), "mail.mesh.test")

		before := m.snapshot(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := m.Client.Output(ctx, "swaks", "--server", server, "--port", strconv.Itoa(smtpPort),
			"--from", "client@mesh.test", "--to", "server@mesh.test", "--helo", "client.mesh.test",
			"--header", "Subject: server first", "--body", "sent through the mesh", "--timeout", "30")
		if err != nil {
			t.Fatalf("swaks through the mesh: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("220 mail.mesh.test")) || !bytes.Contains(out, []byte("221 ")) {
			t.Errorf("swaks transcript lacks the greeting or the goodbye:\n%s", out)
		}
		msgs := be.Messages()
		if len(msgs) != 1 || msgs[0].From != "client@mesh.test" || fmt.Sprint(msgs[0].To) != "[server@mesh.test]" ||
			!strings.Contains(string(msgs[0].Data), "sent through the mesh") || !strings.Contains(string(msgs[0].Data), "Subject: server first") {
			t.Fatalf("server received %+v", msgs)
		}
		expectAtLeast(t, m.ClientProxy, before.client, contract.MetricTCPOpenTotal, outbound, 1)
		expectAtLeast(t, m.ServerProxy, before.server, contract.MetricTCPOpenTotal, inbound, 1)
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal, outbound, 0)
	})

	// A client-first protocol on the same proxies is still detected as
	// HTTP (it is counted as a request).
	t.Run("http still detected", func(t *testing.T) {
		t.Cleanup(httpapp.Serve(m.listen(t, tapAppPort), tapApp()))
		before := m.snapshot(t)
		if out := m.curl(t, "-o", "/dev/null", "-w", "%{http_code}", url(tapAppPort, "/ok")); out != "200" {
			t.Fatalf("curl status %s", out)
		}
		expectDelta(t, m.ClientProxy, before.client, contract.MetricRequestTotal,
			with(outbound, contract.LabelAuthority, authority(tapAppPort)), 1)
	})
}
