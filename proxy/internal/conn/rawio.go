package conn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// RawIO returns c with Read and Write made as raw system calls on the
// non-blocking socket, still waiting in the runtime's network poller when
// the socket is not ready (deadlines apply as before). Everything else
// (Close, deadlines, addresses) is c's own. A connection that is not a
// socket is returned as it is.
//
// Why: net.Conn's Read and Write enter the runtime through
// syscall.Syscall, which tells the scheduler a system call may block.
// With GOMAXPROCS=1 (one CPU, the usual sidecar limit) the runtime's
// monitor thread, asleep while the proxy idles, is woken on the first such
// call after every idle spell, then polls every 20 µs and hands the P to
// another thread whenever a call outlasts a poll (a loopback write that
// wakes the peer does). On a CPU shared with the client and the server,
// each of those thread wake-ups is a context switch on the request's path:
// measured, about 200 µs added at p50 per hop at 1000 requests/s. A read
// or write on a non-blocking socket never blocks, so the raw call is safe
// and the monitor stays asleep.
func RawIO(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &rawConn{Conn: c, rc: rc}
	rw.readFn, rw.writeFn = rw.read, rw.write
	return rw
}

type rawConn struct {
	net.Conn
	rc syscall.RawConn

	// One read and one write at a time, each with its state in fields and
	// its poller callback bound once: no allocation per call.
	rmu     sync.Mutex
	rbuf    []byte
	rn      int
	rerrno  syscall.Errno
	readFn  func(fd uintptr) bool
	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
	if err == nil && errno != 0 {
		err = os.NewSyscallError("read", errno)
	}
	if err != nil {
		return 0, c.opError("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) read(fd uintptr) bool {
	p := c.rbuf
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the poller, then again
		}
		c.rn, c.rerrno = int(r), e
		return true
	}
}

func (c *rawConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wbuf = nil
	if err == nil && errno != 0 {
		err = os.NewSyscallError("write", errno)
	}
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

func (c *rawConn) write(fd uintptr) bool {
	p := c.wbuf
	for c.wn < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.wn])), uintptr(len(p)-c.wn))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait in the poller, then the rest
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// opError wraps err as net.Conn's own methods do, so callers that look
// for timeouts, resets or closed connections see the same errors.
func (c *rawConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// CloseWrite half-closes when the connection supports it.
func (c *rawConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
