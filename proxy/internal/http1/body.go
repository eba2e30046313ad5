package http1

import (
	"bufio"
	"errors"
	"io"
	"strconv"

	"github.com/conduitmesh/conduit/proxy/internal/httpsyntax"
)

// Errors from copying a body say which side failed, so the proxy knows
// whether the client aborted or the upstream did.
type readError struct{ error }
type writeError struct{ error }

func (e readError) Unwrap() error  { return e.error }
func (e writeError) Unwrap() error { return e.error }

var (
	errBadChunk   = errors.New("malformed chunked encoding")
	errBadTrailer = errors.New("malformed trailer section")
)

// bodyErrorStatus maps an error from reading a request body to the status
// answering it when no response has started; 0 means the connection just
// ends (the client went away or stalled).
func bodyErrorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, errBadChunk):
		return 400, errBadChunk.Error()
	case errors.Is(err, errBadTrailer), errors.Is(err, errHeadTooLarge):
		return 400, errBadTrailer.Error()
	}
	return 0, ""
}

// copyLength copies exactly n bytes from src to dst through dst's buffer.
// Before a read that would block it flushes what dst holds, so a body that
// trickles in (a stream) goes out as it arrives, while a body that is
// already buffered goes out in one write. Memory stays at the two buffers
// whatever n is.
func copyLength(dst *bufio.Writer, src *bufio.Reader, n int64) error {
	for n > 0 {
		if src.Buffered() == 0 && dst.Buffered() > 0 {
			if err := dst.Flush(); err != nil {
				return writeError{err}
			}
		}
		if dst.Available() == 0 {
			if err := dst.Flush(); err != nil {
				return writeError{err}
			}
		}
		p := dst.AvailableBuffer()
		p = p[:min(int64(cap(p)), n)]
		k, err := src.Read(p)
		if k > 0 {
			n -= int64(k)
			dst.Write(p[:k]) // p aliases dst's buffer: no copy, cannot fail
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if n > 0 {
				return readError{err}
			}
		}
	}
	return nil
}

// copyUntilEOF copies until src ends. With chunk it wraps what it reads in
// chunked framing and ends with the last chunk, so a close-delimited
// response can be sent on a persistent connection.
func copyUntilEOF(dst *bufio.Writer, src *bufio.Reader, chunk bool) error {
	var scratch [32]byte
	for {
		if src.Buffered() == 0 && dst.Buffered() > 0 {
			if err := dst.Flush(); err != nil {
				return writeError{err}
			}
		}
		if dst.Available() < 64 {
			if err := dst.Flush(); err != nil {
				return writeError{err}
			}
		}
		p := dst.AvailableBuffer()
		if chunk {
			// Leave room for the chunk-size line and CRLF around the data.
			p = p[:cap(p)-24]
		} else {
			p = p[:cap(p)]
		}
		k, err := src.Read(p)
		if k > 0 {
			if chunk {
				line := strconv.AppendInt(scratch[:0], int64(k), 16)
				line = append(line, '\r', '\n')
				if err := writeChunk(dst, line, p[:k]); err != nil {
					return err
				}
			} else {
				dst.Write(p[:k])
			}
		}
		if err == io.EOF {
			if chunk {
				if _, err := dst.WriteString("0\r\n\r\n"); err != nil {
					return writeError{err}
				}
			}
			return nil
		}
		if err != nil {
			return readError{err}
		}
	}
}

// writeChunk writes size line, data and CRLF. data lies in dst's free
// space, so it is moved up to make room for the size line before the
// write.
func writeChunk(dst *bufio.Writer, line, data []byte) error {
	buf := dst.AvailableBuffer()[:len(line)+len(data)+2]
	copy(buf[len(line):], data) // memmove: regions overlap
	copy(buf, line)
	buf[len(line)+len(data)] = '\r'
	buf[len(line)+len(data)+1] = '\n'
	if _, err := dst.Write(buf); err != nil {
		return writeError{err}
	}
	return nil
}

