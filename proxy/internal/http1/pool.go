package http1

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
)

// upstream is a connection to an endpoint with its buffers.
type upstream struct {
	conn      net.Conn
	r         *bufio.Reader
	w         *bufio.Writer
	addr      netip.AddrPort
	idleSince time.Time
	reused    bool      // has served a request before
	lastUsed  time.Time // when its last request began
	resp      head      // the response head, parsed in place

	// The stream idle timeout on reads and writes.
	ir idleReader
	iw idleWriter
	// For alive: the raw socket, and the peek bound once.
	rc      syscall.RawConn
	peekFn  func(fd uintptr)
	peekOK  bool
	peekBuf [1]byte
}

func (u *upstream) close() { u.conn.Close() }

// pool keeps idle upstream connections per endpoint address.
type pool struct {
	maxIdle     int // per endpoint
	idleTimeout time.Duration
	bufSize     int
	streamIdle  time.Duration // for each connection's reads and writes

	mu    sync.Mutex
	idle  map[netip.AddrPort][]*upstream
	reap  *time.Timer // armed while connections are idle
	armed bool
}

func newPool(maxIdle int, idleTimeout time.Duration, bufSize int) *pool {
	return &pool{maxIdle: maxIdle, idleTimeout: idleTimeout, bufSize: bufSize, idle: map[netip.AddrPort][]*upstream{}}
}

// get returns the most recently used idle connection to addr that has not
// been idle too long, or nil.
func (p *pool) get(addr netip.AddrPort, now time.Time) *upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[addr]
	for len(list) > 0 {
		u := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(u.idleSince) < p.idleTimeout {
			p.idle[addr] = list
			u.reused = true
			return u
		}
		u.close()
	}
	delete(p.idle, addr)
	return nil
}

// put returns a connection whose last exchange completed cleanly.
func (p *pool) put(u *upstream, now time.Time) {
	u.idleSince = now
	p.mu.Lock()
	list := p.idle[u.addr]
	if len(list) >= p.maxIdle {
		p.mu.Unlock()
		u.close()
		return
	}
	p.idle[u.addr] = append(list, u)
	if !p.armed {
		p.armed = true
		if p.reap == nil {
			p.reap = time.AfterFunc(p.idleTimeout, p.closeExpired)
		} else {
			p.reap.Reset(p.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// closeExpired closes connections idle longer than idleTimeout, so
// connections the upstream closed do not hold descriptors until reuse.
func (p *pool) closeExpired() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	for addr, list := range p.idle {
		keep := list[:0]
		for _, u := range list {
			if now.Sub(u.idleSince) >= p.idleTimeout {
				u.close()
			} else {
				keep = append(keep, u)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(p.idle, addr)
		} else {
			p.idle[addr] = keep
		}
	}
	if len(p.idle) > 0 {
		p.armed = true
		p.reap.Reset(p.idleTimeout / 2)
	}
}

func (p *pool) wrap(c net.Conn, addr netip.AddrPort) *upstream {
	rw := conn.RawIO(c) // see RawIO: no scheduler hand-offs per request
	u := &upstream{
		conn: c,
		addr: addr,
		ir:   idleReader{r: rw, c: c, idle: p.streamIdle},
		iw:   idleWriter{w: rw, c: c, idle: p.streamIdle},
	}
	u.r = bufio.NewReaderSize(&u.ir, p.bufSize)
	u.w = bufio.NewWriterSize(&u.iw, p.bufSize)
	if sc, ok := c.(syscall.Conn); ok {
		u.rc, _ = sc.SyscallConn()
		u.peekFn = u.peek
	}
	return u
}

// closeIdle closes every idle connection.
func (p *pool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, list := range p.idle {
		for _, u := range list {
			u.close()
		}
		delete(p.idle, addr)
	}
}
