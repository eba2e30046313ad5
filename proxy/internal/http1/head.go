package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/conduitmesh/conduit/proxy/internal/httpsyntax"
)

// MaxHeadSize bounds a request or response head (start line, fields and
// line ends). Any one line may be as long as the whole head: a line longer
// than the connection's read buffer is gathered in head.buf piece by piece.
// See the README's HTTP/1.1 section for how this compares with other
// proxies.
const MaxHeadSize = 64 << 10

// maxFields bounds the fields of a head (over it: errHeadTooLarge), and
// maxConnOptions the names Connection may list (over it: errConnOptions):
// a 64 KiB head of tiny fields would otherwise hold 16K field records, and
// applying Connection's list costs options × fields comparisons. Envoy
// and HAProxy allow about 100 fields by default; 1000 leaves room for
// what they refuse.
const (
	maxFields      = 1000
	maxConnOptions = 32
)

// Errors reading a head. Each is answered with a 4xx (request) or 502
// (response); the text goes into the contract.ProxyErrorHeader header.
var (
	errHeadTooLarge    = errors.New("header section too large")
	errBadRequestLine  = errors.New("malformed request line")
	errBadStatusLine   = errors.New("malformed status line")
	errBadVersion      = errors.New("unsupported HTTP version")
	errBadField        = errors.New("malformed header field")
	errObsFold         = errors.New("obsolete line folding")
	errBareLF          = errors.New("line not terminated by CRLF")
	errBadLength       = errors.New("invalid Content-Length")
	errLengthAndChunks = errors.New("both Content-Length and Transfer-Encoding")
	errBadTE           = errors.New("unsupported Transfer-Encoding")
	errDupHost         = errors.New("more than one Host")
	errNoHost          = errors.New("missing Host")
	errBadHost         = errors.New("malformed Host")
	errBadTarget       = errors.New("malformed request target")
	errConnFraming     = errors.New("framing field listed in Connection")
	errDupTE           = errors.New("more than one Transfer-Encoding")
	errTEHTTP10        = errors.New("transfer coding on HTTP/1.0")
	errConnOptions     = errors.New("too many Connection options")
	// Servers that map fields to CGI-style variables (HTTP_CONTENT_LENGTH)
	// read Content_Length as Content-Length, a length the proxy did not
	// frame by.
	errUnderscoreFraming = errors.New("framing field name with an underscore")
)

// span is a range of head.buf.
type span struct{ start, end int32 }

// field is one header field; drop marks a hop-by-hop field the proxy does
// not forward.
type field struct {
	name, value span
	drop        bool
}

// head is a parsed request or response head. Its byte slices point into buf,
// which is reused from message to message so a steady connection parses
// without allocating.
type head struct {
	buf    []byte
	fields []field

	// Request line: method SP target SP HTTP/1.minor.
	method, target span
	// Status line: HTTP/1.minor SP status SP reason.
	status int
	reason span
	minor  int

	// Framing and connection management, from the fields.
	contentLength  int64 // -1 when absent
	lengthValue    span  // the first Content-Length value
	teChunked      bool  // Transfer-Encoding present with chunked last
	hasTE          bool
	connClose      bool
	connKeepAlive  bool
	expectContinue bool
	upgrade        bool
	host           span
	hasHost        bool
	// hostFromTarget: host is the authority of an absolute-form target (or
	// a CONNECT's authority-form one), which wins over any Host field
	// (RFC 9112 section 3.2.2); the Host fields are dropped and Host is
	// written from it.
	hostFromTarget bool
	teFields       int
	// Names listed in Connection (other than close/keep-alive), also
	// hop-by-hop (RFC 9110 section 7.6.1).
	connTokens []span
	// switchTo is the Upgrade value the proxy forwards (set per request
	// by the proxy, never by parsing): see upgradeValue.
	switchTo span
}

func (h *head) bytes(s span) []byte { return h.buf[s.start:s.end] }

func (h *head) reset() {
	h.buf = h.buf[:0]
	h.fields = h.fields[:0]
	h.connTokens = h.connTokens[:0]
	h.method, h.target, h.reason, h.host, h.switchTo, h.lengthValue = span{}, span{}, span{}, span{}, span{}, span{}
	h.status, h.minor = 0, 0
	h.contentLength = -1
	h.teChunked, h.hasTE, h.connClose, h.connKeepAlive = false, false, false, false
	h.expectContinue, h.hasHost, h.upgrade, h.hostFromTarget = false, false, false, false
	h.teFields = 0
}

