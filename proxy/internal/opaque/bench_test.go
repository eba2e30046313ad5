package opaque

import (
	"io"
	"net"
	"testing"
	"time"
)

type nopCounts struct{}

func (nopCounts) Transferred(int64, int64) {}

// BenchmarkPingPong measures a 1 KiB request and 1 KiB answer over one
// connection, direct to an echo server and through Forward.
func BenchmarkPingPong(b *testing.B) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer front.Close()
	go func() {
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", echo.Addr().String())
			if err != nil {
				c.Close()
				continue
			}
			go ForwardIdle(c, nil, up, nopCounts{}, time.Hour)
		}
	}()
	run := func(b *testing.B, addr string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		msg := make([]byte, 1024)
		buf := make([]byte, 1024)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			c.Write(msg)
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, echo.Addr().String()) })
	b.Run("proxied", func(b *testing.B) { run(b, front.Addr().String()) })
}
