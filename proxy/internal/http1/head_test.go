package http1

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func parse(t *testing.T, raw string, isRequest bool) (*head, error) {
	t.Helper()
	h := &head{}
	err := h.read(bufio.NewReader(strings.NewReader(raw)), isRequest)
	return h, err
}

func forwardedRequest(t *testing.T, raw string) string {
	t.Helper()
	h, err := parse(t, raw, true)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeRequestHead(w, h, netip.MustParseAddrPort("10.0.0.1:80"))
	w.Flush()
	return b.String()
}

// Hop-by-hop fields (RFC 9110 section 7.6.1), including names listed in
// Connection, are not forwarded; end-to-end fields are, in order.
func TestRequestHopByHop(t *testing.T) {
	got := forwardedRequest(t, "GET /p?q=1 HTTP/1.1\r\n"+
		"Host: web.ns:8080\r\n"+
		"Connection: keep-alive, X-Hop, close\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"X-Hop: secret\r\n"+
		"TE: trailers\r\n"+
		"Upgrade: websocket\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Accept:  */*  \r\n"+
		"Trailer: X-Sum\r\n"+
		"\r\n")
	want := "GET /p?q=1 HTTP/1.1\r\nHost: web.ns:8080\r\nAccept:  */*\r\nTrailer: X-Sum\r\n\r\n"
	if got != want {
		t.Fatalf("forwarded\n%q\nwant\n%q", got, want)
	}
}

func TestRequestHTTP10GetsHost(t *testing.T) {
	got := forwardedRequest(t, "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n")
	want := "GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\nAccept: */*\r\n\r\n"
	if got != want {
		t.Fatalf("forwarded %q, want %q", got, want)
	}
}

func TestRequestFraming(t *testing.T) {
	h, err := parse(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n", true)
	if err != nil || h.contentLength != 42 || h.teChunked {
		t.Fatalf("content-length: %+v %v", h, err)
	}
	h, err = parse(t, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n", true)
	if err != nil || !h.teChunked || h.contentLength != -1 {
		t.Fatalf("chunked: %+v %v", h, err)
	}
	h, err = parse(t, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true)
	if err != nil || !h.upgrade {
		t.Fatalf("upgrade not recorded: %+v %v", h, err)
	}
	h, err = parse(t, "\r\nGET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", true)
	if err != nil || !h.expectContinue {
		t.Fatalf("leading empty line and Expect: %+v %v", h, err)
	}
	if h, _ = parse(t, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true); !h.connKeepAlive || h.minor != 0 {
		t.Fatalf("HTTP/1.0 keep-alive not seen: %+v", h)
	}
}

// Requests that could be read two ways by two servers (smuggling) or that
// are malformed are refused with a status.
func TestRequestRejected(t *testing.T) {
	tests := []struct {
		raw    string
		status int
	}{
		{"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
		{"GET / HTTP/1.1\nHost: a\n\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"GET / HTTP/2.0\r\n\r\n", 400},
		{"GET  HTTP/1.1\r\n\r\n", 400},
		{"G(T / HTTP/1.1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 65<<10) + "\r\n\r\n", 431},
		{"GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n", 431},
	}
	for _, tt := range tests {
		_, err := parse(t, tt.raw, true)
		if status, _ := requestErrorStatus(err); status != tt.status {
			t.Errorf("%.60q: got status %d (err %v), want %d", tt.raw, status, err, tt.status)
		}
	}
}

func TestResponseHead(t *testing.T) {
	h, err := parse(t, "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", false)
	if err != nil || h.status != 404 || string(h.bytes(h.reason)) != "Not Found" || !h.connClose || h.contentLength != 3 {
		t.Fatalf("%+v %v", h, err)
	}
	// Bare LF and an empty reason are accepted from upstream.
	h, err = parse(t, "HTTP/1.0 200\nX: y\n\n", false)
	if err != nil || h.status != 200 || h.minor != 0 || len(h.bytes(h.reason)) != 0 {
		t.Fatalf("%+v %v", h, err)
	}
	// Transfer-Encoding wins over Content-Length, which is then not forwarded.
	h, err = parse(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", false)
	if err != nil || !h.teChunked || h.contentLength != -1 {
		t.Fatalf("%+v %v", h, err)
	}
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeResponseHead(w, h, true, 1, false, false)
	w.Flush()
	if want := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"; b.String() != want {
		t.Fatalf("forwarded %q, want %q", b.String(), want)
	}
	for _, bad := range []string{"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n", "ICY 200 OK\r\n\r\n"} {
		if _, err := parse(t, bad, false); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

func TestResponseHeadForHTTP10Client(t *testing.T) {
	h, _ := parse(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\n\r\n", false)
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeResponseHead(w, h, false, 0, false, true)
	w.Flush()
	if want := "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

func TestChunkedCopy(t *testing.T) {
	in := "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Sum: 9\r\n\r\nNEXT"
	for _, dechunk := range []bool{false, true} {
		r := bufio.NewReader(strings.NewReader(in))
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := copyChunked(w, r, dechunk); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		want := "4\r\nWiki\r\n5\r\npedia\r\ne\r\n in\r\n\r\nchunks.\r\n0\r\nX-Sum: 9\r\n\r\n"
		if dechunk {
			want = "Wikipedia in\r\n\r\nchunks."
		}
		if b.String() != want {
			t.Errorf("dechunk=%v: got %q, want %q", dechunk, b.String(), want)
		}
		if rest, _ := r.Peek(4); string(rest) != "NEXT" {
			t.Errorf("copy read past the body: left %q", rest)
		}
	}
	for _, bad := range []string{"zz\r\n", "4\r\nWikiXX", "4\nWiki\r\n0\r\n\r\n", "\r\n", "1234567890123456\r\n"} {
		r := bufio.NewReader(strings.NewReader(bad))
		if err := copyChunked(bufio.NewWriter(&bytes.Buffer{}), r, false); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCopyUntilEOFRechunks(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 10000)), 16)
	var b bytes.Buffer
	w := bufio.NewWriterSize(&b, 100)
	if err := copyUntilEOF(w, r, true); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	var out bytes.Buffer
	ow := bufio.NewWriter(&out)
	if err := copyChunked(ow, bufio.NewReader(&b), true); err != nil {
		t.Fatalf("re-chunked body does not parse: %v", err)
	}
	ow.Flush()
	if out.String() != strings.Repeat("x", 10000) {
		t.Fatalf("de-chunked %d bytes, want the 10000 sent", out.Len())
	}
}