// maxKeptBuf is the largest head buffer a pooled head keeps between
// connections; one that grew for an exceptionally large head is let go.
const maxKeptBuf = 8 << 10

// trim lets go of buffers grown beyond the usual size, so a pooled head
// holds at most maxKeptBuf however large the heads it once read.
func (h *head) trim() {
	if cap(h.buf) > maxKeptBuf {
		h.buf = nil
	}
	if cap(h.fields) > 256 {
		h.fields = nil
	}
	if cap(h.connTokens) > 64 {
		h.connTokens = nil
	}
}

// methodIs compares the method case-sensitively, as RFC 9110 section 9.1
// requires: "head" is not HEAD, and must not be framed as one.
func (h *head) methodIs(m string) bool { return string(h.bytes(h.method)) == m }

// readHead reads and parses a head from r. isRequest picks the start line
// grammar. Requests must use CRLF; responses may use bare LF, which is
// normalised when forwarded. It returns io.EOF when r ends before any byte
// of the head.
func (h *head) read(r *bufio.Reader, isRequest bool) error {
	h.reset()
	first, skipped := true, 0
	for {
		start := len(h.buf)
		line, err := r.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			// A line longer than r's buffer: gather it in buf.
			if len(h.buf)+len(line) > MaxHeadSize {
				return errHeadTooLarge
			}
			h.buf = append(h.buf, line...)
			line, err = r.ReadSlice('\n')
		}
		if err != nil {
			if err == io.EOF && (len(line) > 0 || !first || len(h.buf) > start) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if len(h.buf)+len(line) > MaxHeadSize {
			return errHeadTooLarge
		}
		h.buf = append(h.buf, line...)
		n := len(h.buf) - start - 1
		if n > 0 && h.buf[start+n-1] == '\r' {
			n--
		} else if isRequest {
			return errBareLF
		}
		h.buf = h.buf[:start+n]
		if first && n == 0 && isRequest && skipped < 4 {
			// RFC 9112 section 2.2: ignore an empty line before the request line.
			skipped++
			continue
		}
		s := span{int32(start), int32(start + n)}
		if first {
			first = false
			if isRequest {
				err = h.parseRequestLine(s)
			} else {
				err = h.parseStatusLine(s)
			}
			if err != nil {
				return err
			}
			continue
		}
		if n == 0 {
			return h.finish(isRequest)
		}
		if err := h.parseField(s); err != nil {
			return err
		}
	}
}

func (h *head) parseRequestLine(s span) error {
	line := h.bytes(s)
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errBadRequestLine
	}
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp2 <= sp1+1 {
		return errBadRequestLine
	}
	for _, c := range line[:sp1] {
		if !httpsyntax.IsTokenChar[c] {
			return errBadRequestLine
		}
	}
	for _, c := range line[sp1+1 : sp2] {
		if c <= ' ' || c == 0x7f {
			return errBadRequestLine
		}
	}
	minor, ok := parseVersion(line[sp2+1:])
	if !ok {
		return errBadVersion
	}
	h.minor = minor
	h.method = span{s.start, s.start + int32(sp1)}
	h.target = span{s.start + int32(sp1) + 1, s.start + int32(sp2)}
	return nil
}

func (h *head) parseStatusLine(s span) error {
	line := h.bytes(s)
	if len(line) < len("HTTP/1.1 200") || (len(line) > 12 && line[12] != ' ') || line[8] != ' ' {
		return errBadStatusLine
	}
	minor, ok := parseVersion(line[:8])
	if !ok {
		return errBadStatusLine
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errBadStatusLine
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return errBadStatusLine
	}
	h.minor, h.status = minor, code
	h.reason = span{s.start + 12, s.end}
	if len(line) > 12 {
		h.reason.start++
	}
	return nil
}

func parseVersion(b []byte) (int, bool) {
	if len(b) != 8 || string(b[:7]) != "HTTP/1." || (b[7] != '0' && b[7] != '1') {
		return 0, false
	}
	return int(b[7] - '0'), true
}

