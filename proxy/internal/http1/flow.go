package http1

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
)

// How a request's time is bounded and how cancellation travels:
//
//   - between requests the client connection has the keep-alive timeout;
//     from the first byte of a head to its end, the head read timeout
//     (nextRequest);
//   - each read from and write to the upstream, each write to the client
//     and each read of a request body fails after the stream idle timeout
//     without progress (idleReader, idleWriter);
//   - a client that leaves while its request waits for the response head
//     closes the upstream connection (watchClient), as the backend would
//     see directly;
//   - at the drain timeout's end the server aborts the client connection
//     and the upstream it holds (clientState.abort).

// watchDelay is how long a response head may take before the client
// connection is watched for a close: a fast response costs a timer reset
// and stop, a slow one a goroutine and a peek. Not shorter: a stopped
// timer stays in the runtime's heap until its time comes and wakes the
// process then, so at 10 ms a paced load (a request every few tens of
// milliseconds per connection) paid a wake-up per request; at 100 ms each
// request pushes its connection's timer on, and the wake-ups are a few a
// second per connection.
const watchDelay = 100 * time.Millisecond

// aliveCheckAfter is how long the connection a client connection keeps
// must have carried no request before it is checked (alive) on reuse. The
// check is a system call; a connection that busy is reused at over 100
// requests a second, where the call would cost a noticeable share of the
// proxy's CPU, while the chance that the upstream closed it in the few
// milliseconds since is small, and a request that meets such a close is
// still retried if it is safe to (retryable). Upstreams close idle
// connections after a second or more (Node.js and Apache 5 s): always
// checked.
const aliveCheckAfter = 10 * time.Millisecond

// errClientGone ends a request whose client left while it waited.
var errClientGone = errors.New("client went away")

// nextRequest waits, idle, for the first byte of the next request head
// (for at most the keep-alive timeout), then gives the head the head read
// timeout. It reports false when the connection is to end: the client
// left or stayed idle too long, or the server drains.
func (p *Proxy) nextRequest(c *conn.Conn, cs *clientState) bool {
	if c.Reader.Buffered() > 0 {
		// Pipelined: the next head has begun.
		if c.Draining() {
			return false
		}
	} else {
		// Set before the connection counts as idle, so a drain's
		// deadline (OnDrain) comes after it and wins.
		setReadTimeout(c, p.timeouts.KeepAlive)
		cs.state.Store(stateIdle)
		if c.Draining() {
			return false
		}
		if _, err := c.Reader.Peek(1); err != nil {
			return false // closed, idle too long, or drained
		}
		// A request has begun: from here a drain lets it finish.
		if !cs.state.CompareAndSwap(stateIdle, stateActive) {
			return false
		}
	}
	setReadTimeout(c, p.timeouts.HeadRead)
	return true
}

func setReadTimeout(c net.Conn, d time.Duration) {
	if d > 0 {
		c.SetReadDeadline(time.Now().Add(d))
	} else {
		c.SetReadDeadline(time.Time{})
	}
}

// idleReader fails a read that waits longer than idle for a byte. It moves
// the connection's deadline at most once per idle/8, so a busy connection
// pays a clock read per read rather than a deadline update, and a silent
// peer is cut after between 7/8 of idle and idle.
type idleReader struct {
	r     io.Reader // the reads
	c     net.Conn  // the deadlines
	idle  time.Duration
	armed time.Time
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.idle > 0 {
		if now := time.Now(); now.Sub(r.armed) > r.idle/8 {
			r.c.SetReadDeadline(now.Add(r.idle))
			r.armed = now
		}
	}
	return r.r.Read(p)
}

// disarm stops the idle timeout (a spliced connection has none).
func (r *idleReader) disarm() {
	r.idle = 0
	r.c.SetReadDeadline(time.Time{})
}

// idleWriter is idleReader for writes: a peer that stops reading for idle
// fails the write. While a request body goes through it, src is the
// client connection the body comes from: its read deadline moves with the
// write deadline, so a client that stops sending its body is cut too.
type idleWriter struct {
	w     io.Writer
	c     net.Conn
	idle  time.Duration
	armed time.Time
	src   net.Conn
}

