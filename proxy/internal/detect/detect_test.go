package detect

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	clientHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	tests := []struct {
		name string
		in   string
		want Protocol
		done bool
	}{
		{"empty", "", Opaque, false},
		{"get request line", "GET / HTTP/1.1\r\nHost: a\r\n", HTTP1, true},
		{"http/1.0", "POST /x?y=1 HTTP/1.0\r\n", HTTP1, true},
		{"bare LF request line", "GET / HTTP/1.1\n", HTTP1, true},
		{"partial method", "GE", HTTP1, false},
		{"method and partial target", "GET /some/pa", HTTP1, false},
		// Any token method is a request (RFC 9110 section 9.1): WebDAV,
		// extension and lower-case methods are counted and tapped too.
		{"unknown method", "FOO / HTTP/1.1\r\n", HTTP1, true},
		{"lower-case method", "get / HTTP/1.1\r\n", HTTP1, true},
		{"webdav method", "PROPFIND /dav/ HTTP/1.1\r\nHost: a\r\n", HTTP1, true},
		{"ssdp method", "M-SEARCH * HTTP/1.1\r\n", HTTP1, true},
		{"partial unknown method", "PROPF", HTTP1, false},
		{"method too long", "ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n", Opaque, true},
		{"control byte in target", "GET /\x00 HTTP/1.1\r\n", Opaque, true},
		{"method not followed by space", "GET\t/ HTTP/1.1\r\n", Opaque, true},
		{"words after the version", "SET key value-that-goes-on and on\r\n", Opaque, true},
		{"memcached set", "set k 0 0 5\r\n", Opaque, true},
		{"redis inline with arguments", "SET k v\r\n", Opaque, true},
		{"empty target", "GET  HTTP/1.1\r\n", Opaque, true},
		{"http/2.0 request line that is not the preface", "GET / HTTP/2.0\r\n", Opaque, true},
		{"no version", "GET /\r\n", Opaque, true},
		{"redis inline", "PING\r\n", Opaque, true},
		{"long word", "SUPERCALIFRAGILISTICEXPIALIDOCIOUS", Opaque, true},
		{"h2 preface", Preface + "\x00\x00", HTTP2, true},
		{"h2 preface exact", Preface, HTTP2, true},
		{"h2 preface partial", Preface[:10], HTTP2, false},
		{"PRI prefix diverging", "PRI * HTTP/1.1\r\n", HTTP1, true},
		{"PRI prefix diverging in the version", "PRI * HTTP/2.1\r\n", Opaque, true},
		{"tls client hello", string(clientHello), TLS, true},
		{"tls partial", string(clientHello[:3]), TLS, false},
		{"tls wrong version", "\x16\x02\x01", Opaque, true},
		{"tls not a client hello", "\x16\x03\x01\x00\x10\x02", Opaque, true},
		{"binary", "\x00\x01\x02", Opaque, true},
		{"mysql-like", "\x4a\x00\x00\x00\x0a5.7", Opaque, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done := Classify([]byte(tt.in))
			if got != tt.want || done != tt.done {
				t.Errorf("Classify(%q) = %v, %v; want %v, %v", tt.in, got, done, tt.want, tt.done)
			}
		})
	}
}

// pipeConn runs Peek against a real TCP connection on loopback, where the
// client writes chunks with pauses in between (short reads).
func peekOver(t *testing.T, timeout time.Duration, bufSize int, chunks ...string) (Protocol, []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for _, ch := range chunks {
			if ch == "<close>" {
				c.(*net.TCPConn).CloseWrite()
				continue
			}
			c.Write([]byte(ch))
			time.Sleep(20 * time.Millisecond)
		}
		c.Read(make([]byte, 1)) // hold the connection open until the server closes
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(c, bufSize)
	p, err := Peek(c, r, timeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	got, _ := io.ReadAll(r)
	c.Close()
	<-done
	return p, got
}

func TestPeekShortReads(t *testing.T) {
	p, got := peekOver(t, 2*time.Second, 4096, "G", "ET /in", "dex HTTP/1.", "1\r\n\r\n")
	if p != HTTP1 {
		t.Fatalf("got %v, want HTTP1", p)
	}
	if string(got) != "GET /index HTTP/1.1\r\n\r\n" {
		t.Fatalf("bytes were consumed: reader yields %q", got)
	}
}

func TestPeekH2PrefaceInPieces(t *testing.T) {
	p, got := peekOver(t, 2*time.Second, 4096, Preface[:5], Preface[5:20], Preface[20:])
	if p != HTTP2 || string(got) != Preface {
		t.Fatalf("got %v %q, want HTTP2 and the preface intact", p, got)
	}
}

// A client that sends nothing is opaque once the timeout passes: detection
// never hangs.
func TestPeekTimeoutSilentClient(t *testing.T) {
	start := time.Now()
	p, got := peekOver(t, 100*time.Millisecond, 4096)
	if p != Opaque || len(got) != 0 {
		t.Fatalf("got %v %q, want Opaque and no bytes", p, got)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("detection waited %v, far past its 100ms timeout", el)
	}
}

// A partial request line that stalls falls back to opaque at the timeout,
// keeping the bytes.
func TestPeekTimeoutPartial(t *testing.T) {
	p, got := peekOver(t, 100*time.Millisecond, 4096, "GET /x")
	if p != Opaque || string(got) != "GET /x" {
		t.Fatalf("got %v %q, want Opaque with the bytes kept", p, got)
	}
}

func TestPeekEOFBeforeDecision(t *testing.T) {
	p, got := peekOver(t, 2*time.Second, 4096, "GE", "<close>")
	if p != Opaque || string(got) != "GE" {
		t.Fatalf("got %v %q, want Opaque with the bytes kept", p, got)
	}
}

// A request line longer than the buffer is still HTTP/1, so the HTTP/1 path
// can answer it with a clear error instead of it passing as opaque.
func TestPeekLongRequestLine(t *testing.T) {
	long := "GET /" + strings.Repeat("a", 100) // no newline within 64 bytes
	p, _ := peekOver(t, 2*time.Second, 64, long)
	if p != HTTP1 {
		t.Fatalf("got %v, want HTTP1 for an over-long request line", p)
	}
}
