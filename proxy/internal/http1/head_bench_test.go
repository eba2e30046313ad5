package http1

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// BenchmarkReadHead parses request heads from a 4 KiB reader, as the proxy
// does: a typical one, and one with a 16 KiB cookie (a line longer than
// the reader's buffer, gathered piece by piece). Neither allocates once
// the head's buffers have grown.
func BenchmarkReadHead(b *testing.B) {
	for _, tc := range []struct{ name, head string }{
		{"typical", string(benchRequest)},
		{"16KiB-cookie", "GET /bench HTTP/1.1\r\nHost: bench.ns.svc:8080\r\nCookie: s=" + strings.Repeat("c", 16<<10) + "\r\nAccept: */*\r\n\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := []byte(tc.head)
			src := bytes.NewReader(nil)
			r := bufio.NewReaderSize(src, 4096)
			var h head
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.head)))
			for range b.N {
				src.Reset(in)
				r.Reset(src)
				if err := h.read(r, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
