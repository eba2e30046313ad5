package opaque

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

type counter struct{ read, written atomic.Int64 }

func (c *counter) Transferred(r, w int64) { c.read.Add(r); c.written.Add(w) }

func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return client, <-ch
}

// A client sends a request and half-closes; the server reads to EOF,
// answers and closes. Bytes arrive intact, the prefix first, and the counts
// match what each side sent (less the prefix, counted by its reader).
func TestForwardHalfCloseAndCounts(t *testing.T) {
	app, proxyIn := pair(t)       // app client -> proxy
	proxyOut, backend := pair(t)  // proxy -> backend
	req := make([]byte, 3<<20+17) // more than one copy chunk
	rand.Read(req)
	resp := []byte("thanks")

	var c counter
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The proxy already read the first 5 bytes while detecting.
		pre := make([]byte, 5)
		io.ReadFull(proxyIn, pre)
		Forward(proxyIn, pre, proxyOut, &c)
	}()
	backendGot := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(backend) // until the proxy half-closes
		backend.Write(resp)
		backend.Close()
		backendGot <- b
	}()
	go func() {
		app.Write(req)
		app.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(app)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, resp) {
		t.Fatalf("client got %q, want %q", got, resp)
	}
	if b := <-backendGot; !bytes.Equal(b, req) {
		t.Fatalf("backend got %d bytes, want the %d sent, in order", len(b), len(req))
	}
	<-done
	if c.read.Load() != int64(len(req)-5) || c.written.Load() != int64(len(resp)) {
		t.Fatalf("counted read=%d written=%d, want %d and %d", c.read.Load(), c.written.Load(), len(req)-5, len(resp))
	}
}

// When the backend resets, the client's connection is closed too and
// Forward returns.
func TestForwardUpstreamReset(t *testing.T) {
	app, proxyIn := pair(t)
	proxyOut, backend := pair(t)
	var c counter
	done := make(chan struct{})
	go func() { Forward(proxyIn, nil, proxyOut, &c); close(done) }()
	backend.(*net.TCPConn).SetLinger(0)
	backend.Close() // RST
	app.Write([]byte("hello"))
	// The client sees its connection end (EOF or reset), and Forward
	// returns instead of waiting on the half that is still open.
	io.ReadAll(app)
	<-done
}

// Bytes show up in the counts while the connection is still open, so a
// long-lived, quiet connection is visible in the metrics.
func TestCountsWhileOpen(t *testing.T) {
	app, proxyIn := pair(t)
	proxyOut, backend := pair(t)
	defer app.Close()
	defer backend.Close()
	var c counter
	go Forward(proxyIn, nil, proxyOut, &c)
	app.Write([]byte("0123456789"))
	buf := make([]byte, 10)
	if _, err := io.ReadFull(backend, buf); err != nil {
		t.Fatal(err)
	}
	backend.Write([]byte("abc"))
	if _, err := io.ReadFull(app, buf[:3]); err != nil {
		t.Fatal(err)
	}
	if r, w := c.read.Load(), c.written.Load(); r != 10 || w != 3 {
		t.Fatalf("while open: counted read=%d written=%d, want 10 and 3", r, w)
	}
}

// closedWithin reports how long until c's peer closed (EOF or reset),
// failing after limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("still open after %v", limit)
	}
	return time.Since(start)
}

// A connection on which neither side sends anything is closed, both
// sides, once the idle timeout has passed, and Forward returns.
func TestForwardIdleTimeout(t *testing.T) {
	app, proxyIn := pair(t)
	proxyOut, backend := pair(t)
	defer app.Close()
	defer backend.Close()
	const idle = 200 * time.Millisecond
	done := make(chan struct{})
	start := time.Now()
	go func() { ForwardIdle(proxyIn, nil, proxyOut, &counter{}, idle); close(done) }()
	closedWithin(t, app, 5*time.Second)
	if d := time.Since(start); d < idle {
		t.Fatalf("closed after %v, before the idle timeout %v", d, idle)
	}
	closedWithin(t, backend, time.Second)
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Forward did not return after the idle timeout")
	}
}

// Bytes in either direction, one direction only, keep the connection
// open; it closes once they stop for the idle timeout.
func TestForwardIdleTimeoutCountsEitherDirection(t *testing.T) {
	app, proxyIn := pair(t)
	proxyOut, backend := pair(t)
	defer app.Close()
	defer backend.Close()
	const idle = 200 * time.Millisecond
	go ForwardIdle(proxyIn, nil, proxyOut, &counter{}, idle)
	// The server streams a byte every 50 ms for 4 idle periods; the
	// client says nothing. Each must arrive.
	buf := make([]byte, 1)
	for i := range 16 {
		if _, err := backend.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		app.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := io.ReadFull(app, buf); err != nil {
			t.Fatalf("byte %d after %d ms of one-way traffic: %v", i, i*50, err)
		}
		time.Sleep(50 * time.Millisecond) // the traffic's pace, not synchronisation
	}
	stopped := time.Now()
	closedWithin(t, app, 5*time.Second)
	if d := time.Since(stopped); d < idle-50*time.Millisecond {
		t.Fatalf("closed %v after the last byte, before the idle timeout %v", d, idle)
	}
}

// Closing the client's socket (what Conn.Abort does at the drain
// timeout's end) ends Forward even when both sides are silent, and the
// upstream is closed.
func TestForwardEndsWhenClientClosedLocally(t *testing.T) {
	app, proxyIn := pair(t)
	proxyOut, backend := pair(t)
	defer app.Close()
	defer backend.Close()
	done := make(chan struct{})
	go func() { Forward(proxyIn, nil, proxyOut, &counter{}); close(done) }()
	// Let Forward start waiting on both sides.
	app.Write([]byte("x"))
	io.ReadFull(backend, make([]byte, 1))
	proxyIn.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Forward still running 5s after its client socket was closed")
	}
	closedWithin(t, backend, time.Second)
}
