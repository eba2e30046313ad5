package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/internal/httpapp"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
	"github.com/emersion/go-smtp"
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

// MariaDB is a mariadbd the test started.
type MariaDB struct {
	Dir, Socket string
	cmd         *exec.Cmd
	log         string
}

// StartMariaDB initialises a data directory under t.TempDir() and runs
// mariadbd in ns on addr:port, stopped when the test ends.
func StartMariaDB(t *testing.T, ns *meshtest.NetNS, addr string, port int) *MariaDB {
	t.Helper()
	dir := t.TempDir()
	db := &MariaDB{Dir: dir, Socket: filepath.Join(dir, "mysqld.sock"), log: filepath.Join(dir, "error.log")}
	data := filepath.Join(dir, "data")
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--skip-test-db", "--auth-root-authentication-method=normal")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	db.cmd = ns.Command(context.Background(), "mariadbd", "--no-defaults", "--user=root",
		"--datadir="+data, "--socket="+db.Socket, "--pid-file="+filepath.Join(dir, "mysqld.pid"),
		"--log-error="+db.log, "--bind-address="+addr, "--port="+strconv.Itoa(port),
		"--skip-grant-tables", "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--skip-log-bin")
	db.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := db.cmd.Start(); err != nil {
		t.Fatalf("start mariadbd: %v", err)
	}
	exited := make(chan struct{})
	go func() { db.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		db.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			db.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(db.log)
			t.Logf("mariadbd log:\n%s", b)
		}
	})
	// Ready once it answers on its socket.
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := exec.Command("mariadb", "--no-defaults", "--socket="+db.Socket, "-u", "root", "-e", "SELECT 1").Run()
		if err == nil {
			return db
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(db.log)
			t.Fatalf("mariadbd exited before ready:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(db.log)
			t.Fatalf("mariadbd not ready after 60s: %v\n%s", err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// smtpBackend keeps the messages it receives.
type smtpBackend struct {
	mu   sync.Mutex
	msgs []smtpMessage
}

type smtpMessage struct {
	from string
	to   []string
	data []byte
}

func (b *smtpBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{be: b}, nil }

func (b *smtpBackend) messages() []smtpMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]smtpMessage(nil), b.msgs...)
}

type smtpSession struct {
	be  *smtpBackend
	msg smtpMessage
}

func (s *smtpSession) Reset()        { s.msg = smtpMessage{} }
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.msg.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.msg.to = append(s.msg.to, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.data = b
	s.be.mu.Lock()
	s.be.msgs = append(s.be.msgs, s.msg)
	s.be.mu.Unlock()
	return nil
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
		StartMariaDB(t, m.Server, server, mariadbPort)
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
		be := &smtpBackend{}
		s := smtp.NewServer(be)
		s.Domain = "mail.mesh.test"
		s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
		go s.Serve(m.listen(t, smtpPort))
		t.Cleanup(func() { s.Close() })

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
		msgs := be.messages()
		if len(msgs) != 1 || msgs[0].from != "client@mesh.test" || fmt.Sprint(msgs[0].to) != "[server@mesh.test]" ||
			!strings.Contains(string(msgs[0].data), "sent through the mesh") || !strings.Contains(string(msgs[0].data), "Subject: server first") {
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
