// Command goproxy is the benchmark's reference for a plain Go reverse proxy:
// net/http with httputil.ReverseProxy, as a Go service would build one. It
// listens for HTTP/1.1, h2c (prior knowledge) and gRPC and forwards to the
// benchmark's backend.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

func main() {
	http1 := flag.String("http1", "0.0.0.0:8081", "HTTP/1.1 listen address")
	h2c := flag.String("h2c", "0.0.0.0:8082", "h2c listen address")
	grpc := flag.String("grpc", "0.0.0.0:8083", "gRPC (h2c) listen address")
	backend := flag.String("backend", "127.0.0.1:8080", "HTTP backend")
	grpcBackend := flag.String("grpc-backend", "127.0.0.1:8079", "gRPC backend")
	flag.Parse()

	var h1, h2 http.Protocols
	h1.SetHTTP1(true)
	h2.SetUnencryptedHTTP2(true)
	errc := make(chan error, 3)
	serve := func(addr string, protos *http.Protocols, target string, upstream *http.Protocols) {
		u, err := url.Parse("http://" + target)
		if err != nil {
			errc <- err
			return
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{
			Protocols:           upstream,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     time.Minute,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		}
		// Stream responses (gRPC) instead of buffering them.
		rp.FlushInterval = -1
		srv := &http.Server{Addr: addr, Handler: rp, Protocols: protos, ReadHeaderTimeout: 10 * time.Second}
		errc <- srv.ListenAndServe()
	}
	var both http.Protocols
	both.SetHTTP1(true)
	both.SetUnencryptedHTTP2(true)
	go serve(*http1, &both, *backend, &h1)
	go serve(*h2c, &h2, *backend, &h1)
	go serve(*grpc, &h2, *grpcBackend, &h2)
	fmt.Fprintln(os.Stderr, "goproxy:", <-errc)
	os.Exit(1)
}