func (h *head) parseField(s span) error {
	line := h.bytes(s)
	if line[0] == ' ' || line[0] == '\t' {
		return errObsFold
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return errBadField
	}
	for _, c := range line[:colon] {
		if !httpsyntax.IsTokenChar[c] {
			return errBadField
		}
	}
	vs, ve := colon+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	for _, c := range line[vs:ve] {
		// RFC 9110 section 5.5: no control characters but HTAB (NUL, CR
		// and LF above all: a server behind might end the line there).
		if (c < ' ' && c != '\t') || c == 0x7f {
			return errBadField
		}
	}
	f := field{
		name:  span{s.start, s.start + int32(colon)},
		value: span{s.start + int32(vs), s.start + int32(ve)},
	}
	name, value := line[:colon], line[vs:ve]
	switch len(name) {
	case 2:
		f.drop = equalFold(name, "te")
	case 4:
		if equalFold(name, "host") {
			if h.hasHost {
				return errDupHost
			}
			if !validHost(value) {
				return errBadHost
			}
			h.hasHost, h.host = true, f.value
		}
	case 6:
		if equalFold(name, "expect") {
			h.expectContinue = equalFold(value, "100-continue")
			f.drop = true // the proxy answers 100 Continue itself
		}
	case 7:
		if equalFold(name, "upgrade") {
			// Hop-by-hop: the proxy forwards it itself when it splices
			// the switched connection (see upgradeValue).
			f.drop, h.upgrade = true, true
		}
	case 10:
		if equalFold(name, "connection") {
			f.drop = true
			if err := h.parseConnection(f.value); err != nil {
				return err
			}
		} else {
			f.drop = equalFold(name, "keep-alive")
		}
	case 14:
		if equalFold(name, "content-length") {
			// A repeated Content-Length must repeat the value byte for
			// byte (as net/http checks: "05" after "5" is refused), and
			// is forwarded once.
			n, ok := parseLength(value)
			if !ok || (h.contentLength >= 0 && string(h.bytes(h.lengthValue)) != string(value)) {
				return errBadLength
			}
			f.drop = h.contentLength >= 0
			h.contentLength, h.lengthValue = n, f.value
		} else if equalFold(name, "content_length") {
			return errUnderscoreFraming
		}
	case 16:
		f.drop = equalFold(name, "proxy-connection")
	case 17:
		if equalFold(name, "transfer_encoding") {
			return errUnderscoreFraming
		}
		if equalFold(name, "transfer-encoding") {
			// Only chunked, alone, in one field (as net/http, Envoy and
			// nginx): anything else is either a coding nothing behind the
			// proxy decodes or a list that two readers might split
			// differently (TE.TE obfuscation).
			h.hasTE = true
			h.teFields++
			h.teChunked = equalFold(value, "chunked")
		}
	}
	if len(h.fields) == maxFields {
		return errHeadTooLarge
	}
	h.fields = append(h.fields, f)
	return nil
}

// parseConnection records the options of a Connection field.
func (h *head) parseConnection(v span) error {
	b := h.bytes(v)
	pos := v.start
	for len(b) > 0 {
		i := bytes.IndexByte(b, ',')
		tok := b
		if i >= 0 {
			tok = b[:i]
		}
		ts, te := 0, len(tok)
		for ts < te && (tok[ts] == ' ' || tok[ts] == '\t') {
			ts++
		}
		for te > ts && (tok[te-1] == ' ' || tok[te-1] == '\t') {
			te--
		}
		t := tok[ts:te]
		switch {
		case len(t) == 0:
		case equalFold(t, "close"):
			h.connClose = true
		case equalFold(t, "keep-alive"):
			h.connKeepAlive = true
		default:
			if len(h.connTokens) == maxConnOptions {
				return errConnOptions
			}
			h.connTokens = append(h.connTokens, span{pos + int32(ts), pos + int32(te)})
		}
		if i < 0 {
			break
		}
		b = b[i+1:]
		pos += int32(i + 1)
	}
	return nil
}

