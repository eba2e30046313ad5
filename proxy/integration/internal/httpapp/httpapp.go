// Package httpapp is the HTTP application the integration tests put behind
// the mesh: it serves and consumes bodies of any size as streams, reports
// what it saw, and serves HTTP/1.1 and h2c (prior knowledge) on one port.
package httpapp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Pattern is the deterministic content of /bytes responses: byte i is
// Pattern(i), so a client can check any body without a copy of it.
func Pattern(i int64) byte { return byte(i*7 + i>>8) }

// PatternReader yields n bytes of Pattern.
func PatternReader(n int64) io.Reader { return &patternReader{n: n} }

type patternReader struct{ off, n int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rem := r.n - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	for i := range p {
		p[i] = Pattern(r.off + int64(i))
	}
	r.off += int64(len(p))
	return len(p), nil
}

// Upload is what /upload saw of one request body.
type Upload struct {
	Bytes  int64
	SHA256 string
	Err    error // non-nil when the body ended early
}

// App is the handler. Its channels report bodies that ended, for tests that
// abort them.
type App struct {
	uploads chan Upload
	// Downloads receives the error (nil when complete) of each /bytes
	// response.
	downloads chan error
	slow      chan struct{}
}

// New returns the app.
func New() *App {
	return &App{uploads: make(chan Upload, 64), downloads: make(chan error, 64), slow: make(chan struct{}, 64)}
}

// Uploads reports each /upload body as it ends.
func (a *App) Uploads() <-chan Upload { return a.uploads }

// Downloads reports each /bytes response as it ends.
func (a *App) Downloads() <-chan error { return a.downloads }

// SlowStarted receives a value when a /slow request arrives.
func (a *App) SlowStarted() <-chan struct{} { return a.slow }

// ServeHTTP routes:
//
//	GET  /bytes?n=N        N bytes of Pattern, with Content-Length
//	GET  /chunked?n=N      the same, chunked (no Content-Length)
//	POST /upload           reads the body, answers "BYTES SHA256"
//	GET  /status/CODE      answers with that status
//	GET  /proto            answers the request's protocol, e.g. HTTP/2.0
//	GET  /slow?ms=N        answers after N milliseconds
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/bytes" || r.URL.Path == "/chunked":
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "n must be a byte count", http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/bytes" {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, err = io.Copy(w, PatternReader(n))
		a.downloads <- err
	case r.URL.Path == "/upload":
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		a.uploads <- Upload{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil)), Err: err}
		if err != nil {
			return
		}
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	case len(r.URL.Path) > len("/status/") && r.URL.Path[:len("/status/")] == "/status/":
		code, err := strconv.Atoi(r.URL.Path[len("/status/"):])
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "bad status", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d\n", code)
	case r.URL.Path == "/slow":
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 {
			http.Error(w, "ms must be a number of milliseconds", http.StatusBadRequest)
			return
		}
		a.slow <- struct{}{}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			fmt.Fprintf(w, "slept %d ms\n", ms)
		case <-r.Context().Done():
		}
	case r.URL.Path == "/proto":
		fmt.Fprint(w, r.Proto)
	default:
		http.NotFound(w, r)
	}
}

// Serve serves the app on l with HTTP/1.1 and h2c prior knowledge until the
// returned stop function is called.
func Serve(l net.Listener, h http.Handler) (stop func()) {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return func() {
		srv.Close()
		<-done
	}
}
