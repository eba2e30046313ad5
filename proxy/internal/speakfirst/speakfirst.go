// Package speakfirst decides a connection's protocol without making
// protocols where the server speaks first (MySQL, SMTP, ...) wait out a
// detection timeout, and without a list of ports.
//
// A client that sends its first bytes within a short window (ClientWindow)
// is detected as before: HTTP/1, HTTP/2 or opaque. A client that stays
// silent gets an upstream connection at once, and whichever side is first
// to have bytes decides: the server (a greeting) means opaque TCP over that
// connection, with nothing added to the server's time to first byte but
// the window and the connect; the client means detection goes on, and the
// early connection is used for opaque traffic or closed for HTTP (whose
// path picks its own pooled connection). An HTTP/2 server's SETTINGS frame,
// which it sends on accepting, is not a greeting: the client still decides.
package speakfirst

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/detect"
	"golang.org/x/sys/unix"
)

// ClientWindow is how long a client may take to send its first bytes
// before the proxy connects upstream to see whether the server speaks
// first. Client-first protocols write right after connecting, so their
// bytes are normally there already; a server-first protocol pays this
// much (plus a connect) on its time to first byte.
const ClientWindow = time.Millisecond

// Dial opens the upstream connection for c.
type Dial func(ctx context.Context) (net.Conn, error)

// Result is what Detect found.
type Result struct {
	Protocol detect.Protocol
	// Upstream is the connection opened while the client was silent, or
	// nil. It belongs to the caller: use it for opaque forwarding, close
	// it otherwise.
	Upstream net.Conn
	// ServerFirst is set when the server sent bytes before the client.
	ServerFirst bool
}

// Detect waits up to window for the client's first bytes, then races the
// client against a fresh upstream connection until timeout (counted from
// the call). The client's bytes stay in c.Reader. An error means the
// client connection is unusable.
func Detect(c *conn.Conn, dial Dial, window, timeout time.Duration) (Result, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	raw := c.Raw()
	if window > timeout {
		window = timeout
	}
	got, err := waitClient(c, start.Add(window))
	if err != nil {
		return Result{}, err
	}
	if got {
		p, err := detect.Peek(raw, c.Reader, time.Until(deadline))
		return Result{Protocol: p}, err
	}

	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	up, err := dial(ctx)
	cancel()
	if err == nil {
		if _, ok := rawConn(up); !ok {
			// Readiness cannot be watched without reading: no race.
			p, err := detect.Peek(raw, c.Reader, time.Until(deadline))
			if err != nil {
				up.Close()
				return Result{}, err
			}
			return Result{Protocol: p, Upstream: up}, nil
		}
	}
	if err != nil {
		// No upstream: wait for the client as without a race, so an HTTP
		// client still gets the HTTP path's error response.
		p, err := detect.Peek(raw, c.Reader, time.Until(deadline))
		return Result{Protocol: p}, err
	}
	clientReady, serverReady, err := race(c, up, deadline)
	switch {
	case err != nil:
		up.Close()
		return Result{}, err
	case serverReady && http2ServerPreface(up):
		// An HTTP/2 server (gRPC's among them) sends its SETTINGS as soon
		// as it accepts: that is no greeting, so the client decides.
		p, err := detect.Peek(raw, c.Reader, time.Until(deadline))
		if err != nil {
			up.Close()
			return Result{}, err
		}
		return Result{Protocol: p, Upstream: up}, nil
	case serverReady:
		// Bytes (or a close) from the server before the client said
		// anything conclusive: not HTTP, whatever the client sends.
		return Result{Protocol: detect.Opaque, Upstream: up, ServerFirst: true}, nil
	case clientReady:
		p, err := detect.Peek(raw, c.Reader, time.Until(deadline))
		if err != nil {
			up.Close()
			return Result{}, err
		}
		return Result{Protocol: p, Upstream: up}, nil
	}
	// Neither spoke before the timeout: opaque, as detection always did.
	return Result{Protocol: detect.Opaque, Upstream: up}, nil
}

