package soak

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/conduitmesh/conduit/proxy/integration/internal/grpcapp"
)

// Ports of the server namespace's applications.
const (
	soakHTTPPort     = 8080 // soakApp: HTTP/1.1 and h2c
	soakGRPCPort     = 8081 // grpcapp's TestService
	soakOpaquePort   = 9300 // TCP echo, opaque on both proxies
	soakDetectedPort = 9301 // TCP echo, left to detection
)

// soakPattern is byte i of every response body, so a client can check a
// body without a copy of it.
func soakPattern(i int) byte { return byte(i*7 + i>>8) }

// soakApp is the backend: it answers well, slowly, never, or with a TCP
// reset, as the path asks.
//
//	GET  /ok?n=N       N bytes of soakPattern, Content-Length
//	POST /upload       reads the body, answers "BYTES SHA256"
//	GET  /slow?ms=N    answers after N ms
//	GET  /hang         never answers; returns when the peer goes away
//	GET  /reset        (HTTP/1) reads the head, then resets the connection
//	GET  /reset-mid    (HTTP/1) sends the head and part of the body, then resets
type soakApp struct {
	// hung counts /hang requests whose handler has not returned yet: a
	// proxy that never passes the client's departure on leaves them here.
	mu   sync.Mutex
	hung int
}

func (a *soakApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ok":
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > 16<<20 {
			http.Error(w, "n must be a byte count", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := make([]byte, min(n, 32<<10))
		for off := 0; off < n; {
			m := min(len(buf), n-off)
			for i := range m {
				buf[i] = soakPattern(off + i)
			}
			if _, err := w.Write(buf[:m]); err != nil {
				return
			}
			off += m
		}
	case "/upload":
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	case "/slow":
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 {
			http.Error(w, "ms must be a number of milliseconds", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			fmt.Fprintf(w, "slept %d ms\n", ms)
		case <-r.Context().Done():
		}
	case "/hang":
		a.mu.Lock()
		a.hung++
		a.mu.Unlock()
		<-r.Context().Done()
		a.mu.Lock()
		a.hung--
		a.mu.Unlock()
	case "/reset", "/reset-mid":
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "HTTP/1 only", http.StatusBadRequest)
			return
		}
		c, bw, err := hj.Hijack()
		if err != nil {
			return
		}
		if r.URL.Path == "/reset-mid" {
			body := make([]byte, 4096)
			for i := range body {
				body[i] = soakPattern(i)
			}
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 64<<10)
			bw.Write(body)
			bw.Flush()
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	default:
		http.NotFound(w, r)
	}
}

// Hung is the number of /hang handlers still waiting.
func (a *soakApp) Hung() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hung
}

// soakServeHTTP serves the app with HTTP/1.1 and h2c prior knowledge until
// the returned stop is called.
func soakServeHTTP(l net.Listener, h http.Handler) (stop func()) {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos, ReadHeaderTimeout: time.Minute}
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

// soakServeGRPC serves grpcapp's TestService until stop is called.
func soakServeGRPC(l net.Listener) (stop func()) {
	gs, _ := grpcapp.NewServer()
	go gs.Serve(l)
	return gs.Stop
}

// soakServeEcho echoes each connection, half-close included, until stop
// is called; stop closes the connections still open.
func soakServeEcho(l net.Listener) (stop func()) {
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, bufio.NewReader(c))
				c.(*net.TCPConn).CloseWrite()
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}
