// Package opaque forwards a TCP connection byte for byte in both
// directions, half-close included, counting the bytes as they pass.
package opaque

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
)

// Counts receives bytes as they are copied: read from the client and
// written to it.
type Counts interface {
	Transferred(read, written int64)
}

// bufSize is the copy buffer. A buffer is taken from the pool only while
// bytes are moving, so idle connections (database pools, long-lived
// sessions) hold none.
const bufSize = 16 << 10

var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Forward copies client→upstream and upstream→client until both directions
// have ended, then closes both connections. prefix holds bytes already read
// from the client (during protocol detection); they are sent first and not
// counted again (whoever read them counted them). When
// one side half-closes, the other side's write half is closed, so protocols
// that rely on half-close work. An error in either direction aborts both.
func Forward(client net.Conn, prefix []byte, upstream net.Conn, counts Counts) {
	ForwardIdle(client, prefix, upstream, counts, 0)
}

// ForwardIdle is Forward that also closes both connections once neither
// side has sent a byte for idle (zero: never). The check is coarse, so
// it costs nothing per read but a flag: a timer fires every idle/4 and
// looks whether bytes passed since the last tick; four quiet ticks in a
// row close the connection, between idle and 1.25 idle after the last
// byte.
func ForwardIdle(client net.Conn, prefix []byte, upstream net.Conn, counts Counts, idle time.Duration) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			client.Close()
			upstream.Close()
		})
	}
	var active atomic.Bool
	if idle > 0 {
		w := startIdleWatch(idle, &active, abort)
		defer w.stop()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if len(prefix) > 0 {
			if _, err := upstream.Write(prefix); err != nil {
				abort()
				return
			}
		}
		if copyCounted(upstream, client, func(n int64) { active.Store(true); counts.Transferred(n, 0) }) != nil {
			abort()
			return
		}
		conn.CloseWrite(upstream)
	}()
	err := copyCounted(client, upstream, func(n int64) { active.Store(true); counts.Transferred(0, n) })
	if err != nil {
		abort()
	} else {
		conn.CloseWrite(client)
	}
	wg.Wait()
	abort()
}

// idleTicks is how many quiet ticks of idle/idleTicks close a connection.
const idleTicks = 4

// idleWatch closes a connection that stays quiet: one timer per
// connection, re-armed every idle/idleTicks, never per read.
type idleWatch struct {
	mu     sync.Mutex
	t      *time.Timer
	done   bool
	quiet  int
	period time.Duration
}

func startIdleWatch(idle time.Duration, active *atomic.Bool, abort func()) *idleWatch {
	w := &idleWatch{period: max(idle/idleTicks, time.Millisecond)}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(w.period, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.done {
			return
		}
		if active.Swap(false) {
			w.quiet = 0
		} else if w.quiet++; w.quiet >= idleTicks {
			w.done = true
			abort()
			return
		}
		w.t.Reset(w.period)
	})
	return w
}

func (w *idleWatch) stop() {
	w.mu.Lock()
	w.done = true
	w.t.Stop()
	w.mu.Unlock()
}

// copyCounted copies until EOF (nil) or an error, counting each piece as
// it passes so long-lived connections show their bytes in the metrics
// while open. Reads and writes are raw system calls (conn.RawIO), and a
// buffer is held only while bytes are moving.
func copyCounted(dst, src net.Conn, count func(int64)) error {
	rd := conn.NewPooledReader(src, &bufs)
	out := conn.RawIO(dst)
	for {
		bp, n, err := rd.Read()
		if n > 0 {
			count(int64(n))
			_, werr := out.Write((*bp)[:n])
			bufs.Put(bp)
			if werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
