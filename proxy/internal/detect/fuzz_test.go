package detect

import "testing"

// FuzzClassify checks that a decision, once final, holds whatever bytes
// follow (Peek decides on what has arrived so far), and that an undecided
// prefix never claims more than the decision it leads to allows.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\n", "PROPFIND /a HTTP/1.1\r\n", "get / HTTP/1.0\n", Preface,
		"PRI * HTTP/1.1\r\n", "M-SEARCH * HTTP/1.1\r\n", "\x16\x03\x01\x02\x00\x01", "SET k v\r\n",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n", "GET /\x00 HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1024 {
			b = b[:1024] // every prefix is classified: keep it quadratic in little
		}
		final, finalDone := Classify(b)
		for i := 0; i <= len(b); i++ {
			p, done := Classify(b[:i])
			if done && (p != final || !finalDone) {
				t.Fatalf("Classify(%q) = %v (final), but Classify(%q) = %v, %v", b[:i], p, b, final, finalDone)
			}
		}
	})
}