func (w *idleWriter) Write(p []byte) (int, error) {
	if w.idle > 0 {
		if now := time.Now(); now.Sub(w.armed) > w.idle/8 {
			w.c.SetWriteDeadline(now.Add(w.idle))
			if w.src != nil {
				w.src.SetReadDeadline(now.Add(w.idle))
			}
			w.armed = now
		}
	}
	return w.w.Write(p)
}

func (w *idleWriter) disarm() {
	w.idle = 0
	w.c.SetWriteDeadline(time.Time{})
}

// awaitResponse reads the response head from u. Once it has waited
// watchDelay, the client connection is watched: a client that closes it
// (FIN or RST) closes u, and errClientGone is returned.
func (p *Proxy) awaitResponse(cs *clientState, u *upstream) error {
	cs.watchUp.Store(u)
	cs.watch.Reset(watchDelay)
	err := readResponseHead(u, cs, cs.req.minor)
	if cs.unwatch() {
		return errClientGone
	}
	return err
}

// unwatch stops the watch and reports whether the client left.
func (cs *clientState) unwatch() bool {
	if cs.watch.Stop() {
		return false // the response was quick: no watcher ran
	}
	// The watcher runs: wake it from its wait and wait for it.
	cs.watchStop.Store(true)
	cs.c.Raw().SetReadDeadline(time.Unix(1, 0))
	<-cs.watchDone
	cs.watchStop.Store(false)
	return cs.clientGone.Load()
}

// watchClient (the watch timer's function) waits until the client
// connection is readable, consuming nothing: a close or reset there means
// the client gave up, and the upstream connection is closed so the request
// ends now and the backend sees its client go. Bytes there (a pipelined
// request) are not a cancellation: the watch ends.
func (cs *clientState) watchClient() {
	cs.clientGone.Store(false)
	if cs.clientRC == nil {
		if sc, ok := cs.c.Raw().(syscall.Conn); ok {
			cs.clientRC, _ = sc.SyscallConn()
		}
	}
	// The head read timeout does not bound the wait for the response; a
	// stop (unwatch) sets its deadline after this one.
	cs.c.Raw().SetReadDeadline(time.Time{})
	if cs.clientRC != nil && !cs.watchStop.Load() {
		cs.peekGone = false
		if cs.clientRC.Read(cs.peekFn) == nil && cs.peekGone {
			cs.clientGone.Store(true)
			if u := cs.watchUp.Load(); u != nil {
				u.close()
			}
		}
	}
	cs.watchDone <- struct{}{}
}

// peekClient is the watcher's read function: false (wait) while nothing
// is there.
func (cs *clientState) peekClient(fd uintptr) bool {
	n, errno := peekSocket(fd, &cs.peekBuf)
	if errno == syscall.EAGAIN {
		return false
	}
	cs.peekGone = errno != 0 || n == 0
	return true
}

// abort is the connection's abort function (conn.Conn.OnAbort): it closes
// the upstream connection this client connection holds, so a request to a
// hung upstream ends at the drain timeout.
func (cs *clientState) abort() {
	if u := cs.held.Load(); u != nil {
		u.close()
	}
}

// peekSocket looks at the next byte on a socket without consuming it and
// without waiting: n 0 and no errno is an orderly close, EAGAIN nothing
// yet.
func peekSocket(fd uintptr, b *[1]byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// alive reports whether an idle upstream connection can take a request:
// the upstream has not closed or reset it, and has sent nothing
// unrequested. One non-blocking recv(MSG_PEEK).
func (u *upstream) alive() bool {
	if u.r.Buffered() > 0 {
		return false
	}
	if u.rc == nil {
		return true // not a socket (tests)
	}
	u.peekOK = false
	if u.rc.Control(u.peekFn) != nil {
		return false
	}
	return u.peekOK
}

func (u *upstream) peek(fd uintptr) {
	_, errno := peekSocket(fd, &u.peekBuf)
	u.peekOK = errno == syscall.EAGAIN // open, and quiet
}

// isIdempotent reports whether a method is idempotent (RFC 9110 section
// 9.2.2): sending it twice has the effect of sending it once, so a request
// that may or may not have reached the upstream can be sent again.
func isIdempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
