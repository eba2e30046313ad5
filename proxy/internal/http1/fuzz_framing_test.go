package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// framingSeeds are request smuggling and response splitting classics:
// CL.TE, TE.CL, TE.TE obfuscations, duplicate and listed lengths,
// Connection-listed framing fields, chunk size and extension tricks, bare
// CR and LF, NUL, obs-fold, absolute-form against Host.
var framingSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
	// CL.TE and TE.CL
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
	// TE.TE obfuscations
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nX: X\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\r\n : chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunk\x00ed\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	// lengths
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 05\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 \r\n\r\nhello",
	// Connection-listed framing
	"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nConnection: close, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
	// chunk lines
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\rhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"\r\n\"\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000000005\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\nGET / HTTP/1.1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n",
	// fields and targets
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\rContent-Length: 5\r\n\r\nhello",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n X: folded\r\n\r\n",
	"GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://u@b/x HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"get / HTTP/1.1\r\nHost: a\r\n\r\n",
	"head / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a:b:c/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: \x80\r\n\r\n",
	// responses
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	"HTTP/1.1 200 OK\r\n\r\nuntil close",
}

// fuzzOrigDst stands for the original destination in forwarded heads.
var fuzzOrigDst = netip.MustParseAddrPort("10.0.0.1:80")

// FuzzFraming compares where the proxy and net/http think a message ends.
// The input is read as a request and as a response, by the proxy's parser
// (head, then the body as the proxy would copy it) and by net/http
// (http.ReadRequest or http.ReadResponse, then the Body). Whenever the
// proxy accepts a message, net/http must accept it too, consume exactly
// the same bytes and read the same body; and for a request, what the proxy
// forwards must read, in net/http, as exactly one request with the same
// method, target, authority and body. So a message two readers could split
// differently is one the proxy refuses.
func FuzzFraming(f *testing.F) {
	for _, s := range framingSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkRequestFraming(t, in)
		checkResponseFraming(t, in)
	})
}

// goBenign reports whether net/http refused for a reason that says nothing
// about where the message ends: its own resource limits, or URL syntax
// inside the target (a bad escape, a non-numeric port), which the server
// behind answers itself.
func goBenign(err error) bool {
	var ue *url.Error
	if errors.As(err, &ue) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "too much non-data") || strings.Contains(s, "suspiciously long trailer")
}

// leadingEmptyLines is how many bytes of empty lines before a request line
// the proxy skips (RFC 9112 section 2.2; net/http's reader does not, but
// nothing skipped is forwarded).
func leadingEmptyLines(in []byte) int {
	n := 0
	for i := 0; i < 4 && len(in) >= n+2 && in[n] == '\r' && in[n+1] == '\n'; i++ {
		n += 2
	}
	return n
}

func checkRequestFraming(t *testing.T, in []byte) {
	src := bytes.NewReader(in)
	r := bufio.NewReaderSize(src, 4096)
	var req head
	if err := req.read(r, true); err != nil {
		return
	}
	var out bytes.Buffer
	w := bufio.NewWriterSize(&out, 4096)
	writeRequestHead(w, &req, fuzzOrigDst)
	var err error
	switch {
	case req.teChunked:
		err = copyChunked(w, r, false)
	case req.contentLength > 0:
		err = copyLength(w, r, req.contentLength)
	}
	if err != nil {
		return // refused (or cut short): nothing forwarded is used
	}
	w.Flush()
	consumed := len(in) - src.Len() - r.Buffered()

	// net/http on the client's bytes.
	lead := leadingEmptyLines(in)
	in, consumed = in[lead:], consumed-lead
	gsrc := bytes.NewReader(in)
	gr := bufio.NewReader(gsrc)
	greq, err := http.ReadRequest(gr)
	if err != nil {
		if goBenign(err) {
			return
		}
		t.Fatalf("proxy accepts, net/http refuses the head: %v\n%q", err, in)
	}
	gbody, err := io.ReadAll(greq.Body)
	if err != nil {
		if goBenign(err) {
			return
		}
		t.Fatalf("proxy accepts, net/http refuses the body: %v\n%q", err, in)
	}
	if gconsumed := len(in) - gsrc.Len() - gr.Buffered(); gconsumed != consumed {
		t.Fatalf("proxy reads %d bytes, net/http %d:\n%q", consumed, gconsumed, in)
	}

	// net/http on what the proxy forwards: one request, read the same way.
	fsrc := bytes.NewReader(out.Bytes())
	fr := bufio.NewReader(fsrc)
	freq, err := http.ReadRequest(fr)
	if err != nil {
		t.Fatalf("forwarded head does not parse: %v\n%q\nfrom\n%q", err, out.Bytes(), in)
	}
	fbody, err := io.ReadAll(freq.Body)
	if err != nil && !goBenign(err) {
		t.Fatalf("forwarded body does not parse: %v\n%q\nfrom\n%q", err, out.Bytes(), in)
	}
	if err == nil && !bytes.Equal(fbody, gbody) {
		t.Fatalf("forwarded body %q, net/http read %q from\n%q", fbody, gbody, in)
	}
	if left := fsrc.Len() + fr.Buffered(); left != 0 {
		t.Fatalf("forwarded bytes hold %d bytes after the request:\n%q\nfrom\n%q", left, out.Bytes(), in)
	}
	if freq.Method != greq.Method || (freq.Method != "CONNECT" && freq.RequestURI != greq.RequestURI) {
		t.Fatalf("forwarded %s %s, net/http read %s %s from\n%q", freq.Method, freq.RequestURI, greq.Method, greq.RequestURI, in)
	}
	wantHost := string(req.authority())
	if !req.hasHost {
		wantHost = fuzzOrigDst.String()
	}
	if freq.Host != wantHost {
		t.Fatalf("forwarded Host %q, proxy's authority %q, from\n%q", freq.Host, wantHost, in)
	}
	if greq.Host != "" && greq.Host != wantHost {
		t.Fatalf("net/http reads authority %q, the proxy %q, from\n%q", greq.Host, wantHost, in)
	}
}

