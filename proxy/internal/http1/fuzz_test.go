package http1

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// FuzzHead feeds arbitrary bytes to the head parser. It must never panic,
// and a request it accepts must forward as a head that parses again to the
// same request line, framing and forwarded fields (what a server behind
// the proxy reads is what the proxy read).
func FuzzHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: x-a, close\r\nX-A: 1\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nUpgrade: h2c\r\nTE: trailers\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var resp head
		resp.read(bufio.NewReader(bytes.NewReader(in)), false)
		var req head
		if err := req.read(bufio.NewReader(bytes.NewReader(in)), true); err != nil {
			return
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		writeRequestHead(w, &req, netip.MustParseAddrPort("10.0.0.1:80"))
		w.Flush()
		var again head
		if err := again.read(bufio.NewReader(bytes.NewReader(out.Bytes())), true); err != nil {
			t.Fatalf("forwarded head does not parse: %v\n%q", err, out.Bytes())
		}
		if string(again.bytes(again.method)) != string(req.bytes(req.method)) ||
			string(again.bytes(again.target)) != string(req.bytes(req.target)) ||
			again.contentLength != req.contentLength || again.teChunked != req.teChunked {
			t.Fatalf("forwarded head reads differently:\n%q\nfrom\n%q", out.Bytes(), in)
		}
		if len(again.connTokens) != 0 || again.upgrade || again.connClose {
			t.Fatalf("hop-by-hop fields forwarded:\n%q", out.Bytes())
		}
		kept := 0
		for _, fl := range req.fields {
			if !fl.drop {
				kept++
			}
		}
		if !req.hasHost || req.hostFromTarget {
			kept++ // the proxy adds Host
		}
		if len(again.fields) != kept {
			t.Fatalf("forwarded %d fields, want %d:\n%q", len(again.fields), kept, out.Bytes())
		}
		if strings.Index(out.String(), "\r\n\r\n") != out.Len()-4 {
			t.Fatalf("head terminated early:\n%q", out.Bytes())
		}
	})
}