// copyChunked copies a chunked body from src to dst, validating the
// framing. Chunk extensions are dropped. With dechunk only the data is
// written (for an HTTP/1.0 client); otherwise the framing and trailer
// fields are forwarded.
func copyChunked(dst *bufio.Writer, src *bufio.Reader, dechunk bool) error {
	var scratch [24]byte
	for {
		if src.Buffered() == 0 && dst.Buffered() > 0 {
			if err := dst.Flush(); err != nil {
				return writeError{err}
			}
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err == bufio.ErrBufferFull {
				err = errBadChunk
			}
			return readError{err}
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return readError{errBadChunk}
		}
		if !dechunk {
			l := strconv.AppendInt(scratch[:0], size, 16)
			l = append(l, '\r', '\n')
			if _, err := dst.Write(l); err != nil {
				return writeError{err}
			}
		}
		if size == 0 {
			return copyTrailers(dst, src, dechunk)
		}
		if err := copyLength(dst, src, size); err != nil {
			return err
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil || len(crlf) != 2 || crlf[0] != '\r' {
			if err == nil || err == bufio.ErrBufferFull {
				err = errBadChunk
			}
			return readError{err}
		}
		if !dechunk {
			if _, err := dst.Write(crlf); err != nil {
				return writeError{err}
			}
		}
	}
}

// copyTrailers copies the trailer section after the last chunk, up to and
// including its empty line. Lines must end in CRLF and be well-formed
// fields (as in a head), so whatever follows cannot be taken for trailers.
func copyTrailers(dst *bufio.Writer, src *bufio.Reader, dechunk bool) error {
	total := 0
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err == bufio.ErrBufferFull {
				err = errBadTrailer
			}
			return readError{err}
		}
		if total += len(line); total > MaxHeadSize {
			return readError{errHeadTooLarge}
		}
		n := len(line) - 2
		if n < 0 || line[n] != '\r' || !validTrailer(line[:n]) {
			return readError{errBadTrailer}
		}
		if !dechunk {
			if _, err := dst.Write(line); err != nil {
				return writeError{err}
			}
		}
		if n == 0 {
			return nil
		}
	}
}

// validTrailer reports whether line (without its CRLF) is empty or a
// field: a token, a colon, and a value without control characters.
func validTrailer(line []byte) bool {
	colon := -1
	for i, c := range line {
		if c == ':' {
			colon = i
			break
		}
		if !httpsyntax.IsTokenChar[c] {
			return false
		}
	}
	if len(line) == 0 {
		return true
	}
	if colon <= 0 {
		return false
	}
	for _, c := range line[colon+1:] {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// parseChunkSize reads "hex[;ext]CRLF", as RFC 9112 section 7.1 and
// net/http read it: CRLF with no other CR, 1 to 15 hex digits (no sign,
// no space inside, no 0x), then either whitespace to the end (net/http
// trims it) or ';' right after the digits and an extension without
// control characters. Whitespace before ';' (BWS), which net/http refuses,
// is refused too: what the proxy accepts, a server behind it reads the
// same way.
func parseChunkSize(line []byte) (int64, bool) {
	n := len(line)
	if n < 3 || line[n-2] != '\r' {
		return 0, false
	}
	line = line[:n-2]
	var size int64
	digits := 0
	for i, c := range line {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		case c == ';':
			if digits == 0 {
				return 0, false
			}
			for _, e := range line[i+1:] {
				if (e < ' ' && e != '\t') || e == 0x7f {
					return 0, false
				}
			}
			return size, true
		case c == ' ' || c == '\t':
			if digits == 0 {
				return 0, false
			}
			for _, e := range line[i+1:] {
				if e != ' ' && e != '\t' {
					return 0, false
				}
			}
			return size, true
		default:
			return 0, false
		}
		if digits++; digits > 15 {
			return 0, false
		}
		size = size<<4 | int64(v)
	}
	return size, digits > 0
}
