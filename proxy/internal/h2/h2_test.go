package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/metrics/metricstest"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

type testProxy struct {
	addr    string
	metrics *metrics.Metrics
	srv     *server.Server
}

func startProxy(t testing.TB, backend string, opts ...Option) *testProxy {
	t.Helper()
	m := metrics.New(metrics.Workload{})
	r, c := resolve.OrigDst{}, resolve.TCP{}
	srv, err := server.New(server.Config{
		Direction: contract.DirectionInbound,
		OrigDst:   origdst.Fixed(netip.MustParseAddrPort(backend)),
		Resolver:  r,
		Connector: c,
		Metrics:   m,
		HTTP2:     New(contract.DirectionInbound, r, c, m, opts...),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv.Shutdown(ctx)
	})
	return &testProxy{addr: ln.Addr().String(), metrics: m, srv: srv}
}

// sample returns the value of the metric family name with the given labels.
func (p *testProxy) sample(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Sample(t, p.metrics.Registry(), name, labels)
}

// testService implements the gRPC interop TestService.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	streamDone chan error // receives how each server stream ended
}

func (s *testService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if st := req.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	return &testgrpc.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (s *testService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	var err error
	defer func() {
		if s.streamDone != nil {
			s.streamDone <- err
		}
	}()
	for i, p := range req.GetResponseParameters() {
		select {
		case <-time.After(time.Duration(p.GetIntervalUs()) * time.Microsecond):
		case <-stream.Context().Done():
			err = stream.Context().Err()
			return err
		}
		body := bytes.Repeat([]byte{byte('a' + i%26)}, int(p.GetSize()))
		if err = stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if st := req.GetResponseStatus(); st != nil {
			return status.Error(codes.Code(st.Code), st.Message)
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

func startGRPC(t testing.TB, svc *testService) (string, *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, svc)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), s
}

func dialGRPC(t testing.TB, addr string) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("test.ns.svc:8080"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGRPCUnaryAndStatus(t *testing.T) {
	be, _ := startGRPC(t, &testService{})
	p := startProxy(t, be)
	c := dialGRPC(t, p.addr)
	ctx := ctxT(t)
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}})
	if err != nil || string(resp.GetPayload().GetBody()) != "ping" {
		t.Fatalf("unary: %v %v", resp, err)
	}
	_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Fatalf("status error arrived as %v", err)
	}
	base := map[string]string{"direction": "inbound", "authority": "test.ns.svc:8080", "status_code": "200"}
	for code, class := range map[string]string{"0": "success", "5": "failure"} {
		l := map[string]string{"grpc_status_code": code, "classification": class}
		for k, v := range base {
			l[k] = v
		}
		if v := p.sample(t, "response_total", l); v != 1 {
			t.Errorf("response_total{grpc_status_code=%s,classification=%s} = %v, want 1", code, class, v)
		}
	}
	if v := p.sample(t, "request_total", map[string]string{"authority": "test.ns.svc:8080"}); v != 2 {
		t.Errorf("request_total = %v, want 2", v)
	}
}

// Server streaming: messages arrive as they are sent, a stream that lasts
// well over a second is not cut, and the status arrives in trailers.
func TestGRPCServerStreamLongLived(t *testing.T) {
	be, _ := startGRPC(t, &testService{})
	p := startProxy(t, be)
	c := dialGRPC(t, p.addr)
	var params []*testgrpc.ResponseParameters
	for range 15 {
		params = append(params, &testgrpc.ResponseParameters{Size: 100, IntervalUs: 100_000})
	}
	start := time.Now()
	stream, err := c.StreamingOutputCall(ctxT(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d messages: %v", n, err)
		}
		if n == 0 && time.Since(start) > time.Second {
			t.Fatalf("first message took %v: the stream is being buffered", time.Since(start))
		}
		if len(m.GetPayload().GetBody()) != 100 {
			t.Fatalf("message %d: %d bytes", n, len(m.GetPayload().GetBody()))
		}
		n++
	}
	if n != 15 {
		t.Fatalf("got %d messages, want 15", n)
	}
}

// Bidi streaming in lock step: each message must come back before the next
// is sent, which only works if nothing is buffered either way.
func TestGRPCBidiPingPong(t *testing.T) {
	be, _ := startGRPC(t, &testService{})
	p := startProxy(t, be)
	c := dialGRPC(t, p.addr)
	stream, err := c.FullDuplexCall(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		body := []byte(strconv.Itoa(i))
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil || !bytes.Equal(m.GetPayload().GetBody(), body) {
			t.Fatalf("echo %d: %v %v", i, m, err)
		}
	}
	stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Aborted), Message: "bye"}})
	if _, err := stream.Recv(); status.Code(err) != codes.Aborted {
		t.Fatalf("bidi status: %v, want Aborted", err)
	}
}

