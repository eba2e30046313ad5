// Package detect decides which protocol a client speaks from the first bytes
// it sends: an HTTP/1.x request line, the HTTP/2 connection preface (h2c
// prior knowledge, which carries gRPC), a TLS ClientHello, or anything else
// (opaque TCP).
package detect

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"time"
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

// methods a request line may start with. Anything else is not treated as
// HTTP/1: an unknown method is far more likely an opaque protocol.
var methods = [...]string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
}

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

func classifyHTTP1(b []byte) (Protocol, bool) {
	// Method followed by a space.
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		if len(b) > len("OPTIONS") || !isMethodPrefix(b) {
			return Opaque, true
		}
		return HTTP1, false
	}
	if !isMethod(b[:sp]) {
		return Opaque, true
	}
	// The request line must end in " HTTP/1.x\r\n".
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		return HTTP1, false
	}
	line := bytes.TrimSuffix(b[:eol], []byte("\r"))
	if len(line) < sp+1+len(" HTTP/1.1") {
		return Opaque, true
	}
	v := line[len(line)-len(" HTTP/1.1"):]
	if string(v[:len(" HTTP/1.")]) != " HTTP/1." || (v[8] != '0' && v[8] != '1') {
		return Opaque, true
	}
	return HTTP1, true
}

func isMethod(b []byte) bool {
	for _, m := range methods {
		if string(b) == m {
			return true
		}
	}
	return false
}

func isMethodPrefix(b []byte) bool {
	for _, m := range methods {
		if len(b) <= len(m) && string(b) == m[:len(b)] {
			return true
		}
	}
	return false
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
