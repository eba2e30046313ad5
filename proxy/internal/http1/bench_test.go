package http1

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"testing"
)

// fastBackend answers every request with a 1 KiB body using no more than a
// read and a write, so a benchmark measures the proxy, not the backend.
func fastBackend(b testing.TB) string {
	body := bytes.Repeat([]byte{'x'}, 1024)
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...)
	return rawBackend(b, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			// Requests carry no body: read up to the blank line.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) == 2 {
					break
				}
			}
			if br.Buffered() > 0 {
				continue // pipelined: answer in order below
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

var benchRequest = []byte("GET /bench HTTP/1.1\r\nHost: bench.ns.svc:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")

// roundTrip sends one request on c and reads the response (Content-Length
// framed) without allocating.
func roundTrip(c net.Conn, br *bufio.Reader) error {
	if _, err := c.Write(benchRequest); err != nil {
		return err
	}
	cl := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			cl, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if cl < 0 {
		return fmt.Errorf("no Content-Length")
	}
	_, err := br.Discard(cl)
	return err
}

func benchRoundTrips(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if err := roundTrip(c, br); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := roundTrip(c, br); err != nil {
			b.Fatal(err)
		}
	}
}

func benchParallel(b *testing.B, addr string) {
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if err := roundTrip(c, br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHTTP1 measures a keep-alive request/response of 1 KiB, direct to
// the backend and through the proxy, in the same run. The difference is
// what the proxy adds (latency per request, allocations per request).
func BenchmarkHTTP1(b *testing.B) {
	backend := fastBackend(b)
	proxy := startProxy(b, backend)
	b.Run("direct", func(b *testing.B) { benchRoundTrips(b, backend) })
	b.Run("proxied", func(b *testing.B) { benchRoundTrips(b, proxy.addr) })
	b.Run("direct-16conns", func(b *testing.B) { benchParallel(b, backend) })
	b.Run("proxied-16conns", func(b *testing.B) { benchParallel(b, proxy.addr) })
}
