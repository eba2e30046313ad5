// Package conn is an accepted client connection as the protocol handlers
// see it: bytes read during detection still buffered, the original
// destination, byte counting, and a hook to take part in graceful drain.
package conn

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/conduitmesh/conduit/proxy/internal/metrics"
)

// Conn is an accepted connection. Read goes through Reader so bytes peeked
// during protocol detection are not lost.
type Conn struct {
	net.Conn
	// Reader buffers reads from the connection; it may hold bytes already
	// read during detection.
	Reader *bufio.Reader
	// OrigDst is where the client was connecting before the redirect.
	OrigDst netip.AddrPort
	// ID numbers the connection within the process (tap event ids).
	ID uint64

	requests atomic.Uint64

	tcp *metrics.TCP

	mu       sync.Mutex
	draining bool
	aborted  bool
	onDrain  func()
	onAbort  func()
}

// New wraps c. Bytes read and written through the returned Conn's embedded
// connection are counted in tcp.
func New(c net.Conn, origDst netip.AddrPort, tcp *metrics.TCP, readerSize int) *Conn {
	cc := &Conn{OrigDst: origDst, tcp: tcp, ID: lastID.Add(1) - 1}
	cc.Conn = &counted{Conn: c, io: RawIO(c), tcp: tcp}
	cc.Reader = bufio.NewReaderSize(cc.Conn, readerSize)
	return cc
}

var lastID atomic.Uint64

// NextRequest numbers a request on the connection, from 1.
func (c *Conn) NextRequest() uint64 { return c.requests.Add(1) }

// Raw is the connection without counting, for splicing; whoever uses it
// reports bytes through Counts.
func (c *Conn) Raw() net.Conn { return c.Conn.(*counted).Conn }

// Counts receives byte counts for transfers that bypass the counting
// wrapper.
func (c *Conn) Counts() *metrics.TCP { return c.tcp }

// Read reads through Reader.
func (c *Conn) Read(p []byte) (int, error) { return c.Reader.Read(p) }

// OnDrain registers f to run when the server starts draining (once). A
// handler registers a function that ends the connection if it is idle, or
// arranges for it to end after the request in flight. If the server is
// already draining, f runs at once. OnDrain(nil) unregisters.
func (c *Conn) OnDrain(f func()) {
	c.mu.Lock()
	c.onDrain = f
	draining := c.draining
	c.mu.Unlock()
	if draining && f != nil {
		f()
	}
}

// Drain is called by the server when it starts draining.
func (c *Conn) Drain() {
	c.mu.Lock()
	c.draining = true
	f := c.onDrain
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// OnAbort registers f to run when the server gives up on the connection
// (Abort): a handler registers a function that closes the upstream side it
// holds, so a request to a hung upstream does not outlive the drain
// timeout. If the connection is already aborted, f runs at once.
// OnAbort(nil) unregisters.
func (c *Conn) OnAbort(f func()) {
	c.mu.Lock()
	c.onAbort = f
	aborted := c.aborted
	c.mu.Unlock()
	if aborted && f != nil {
		f()
	}
}

// Abort closes the connection and runs the handler's abort function: the
// server calls it for connections still open when the drain timeout ends.
func (c *Conn) Abort() {
	c.mu.Lock()
	c.aborted = true
	f := c.onAbort
	c.mu.Unlock()
	c.Raw().Close()
	if f != nil {
		f()
	}
}

// Draining reports whether the server is draining.
func (c *Conn) Draining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

// Written is how many bytes were written through the connection's
// counting wrapper. Only the goroutine that writes may call it.
func (c *Conn) Written() int64 { return c.Conn.(*counted).written }

// counted counts bytes read and written.
type counted struct {
	net.Conn
	io      net.Conn // Read and Write as raw system calls (RawIO)
	tcp     *metrics.TCP
	written int64
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.io.Read(p)
	if n > 0 {
		c.tcp.Transferred(int64(n), 0)
	}
	return n, err
}

func (c *counted) Write(p []byte) (int, error) {
	n, err := c.io.Write(p)
	if n > 0 {
		c.written += int64(n)
		c.tcp.Transferred(0, int64(n))
	}
	return n, err
}

// CloseWrite half-closes when the connection supports it.
func (c *counted) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// CloseWrite half-closes c when it supports that (TCP does), else closes
// it.
func CloseWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