// A client that cancels resets its stream; the proxy resets the upstream
// stream, and the server sees its context cancelled.
func TestGRPCCancelPropagates(t *testing.T) {
	svc := &testService{streamDone: make(chan error, 1)}
	be, _ := startGRPC(t, svc)
	p := startProxy(t, be)
	c := dialGRPC(t, p.addr)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{
		{Size: 10}, {Size: 10, IntervalUs: 30_000_000},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-svc.streamDone:
		if status.Code(err) != codes.Canceled && err != context.Canceled {
			t.Fatalf("server stream ended with %v, want cancelled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server never saw the client's cancel")
	}
}

// The upstream resets a stream mid-body: the client's stream is reset too
// (not ended cleanly), and the response counts as a failure.
func TestUpstreamResetPropagates(t *testing.T) {
	be := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		time.Sleep(50 * time.Millisecond)
		panic(http.ErrAbortHandler) // RST_STREAM
	}))
	p := startProxy(t, be)
	resp, err := h2cClient(p.addr).Get("http://reset.test/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("body read to a clean end (%q) although upstream reset the stream", body)
	}
	if string(body) != "partial" {
		t.Fatalf("got %q before the reset, want %q", body, "partial")
	}
	if v := p.sample(t, "response_total", map[string]string{"authority": "reset.test", "classification": "failure"}); v != 1 {
		t.Fatalf("reset stream counted %v times as a failure, want 1", v)
	}
}

// GOAWAY from upstream (graceful stop) lets the stream in flight finish;
// GOAWAY from the proxy on drain does the same for its clients.
func TestGoAwayBothWays(t *testing.T) {
	be, gs := startGRPC(t, &testService{})
	p := startProxy(t, be)
	c := dialGRPC(t, p.addr)
	params := []*testgrpc.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 300_000}, {Size: 1, IntervalUs: 300_000}}
	stream, err := c.StreamingOutputCall(ctxT(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }() // GOAWAY to the proxy
	shut := make(chan error, 1)
	go func() { // GOAWAY to the client
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- p.srv.Shutdown(ctx)
	}()
	for i := 1; i < len(params); i++ {
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("message %d after GOAWAY: %v", i, err)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v, want clean EOF", err)
	}
	<-stopped
	if err := <-shut; err != nil {
		t.Fatalf("proxy drain: %v", err)
	}
}

func startH2C(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	s := &http.Server{Handler: h, Protocols: &p}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

func h2cClient(addr string) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols: &p,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
	}}
}

// h2c prior knowledge with a streamed body each way and trailers.
func TestH2CBodiesAndTrailers(t *testing.T) {
	be := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Len", strconv.FormatInt(n, 10))
		w.Write(bytes.Repeat([]byte{'r'}, 5<<20))
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
	}))
	p := startProxy(t, be)
	payload := bytes.Repeat([]byte("conduit!"), 1<<20)
	resp, err := h2cClient(p.addr).Post("http://bodies.test/", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(got) != 5<<20 {
		t.Fatalf("response body %d bytes, %v", len(got), err)
	}
	if resp.ProtoMajor != 2 || resp.Header.Get("X-Len") != strconv.Itoa(len(payload)) {
		t.Fatalf("proto %d, upstream got %s bytes", resp.ProtoMajor, resp.Header.Get("X-Len"))
	}
	if want := fmt.Sprintf("%x", sha256.Sum256(payload)); resp.Trailer.Get("X-Sum") != want {
		t.Fatalf("trailer X-Sum %q, want %q", resp.Trailer.Get("X-Sum"), want)
	}
}

func TestH2UpstreamRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p := startProxy(t, addr)
	resp, err := h2cClient(p.addr).Get("http://gone.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || resp.Header.Get(contract.ProxyErrorHeader) != "connection refused" {
		t.Fatalf("got %d %q, want 502 connection refused", resp.StatusCode, resp.Header.Get(contract.ProxyErrorHeader))
	}
	c := dialGRPC(t, p.addr)
	if _, err := c.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC through a refused upstream: %v, want Unavailable", err)
	}
}
