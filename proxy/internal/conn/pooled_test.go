package conn

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/internal/testutil"
)

// countingPool counts the buffers taken (gets) and those not yet given
// back (out).
type countingPool struct{ gets, out atomic.Int64 }

func (p *countingPool) Get() any { p.gets.Add(1); p.out.Add(1); b := make([]byte, 64); return &b }
func (p *countingPool) Put(any)  { p.out.Add(-1) }

// A PooledReader waiting on an idle socket holds no buffer; it returns
// the bytes once they come, and io.EOF with no buffer at the end.
func TestPooledReader(t *testing.T) {
	client, server := tcpPair(t)
	pool := &countingPool{}
	r := NewPooledReader(server, pool)

	type result struct {
		buf *[]byte
		n   int
		err error
	}
	got := make(chan result, 1)
	go func() { b, n, err := r.Read(); got <- result{b, n, err} }()
	// The reader tries the idle socket (a buffer taken), finds nothing and
	// waits in the poller: by then it must have given the buffer back.
	testutil.Eventually(t, 5*time.Second, time.Millisecond, func() error {
		if g, n := pool.gets.Load(), pool.out.Load(); g == 0 || n != 0 {
			return fmt.Errorf("a reader waiting on an idle socket: %d buffers taken, %d held", g, n)
		}
		return nil
	})
	client.Write([]byte("hello"))
	res := <-got
	if res.err != nil || string((*res.buf)[:res.n]) != "hello" {
		t.Fatalf("Read = %q, %v", (*res.buf)[:res.n], res.err)
	}
	if n := pool.out.Load(); n != 1 {
		t.Fatalf("%d buffers out after a read, want the one returned", n)
	}
	pool.Put(res.buf)

	client.Close()
	if b, n, err := r.Read(); !errors.Is(err, io.EOF) || n != 0 || b != nil {
		t.Fatalf("after close: %v %d %v, want io.EOF and no buffer", b, n, err)
	}
	if n := pool.out.Load(); n != 0 {
		t.Fatalf("%d buffers out after EOF", n)
	}
}

// Connections that are not sockets are read plainly.
func TestPooledReaderPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	r := NewPooledReader(b, &countingPool{})
	go a.Write([]byte("pipe"))
	buf, n, err := r.Read()
	if err != nil || string((*buf)[:n]) != "pipe" {
		t.Fatalf("Read = %q, %v", (*buf)[:n], err)
	}
}
