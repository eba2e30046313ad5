// Package httpsyntax holds the character classes of HTTP's grammar that
// more than one step of the proxy reads by: detection decides whether the
// first bytes are an HTTP/1 request line, and http1 parses it.
package httpsyntax

// IsTokenChar is RFC 9110's tchar, indexed by byte.
var IsTokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
