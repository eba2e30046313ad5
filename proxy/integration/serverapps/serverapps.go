// Package serverapps runs real servers of protocols where the server
// speaks first (MariaDB, SMTP) inside a test's network namespace, for the
// integration tests and the time-to-first-byte benchmark.
package serverapps

import (
	"context"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
	"github.com/emersion/go-smtp"
)

// MariaDB is a mariadbd started by StartMariaDB.
type MariaDB struct {
	// Socket is its Unix socket (outside any network namespace).
	Socket string
}

// StartMariaDB initialises a data directory under dir and runs mariadbd in
// ns on addr:port, with grant tables off (any user, no password). It is
// stopped when t ends; on failure its log is shown.
func StartMariaDB(t meshtest.T, ns *meshtest.NetNS, dir, addr string, port int) *MariaDB {
	t.Helper()
	db := &MariaDB{Socket: filepath.Join(dir, "mysqld.sock")}
	logFile := filepath.Join(dir, "error.log")
	data := filepath.Join(dir, "data")
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--skip-test-db", "--auth-root-authentication-method=normal")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	cmd := ns.Command(context.Background(), "mariadbd", "--no-defaults", "--user=root",
		"--datadir="+data, "--socket="+db.Socket, "--pid-file="+filepath.Join(dir, "mysqld.pid"),
		"--log-error="+logFile, "--bind-address="+addr, "--port="+strconv.Itoa(port),
		"--skip-grant-tables", "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--skip-log-bin")
	// If the test process dies without its cleanups, mariadbd dies too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mariadbd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
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
			b, _ := os.ReadFile(logFile)
			t.Fatalf("mariadbd exited before ready:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile)
			t.Fatalf("mariadbd not ready after 60s: %v\n%s", err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// SMTP is an SMTP server (github.com/emersion/go-smtp) that keeps the
// messages it accepts.
type SMTP struct {
	mu   sync.Mutex
	msgs []Message
}

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	Data []byte
}

// ServeSMTP serves SMTP on l as domain until t ends.
func ServeSMTP(t meshtest.T, l net.Listener, domain string) *SMTP {
	b := &SMTP{}
	s := smtp.NewServer(b)
	s.Domain = domain
	// Clients that hang up after the greeting (the benchmark) are normal.
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return b
}

// Messages returns the messages accepted so far.
func (b *SMTP) Messages() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.msgs...)
}

func (b *SMTP) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{be: b}, nil }

type session struct {
	be  *SMTP
	msg Message
}

func (s *session) Reset()        { s.msg = Message{} }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.msg.From = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.msg.To = append(s.msg.To, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.Data = b
	s.be.mu.Lock()
	s.be.msgs = append(s.be.msgs, s.msg)
	s.be.mu.Unlock()
	return nil
}
