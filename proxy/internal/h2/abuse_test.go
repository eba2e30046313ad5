package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// countingBackend is an h2c server that counts the handlers it starts;
// each handler waits for release (or its request's end) when block is set.
type countingBackend struct {
	addr    string
	started atomic.Int64
	release chan struct{}
}

func startCountingBackend(t *testing.T, maxStreams uint32, block bool) *countingBackend {
	t.Helper()
	b := &countingBackend{release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	s := &http.Server{Protocols: &p, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: int(maxStreams)},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.started.Add(1)
			if block {
				select {
				case <-b.release:
				case <-r.Context().Done():
				}
			}
		})}
	go s.Serve(ln)
	t.Cleanup(func() { close(b.release); s.Close() })
	b.addr = ln.Addr().String()
	return b
}

// rawClient is a client speaking HTTP/2 frame by frame, as an attacker
// does.
type rawClient struct {
	c   net.Conn
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawClient{c: c, fr: http2.NewFramer(c, c)}
	rc.enc = hpack.NewEncoder(&rc.hb)
	rc.fr.AllowIllegalWrites = true
	rc.fr.SetMaxReadFrameSize(1 << 20)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	rc.fr.WriteSettings()
	return rc
}

// block is a request header block (the encoder's table makes repeats a few
// bytes), with extra fields appended.
func (rc *rawClient) block(authority string, extra ...hpack.HeaderField) []byte {
	rc.hb.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", authority}, {":path", "/"}} {
		rc.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for _, f := range extra {
		rc.enc.WriteField(f)
	}
	return append([]byte(nil), rc.hb.Bytes()...)
}

// goAway reads frames until a GOAWAY or the end of the connection, which
// it reports.
func (rc *rawClient) goAway(t *testing.T) (*http2.GoAwayFrame, error) {
	t.Helper()
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			return g, nil
		}
	}
}

// closed waits until the proxy ends the connection.
func (rc *rawClient) closed(t *testing.T) {
	t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, rc.c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the proxy kept the connection open")
	}
}

// wantCalm asserts a GOAWAY with ENHANCE_YOUR_CALM, the end of the
// connection and the abuse counted under reason.
func wantCalm(t *testing.T, p *testProxy, rc *rawClient, reason string) {
	t.Helper()
	g, err := rc.goAway(t)
	if err != nil {
		t.Fatalf("no GOAWAY before the connection ended: %v", err)
	}
	if g.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", g.ErrCode)
	}
	rc.closed(t)
	if v := p.sample(t, "http2_abuse_total", map[string]string{"reason": reason, "direction": "inbound"}); v != 1 {
		t.Fatalf("http2_abuse_total{reason=%s} = %v, want 1", reason, v)
	}
}

// Rapid reset (CVE-2023-44487): streams opened and reset at once, many
// thousands of them. The relay stops it after a bounded number and tells
// the client why; the backend starts no more handlers than that.
func TestRelayRapidReset(t *testing.T) {
	be := startCountingBackend(t, 250, false)
	p := startProxy(t, be.addr)
	rc := dialRaw(t, p.addr)
	const pairs = 20000
	go func() {
		for i := range pairs {
			id := uint32(2*i + 1)
			if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.block("reset.test"), EndStream: true, EndHeaders: true}) != nil ||
				rc.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	wantCalm(t, p, rc, "rapid_reset")
	t.Logf("the backend started %d handlers for %d streams opened and reset", be.started.Load(), pairs)
	if n := be.started.Load(); n > 2*maxPrematureResets {
		t.Fatalf("the backend started %d handlers, want at most %d", n, 2*maxPrematureResets)
	}
}

// Streams reset after their response began, or by a client whose other
// streams complete, are not abuse.
func TestRelayResetsOfAWorkingClientAreFine(t *testing.T) {
	be := startCountingBackend(t, 250, false)
	p := startProxy(t, be.addr)
	rc := dialRaw(t, p.addr)
	done := make(chan error, 1)
	go func() {
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				done <- err
				return
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				done <- errors.New("GOAWAY " + g.ErrCode.String())
				return
			}
		}
	}()
	// Two complete requests for each one reset at once.
	for i := range 3 * maxPrematureResets {
		id := uint32(2*i + 1)
		rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.block("fine.test"), EndStream: true, EndHeaders: true})
		if i%3 == 2 {
			rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.sample(t, "request_total", map[string]string{"authority": "fine.test"}) != 3*maxPrematureResets {
		if time.Now().After(deadline) {
			t.Fatalf("request_total %v, want %d", p.sample(t, "request_total", map[string]string{"authority": "fine.test"}), 3*maxPrematureResets)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the connection ended: %v", err)
	default:
	}
}

// CONTINUATION flood (CVE-2024-27316): a header block that never ends.
// The relay closes the connection after a bounded number of frames; the
// backend never sees a request.
func TestRelayContinuationFlood(t *testing.T) {
	be := startCountingBackend(t, 250, false)
	p := startProxy(t, be.addr)
	rc := dialRaw(t, p.addr)
	blk := rc.block("flood.test", hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 4096)})
	go func() {
		if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:10], EndStream: true}) != nil {
			return
		}
		for i := 10; i < len(blk); i++ {
			if rc.fr.WriteContinuation(1, false, blk[i:i+1]) != nil {
				return
			}
		}
		for rc.fr.WriteContinuation(1, false, nil) == nil {
		}
	}()
	wantCalm(t, p, rc, "continuation_flood")
	if n := be.started.Load(); n != 0 {
		t.Fatalf("the backend started %d handlers", n)
	}
}