// finish applies Connection-listed names and checks framing.
func (h *head) finish(isRequest bool) error {
	for _, t := range h.connTokens {
		// Dropping a framing field as hop-by-hop while still framing the
		// body by it would leave the next hop reading the body as the next
		// message (request smuggling); dropping Host would change the
		// request's authority. Proxies that keep such fields (Envoy and
		// nginx do not remove what Connection lists) cannot lose them; one
		// that removes them must refuse the message.
		tok := h.bytes(t)
		if equalFold(tok, "content-length") || equalFold(tok, "transfer-encoding") || equalFold(tok, "host") {
			return errConnFraming
		}
	}
	if len(h.connTokens) > 0 {
		for i := range h.fields {
			f := &h.fields[i]
			for _, t := range h.connTokens {
				if equalFoldBytes(h.bytes(f.name), h.bytes(t)) {
					f.drop = true
				}
			}
		}
	}
	if h.hasTE {
		if h.teFields > 1 {
			return errDupTE
		}
		// RFC 9112 section 6.1: HTTP/1.0 has no transfer codings, and a
		// message with one must be treated as having faulty framing
		// (net/http ignores it and reads by length or to the close, the
		// proxy would read chunks: refused both ways). A request with
		// both Content-Length and Transfer-Encoding is a smuggling attempt
		// or a broken client.
		if h.minor == 0 {
			return errTEHTTP10
		}
		if isRequest && h.contentLength >= 0 {
			return errLengthAndChunks
		}
		if !h.teChunked {
			return errBadTE
		}
		// A response with both: Transfer-Encoding wins and Content-Length
		// is not forwarded.
		if h.contentLength >= 0 {
			h.contentLength = -1
			for i := range h.fields {
				if equalFold(h.bytes(h.fields[i].name), "content-length") {
					h.fields[i].drop = true
				}
			}
		}
	}
	if isRequest {
		return h.finishAuthority()
	}
	return nil
}

// finishAuthority decides the request's authority. An absolute-form target
// (and a CONNECT's authority-form one) carries it, and it wins over Host
// (RFC 9112 section 3.2.2), which is then rewritten to it, as net/http,
// Envoy and nginx use the target's; otherwise HTTP/1.1 must send Host
// (RFC 9112 section 3.2), while HTTP/1.0 may go without.
func (h *head) finishAuthority() error {
	t := h.target
	switch {
	case h.methodIs("CONNECT"):
	case hasSchemePrefix(h.bytes(t), "http://"):
		t.start += int32(len("http://"))
	case hasSchemePrefix(h.bytes(t), "https://"):
		t.start += int32(len("https://"))
	default:
		// Origin form, or asterisk form (OPTIONS *); any other target
		// (another scheme, a bare word) is refused as net/http refuses it.
		if tb := h.bytes(t); tb[0] != '/' && string(tb) != "*" {
			return errBadTarget
		}
		if !h.hasHost && h.minor == 1 {
			return errNoHost
		}
		return nil
	}
	b := h.bytes(t)
	for i, c := range b {
		if c == '/' || c == '?' || c == '#' {
			if t.start == h.target.start {
				// CONNECT's target is an authority and nothing else.
				return errBadTarget
			}
			t.end = t.start + int32(i)
			break
		}
	}
	// No empty host (RFC 9110 section 4.2.1) and no userinfo: '@' is not
	// a valid Host byte.
	if auth := h.bytes(t); len(auth) == 0 || !validHost(auth) {
		return errBadTarget
	}
	h.host, h.hasHost, h.hostFromTarget = t, true, true
	for i := range h.fields {
		if equalFold(h.bytes(h.fields[i].name), "host") {
			h.fields[i].drop = true
		}
	}
	return nil
}

func hasSchemePrefix(t []byte, scheme string) bool {
	return len(t) >= len(scheme) && equalFold(t[:len(scheme)], scheme)
}

// validHost reports whether b may be a Host value: the bytes of
// RFC 3986's host and port, as net/http's server checks them (no
// userinfo, no spaces, ASCII only).
func validHost(b []byte) bool {
	for _, c := range b {
		if !isHostChar[c] {
			return false
		}
	}
	return true
}

func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// equalFold compares ASCII case-insensitively with a lower-case string.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isHostChar is net/http's set of Host bytes: unreserved, sub-delims,
// pct-encoded, and ':' '[' ']' for a port and IPv6.
var isHostChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!$%&'()*+,-.:;=[]_~" {
		t[c] = true
	}
	return t
}()