func checkResponseFraming(t *testing.T, in []byte) {
	src := bytes.NewReader(in)
	r := bufio.NewReaderSize(src, 4096)
	var resp head
	if err := resp.read(r, false); err != nil || resp.status == 101 {
		return
	}
	// What the proxy sends an HTTP/1.1 client: the head, then the body
	// as it copies it (a close-delimited body re-chunked).
	var out bytes.Buffer
	w := bufio.NewWriterSize(&out, 4096)
	mode := bodyUntilClose
	switch {
	case resp.status < 200 || resp.status == 204 || resp.status == 304:
		mode = bodyNone
	case resp.hasTE && resp.teChunked:
		mode = bodyChunked
	case resp.hasTE:
		t.Fatalf("response with a Transfer-Encoding other than chunked accepted:\n%q", in)
	case resp.contentLength >= 0:
		mode = bodyLength
	}
	writeResponseHead(w, &resp, true, 1, mode == bodyUntilClose, false)
	var err error
	switch mode {
	case bodyChunked:
		err = copyChunked(w, r, false)
	case bodyLength:
		err = copyLength(w, r, resp.contentLength)
	case bodyUntilClose:
		err = copyUntilEOF(w, r, true)
	}
	if err != nil {
		return
	}
	w.Flush()
	consumed := len(in) - src.Len() - r.Buffered()

	gsrc := bytes.NewReader(in)
	gr := bufio.NewReader(gsrc)
	gresp, err := http.ReadResponse(gr, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("proxy accepts, net/http refuses the response head: %v\n%q", err, in)
	}
	gbody, err := io.ReadAll(gresp.Body)
	if err != nil {
		if goBenign(err) {
			return
		}
		t.Fatalf("proxy accepts, net/http refuses the response body: %v\n%q", err, in)
	}
	if gconsumed := len(in) - gsrc.Len() - gr.Buffered(); gconsumed != consumed {
		t.Fatalf("proxy reads %d bytes of the response, net/http %d:\n%q", consumed, gconsumed, in)
	}
	if resp.status < 200 {
		return // the proxy reads the final response after it
	}

	// net/http on what the proxy forwards: one response, the same body.
	fsrc := bytes.NewReader(out.Bytes())
	fr := bufio.NewReader(fsrc)
	fresp, err := http.ReadResponse(fr, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("forwarded response does not parse: %v\n%q\nfrom\n%q", err, out.Bytes(), in)
	}
	fbody, err := io.ReadAll(fresp.Body)
	if err != nil && !goBenign(err) {
		t.Fatalf("forwarded response body does not parse: %v\n%q\nfrom\n%q", err, out.Bytes(), in)
	}
	if err == nil && !bytes.Equal(fbody, gbody) {
		t.Fatalf("forwarded response body %q, net/http read %q from\n%q", fbody, gbody, in)
	}
	if fresp.StatusCode != gresp.StatusCode {
		t.Fatalf("forwarded status %d, net/http read %d from\n%q", fresp.StatusCode, gresp.StatusCode, in)
	}
	if left := fsrc.Len() + fr.Buffered(); left != 0 {
		t.Fatalf("forwarded response holds %d bytes after it:\n%q\nfrom\n%q", left, out.Bytes(), in)
	}
}
