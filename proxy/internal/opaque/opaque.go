// Package opaque forwards a TCP connection byte for byte in both
// directions, half-close included, counting the bytes as they pass.
package opaque

import (
	"errors"
	"io"
	"net"
	"sync"

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
	var once sync.Once
	abort := func() {
		once.Do(func() {
			client.Close()
			upstream.Close()
		})
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
		if copyCounted(upstream, client, func(n int64) { counts.Transferred(n, 0) }) != nil {
			abort()
			return
		}
		conn.CloseWrite(upstream)
	}()
	err := copyCounted(client, upstream, func(n int64) { counts.Transferred(0, n) })
	if err != nil {
		abort()
	} else {
		conn.CloseWrite(client)
	}
	wg.Wait()
	abort()
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
