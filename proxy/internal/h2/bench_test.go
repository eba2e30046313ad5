package h2

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// BenchmarkH2C measures a 1 KiB h2c request/response, direct and through
// the proxy, in the same run.
func BenchmarkH2C(b *testing.B) {
	body := bytes.Repeat([]byte{'x'}, 1024)
	be := startH2C(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	p := startProxy(b, be)
	run := func(b *testing.B, addr string) {
		c := h2cClient(addr)
		get := func() {
			resp, err := c.Get("http://bench.test/")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		get()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			get()
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, be) })
	b.Run("proxied", func(b *testing.B) { run(b, p.addr) })
}

// BenchmarkGRPCUnary measures a unary call with a 1 KiB payload.
func BenchmarkGRPCUnary(b *testing.B) {
	be, _ := startGRPC(b, &testService{})
	p := startProxy(b, be)
	req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{'x'}, 1024)}}
	run := func(b *testing.B, addr string) {
		c := dialGRPC(b, addr)
		ctx := context.Background()
		if _, err := c.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.UnaryCall(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, be) })
	b.Run("proxied", func(b *testing.B) { run(b, p.addr) })
}
