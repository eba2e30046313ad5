package conn

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// PooledReader reads a socket into buffers it takes from a pool only once
// bytes are there: an idle connection holds no buffer, and no system call
// is spent on waiting apart from the read itself. Reads are raw system
// calls, as in RawIO.
type PooledReader struct {
	c    net.Conn
	rc   syscall.RawConn // nil when c is not a socket
	pool BufferPool

	// The poller callback's state, bound once: no allocation per read.
	buf    *[]byte
	n      int
	errno  syscall.Errno
	readFn func(fd uintptr) bool
}

// BufferPool holds *[]byte buffers; a *sync.Pool is one.
type BufferPool interface {
	Get() any
	Put(any)
}

// NewPooledReader reads c with buffers from pool.
func NewPooledReader(c net.Conn, pool BufferPool) *PooledReader {
	r := &PooledReader{c: c, pool: pool}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			r.rc = rc
		}
	}
	r.readFn = r.read
	return r
}

// Read waits for bytes and returns a pooled buffer holding n of them; the
// caller puts the buffer back in the pool. At the end of the stream it
// returns io.EOF and no buffer.
func (r *PooledReader) Read() (buf *[]byte, n int, err error) {
	if r.rc == nil {
		buf = r.pool.Get().(*[]byte)
		n, err = r.c.Read(*buf)
		if n == 0 {
			r.pool.Put(buf)
			buf = nil
		}
		return buf, n, err
	}
	r.buf, r.n, r.errno = nil, 0, 0
	err = r.rc.Read(r.readFn)
	buf, n = r.buf, r.n
	r.buf = nil
	if err == nil && r.errno != 0 {
		err = os.NewSyscallError("read", r.errno)
	}
	if err != nil || n == 0 {
		if buf != nil {
			r.pool.Put(buf)
		}
		if err == nil {
			err = io.EOF
		}
		return nil, 0, err
	}
	return buf, n, nil
}

func (r *PooledReader) read(fd uintptr) bool {
	buf := r.pool.Get().(*[]byte)
	p := *buf
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			r.pool.Put(buf)
			return false // wait in the poller, then again
		}
		if e != 0 {
			n = 0
		}
		r.buf, r.n, r.errno = buf, int(n), e
		return true
	}
}