// A header block over the size limit is not forwarded whole.
func TestRelayHeaderBlockTooLarge(t *testing.T) {
	be := startCountingBackend(t, 250, false)
	p := startProxy(t, be.addr)
	rc := dialRaw(t, p.addr)
	blk := rc.block("big.test", hpack.HeaderField{Name: "x-big", Value: strings.Repeat("{", maxHeaderBlock)}) // no shorter in Huffman code
	go func() {
		const frame = 64 << 10
		rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:frame], EndStream: true})
		for p := blk[frame:]; len(p) > 0; {
			n := min(frame, len(p))
			if rc.fr.WriteContinuation(1, n == len(p), p[:n]) != nil {
				return
			}
			p = p[n:]
		}
	}()
	wantCalm(t, p, rc, "header_block_size")
	if n := be.started.Load(); n != 0 {
		t.Fatalf("the backend started %d handlers", n)
	}
}

// An HPACK bomb: a small block that decodes to megabytes (one large
// table entry named again and again).
func TestRelayHPACKBomb(t *testing.T) {
	be := startCountingBackend(t, 250, false)
	p := startProxy(t, be.addr)
	rc := dialRaw(t, p.addr)
	big := hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("B", 3000)}
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.block("bomb.test", big), EndStream: true, EndHeaders: true})
	// The entry is now in both tables: each repeat is one byte.
	var fields []hpack.HeaderField
	for range maxHeaderList/3000 + 10 {
		fields = append(fields, big)
	}
	blk := rc.block("bomb.test", fields...)
	if len(blk) > 2000 {
		t.Fatalf("the bomb's block is %d bytes", len(blk))
	}
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: blk, EndStream: true, EndHeaders: true})
	wantCalm(t, p, rc, "header_list_size")
	if n := be.started.Load(); n > 1 {
		t.Fatalf("the backend started %d handlers, want only the first request's", n)
	}
}

// A client that opens more streams at once than the relay lets through
// is stopped, whatever the backend allows.
func TestRelayTooManyStreams(t *testing.T) {
	be := startCountingBackend(t, 4*maxClientStreams, true)
	p := startProxy(t, be.addr)
	rc := dialRaw(t, p.addr)
	go func() {
		for i := range maxClientStreams + 50 {
			if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: rc.block("many.test"), EndStream: true, EndHeaders: true}) != nil {
				return
			}
		}
	}()
	wantCalm(t, p, rc, "max_concurrent_streams")
	if n := be.started.Load(); n > maxClientStreams {
		t.Fatalf("the backend started %d handlers, want at most %d", n, maxClientStreams)
	}
}

// A connection with no stream open for the keep-alive timeout gets
// GOAWAY and is closed; one with a stream open is not.
func TestRelayKeepAliveIdle(t *testing.T) {
	be := startCountingBackend(t, 250, true)
	p := startProxy(t, be.addr, WithKeepAliveTimeout(300*time.Millisecond))

	idle := dialRaw(t, p.addr)
	start := time.Now()
	g, err := idle.goAway(t)
	if err != nil {
		t.Fatalf("idle connection: no GOAWAY: %v", err)
	}
	if g.ErrCode != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v, want NO_ERROR", g.ErrCode)
	}
	idle.closed(t)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("closed after %v, before the timeout", d)
	}

	busy := dialRaw(t, p.addr)
	busy.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: busy.block("busy.test"), EndStream: true, EndHeaders: true})
	got := make(chan error, 1)
	go func() { _, err := busy.goAway(t); got <- err }()
	select {
	case err := <-got:
		t.Fatalf("a connection with a stream open ended or got GOAWAY (%v)", err)
	case <-time.After(time.Second):
	}
}

// An upstream that accepts and never answers, and a client that sent more
// than the relay keeps before the upstream's first frame: when the drain
// timeout ends, both connections are closed.
func TestRelayAbortClosesAHungUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	p := startProxy(t, ln.Addr().String())
	rc := dialRaw(t, p.addr)
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.block("hung.test"), EndHeaders: true})
	chunk := make([]byte, 16<<10)
	go func() {
		for range 2 * maxBacklog / len(chunk) {
			if rc.fr.WriteData(1, false, chunk) != nil {
				return
			}
		}
	}()
	var up net.Conn
	select {
	case up = <-accepted:
		defer up.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not connect upstream")
	}
	// Wait until the relay holds its maximum (the upstream reads none of it).
	deadline := time.Now().Add(5 * time.Second)
	for p.sample(t, "tcp_read_bytes_total", nil) < maxBacklog {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy read %v bytes", p.sample(t, "tcp_read_bytes_total", nil))
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go p.srv.Shutdown(ctx) // it waits for the relay, which must end
	up.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(io.Discard, up)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the upstream connection is still open after the drain timeout")
	}
	rc.closed(t)
}