// waitClient reports whether the client sent a byte (or closed) before
// deadline.
func waitClient(c *conn.Conn, deadline time.Time) (bool, error) {
	if c.Reader.Buffered() > 0 {
		return true, nil
	}
	raw := c.Raw()
	if err := raw.SetReadDeadline(deadline); err != nil {
		return false, err
	}
	_, err := c.Reader.Peek(1)
	if err := raw.SetReadDeadline(time.Time{}); err != nil {
		return false, err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false, nil
	}
	// Bytes, EOF or a reset: detection decides (EOF and errors go opaque).
	return true, nil
}

// race waits until the client or the server has bytes to read (or has
// closed), or deadline passes. Nothing is consumed from the server; the
// client's bytes go into c.Reader.
func race(c *conn.Conn, up net.Conn, deadline time.Time) (clientReady, serverReady bool, err error) {
	raw := c.Raw()
	if err := raw.SetReadDeadline(deadline); err != nil {
		return false, false, err
	}
	if err := up.SetReadDeadline(deadline); err != nil {
		return false, false, err
	}
	type result struct {
		client bool
		ready  bool
	}
	results := make(chan result, 2)
	go func() {
		_, err := c.Reader.Peek(1)
		results <- result{client: true, ready: !errors.Is(err, os.ErrDeadlineExceeded)}
	}()
	go func() {
		results <- result{ready: waitReadable(up)}
	}()
	first := <-results
	// Stop the other wait; a side that became ready meanwhile still
	// reports ready.
	wake := time.Unix(1, 0)
	if first.client {
		up.SetReadDeadline(wake)
	} else {
		raw.SetReadDeadline(wake)
	}
	second := <-results
	for _, r := range []result{first, second} {
		if r.client {
			clientReady = r.ready
		} else {
			serverReady = r.ready
		}
	}
	if err := raw.SetReadDeadline(time.Time{}); err != nil {
		return false, false, err
	}
	if err := up.SetReadDeadline(time.Time{}); err != nil {
		return false, false, err
	}
	// A server that was woken by our own deadline may still have sent
	// nothing; one that has bytes waiting is checked once more without
	// blocking, so a greeting that raced the client's bytes wins.
	if !serverReady {
		serverReady = readableNow(up)
	}
	return clientReady, serverReady, nil
}

// waitReadable blocks until up has bytes or EOF or an error, or its read
// deadline passes (false). Nothing is read.
func waitReadable(up net.Conn) bool {
	rc, ok := rawConn(up)
	if !ok {
		return false
	}
	var ready bool
	err := rc.Read(func(fd uintptr) bool {
		ready = peek(fd)
		return ready
	})
	return err == nil && ready
}

// http2ServerPreface reports whether the server's first bytes, peeked and
// left in place, are an HTTP/2 frame header of a SETTINGS frame on stream
// 0: the server connection preface of RFC 9113 section 3.4.
func http2ServerPreface(up net.Conn) bool {
	rc, ok := rawConn(up)
	if !ok {
		return false
	}
	var head [9]byte
	n := 0
	rc.Read(func(fd uintptr) bool {
		r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&head[0])), uintptr(len(head)),
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if errno == 0 {
			n = int(r)
		}
		return true
	})
	const frameSettings = 0x4
	streamID := uint32(head[5]&0x7f)<<24 | uint32(head[6])<<16 | uint32(head[7])<<8 | uint32(head[8])
	length := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
	return n == len(head) && head[3] == frameSettings && head[4] == 0 && streamID == 0 && length%6 == 0
}

func readableNow(up net.Conn) bool {
	rc, ok := rawConn(up)
	if !ok {
		return false
	}
	var ready bool
	rc.Read(func(fd uintptr) bool { ready = peek(fd); return true })
	return ready
}

func rawConn(c net.Conn) (syscall.RawConn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil
}

// peek reports whether fd has a byte, EOF or an error pending.
func peek(fd uintptr) bool {
	var one [1]byte
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&one[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno != unix.EAGAIN && errno != unix.EINTR
}
