package conn

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestRawIOReadWriteEOFAndDeadline(t *testing.T) {
	c, s := tcpPair(t)
	rc, rs := RawIO(c), RawIO(s)
	if _, ok := rc.(*rawConn); !ok {
		t.Fatalf("RawIO(%T) = %T, want the raw wrapper", c, rc)
	}

	// A write larger than the socket buffers completes while the peer reads.
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i)
	}
	done := make(chan error, 1)
	go func() {
		n, err := rc.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(rs, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != big[i] {
			t.Fatalf("byte %d = %d, want %d", i, got[i], big[i])
		}
	}

	// A read deadline still ends a read that would wait.
	rs.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rs.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v, want a deadline error", err)
	}
	var ne net.Error
	rs.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rs.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: %v, want a net.Error with Timeout", err)
	}
	rs.SetReadDeadline(time.Time{})

	// The peer's close is io.EOF after the data.
	rc.Write([]byte("bye"))
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(rs)
	if err != nil || string(b) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want \"bye\", nil", b, err)
	}

	// A closed connection reports net.ErrClosed.
	s.Close()
	if _, err := rs.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
}

func TestRawIONoAllocations(t *testing.T) {
	c, s := tcpPair(t)
	rc, rs := RawIO(c), RawIO(s)
	msg, buf := []byte("ping"), make([]byte, 16)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := rc.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rs, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write and read, want 0", allocs)
	}
}

func TestRawIOPassesOtherConnsThrough(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := RawIO(a); got != a {
		t.Fatalf("RawIO(net.Pipe) = %T, want the conn itself", got)
	}
}
