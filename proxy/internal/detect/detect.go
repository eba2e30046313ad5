// Package detect decides which protocol a client speaks from the first bytes
// it sends: an HTTP/1.x request line, the HTTP/2 connection preface (h2c
// prior knowledge, which carries gRPC), a TLS ClientHello, or anything else
// (opaque TCP).
package detect

import (
	"bufio"
	"errors"
	"net"
	"os"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/httpsyntax"
)

// Protocol is what a connection was detected to speak.
type Protocol uint8

const (
	Opaque Protocol = iota
	HTTP1
	HTTP2
	TLS
)

func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "http/1"
	case HTTP2:
		return "h2"
	case TLS:
		return "tls"
	}
	return "opaque"
}

// Preface is the HTTP/2 client connection preface (RFC 9113 section 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxMethod bounds the method detection waits for: the longest registered
// method (UPDATEREDIRECTREF) has 17 bytes. A longer token with no space
// yet is taken for another protocol.
const maxMethod = 24

// Classify looks at the bytes a client has sent so far. It returns the
// protocol and whether the decision is final; when more bytes could change
// the answer it returns done=false (the caller reads more, or gives up at a
// timeout, EOF or a full buffer and treats the connection as opaque unless
// Classify said HTTP1 is still possible, see Fallback).
func Classify(b []byte) (p Protocol, done bool) {
	if len(b) == 0 {
		return Opaque, false
	}
	// HTTP/2 preface first: "PRI * HTTP/2.0" would otherwise look like a
	// request line.
	if n := min(len(b), len(Preface)); string(b[:n]) == Preface[:n] {
		if n == len(Preface) {
			return HTTP2, true
		}
		return HTTP2, false
	}
	// TLS record header: handshake (22), version 3.x, then a ClientHello
	// (handshake type 1) as the first handshake message.
	if b[0] == 0x16 {
		if len(b) < 6 {
			if len(b) >= 2 && b[1] != 0x03 {
				return Opaque, true
			}
			return TLS, false
		}
		if b[1] == 0x03 && b[2] <= 0x04 && b[5] == 0x01 {
			return TLS, true
		}
		return Opaque, true
	}
	return classifyHTTP1(b)
}

// classifyHTTP1 recognises an HTTP/1.x request line (RFC 9112 section 3):
// any method token (RFC 9110 section 9.1: PROPFIND, lower-case and
// extension methods are requests too), SP, a request-target without
// spaces or control characters, SP, HTTP/1.0 or HTTP/1.1, CRLF (or LF,
// which the HTTP/1 parser then answers with 400). It looks at each byte
// at most once per call and stops at the first line end.
func classifyHTTP1(b []byte) (Protocol, bool) {
	i := 0
	for i < len(b) && httpsyntax.IsTokenChar[b[i]] {
		i++
	}
	if i == len(b) {
		if i > maxMethod {
			return Opaque, true
		}
		return HTTP1, false
	}
	if i == 0 || i > maxMethod || b[i] != ' ' {
		return Opaque, true
	}
	// The target runs to the last space before the line end; the version
	// follows it.
	lastSP := i
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == ' ':
			lastSP = j
		case c == '\n' || c == '\r':
			return versionAt(b[lastSP:j], lastSP > i+1)
		case c < ' ' || c == 0x7f:
			return Opaque, true
		}
		if j-lastSP > len(" HTTP/1.1") && lastSP > i {
			// Bytes after what should have been the version: only a space
			// could still make a request line of it, and the target has
			// no spaces.
			return Opaque, true
		}
	}
	return HTTP1, false
}

// versionAt checks " HTTP/1.x" at the end of a request line; target says
// there was a non-empty target before it.
func versionAt(v []byte, target bool) (Protocol, bool) {
	if !target || len(v) != len(" HTTP/1.1") || string(v[:len(" HTTP/1.")]) != " HTTP/1." || (v[8] != '0' && v[8] != '1') {
		return Opaque, true
	}
	return HTTP1, true
}

// Fallback is the protocol to use when detection stops before Classify was
// done (timeout, EOF or full buffer). A request line longer than the buffer
// is still HTTP/1 (the HTTP/1 parser answers it with an error); everything
// else is opaque.
func Fallback(p Protocol, bufferFull bool) Protocol {
	if p == HTTP1 && bufferFull {
		return HTTP1
	}
	return Opaque
}

// Peek reads from r (which wraps conn) until Classify is done, the buffer is
// full, the peer stops sending (EOF) or timeout passes. The bytes stay in r.
// It never consumes data: whatever the result, r still yields every byte
// the client sent.
func Peek(conn net.Conn, r *bufio.Reader, timeout time.Duration) (Protocol, error) {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Opaque, err
	}
	defer conn.SetReadDeadline(time.Time{})
	n := 1
	for {
		_, err := r.Peek(n)
		// Classify everything buffered, which may be more than n bytes.
		b, _ := r.Peek(r.Buffered())
		p, done := Classify(b)
		if done {
			return p, nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, bufio.ErrBufferFull) {
				return Fallback(p, errors.Is(err, bufio.ErrBufferFull)), nil
			}
			// EOF or a reset: whatever arrived is forwarded as opaque bytes;
			// the copy reports the error if there is one.
			return Opaque, nil
		}
		// Ask for one more byte than is buffered: this returns as soon as
		// anything new arrives, never waiting for a fixed length.
		n = r.Buffered() + 1
		if n > r.Size() {
			return Fallback(p, true), nil
		}
	}
}
