package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// testGRPC calls the gRPC application from the client namespace through
// both proxies: unary, server-streaming (long-lived), bidi and an error.
func testGRPC(t *testing.T, m *testMesh) {
	before := m.snapshot(t)
	conn, err := grpc.NewClient(authority(grpcPort),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return m.Client.Dial(ctx, "tcp4", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		for range 3 {
			resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 4096})
			if err != nil {
				t.Fatalf("UnaryCall: %v", err)
			}
			if n := len(resp.GetPayload().GetBody()); n != 4096 {
				t.Fatalf("payload of %d bytes, want 4096", n)
			}
		}
	})

	t.Run("server streaming", func(t *testing.T) {
		drainStreamEnds(m)
		// Eight messages 250 ms apart: a stream open for two seconds.
		req := &testpb.StreamingOutputCallRequest{}
		for i := range 8 {
			req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{
				Size: int32(100 + i), IntervalUs: 250_000,
			})
		}
		stream, err := client.StreamingOutputCall(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			resp, err := stream.Recv()
			if err == io.EOF {
				if i != 8 {
					t.Fatalf("stream ended after %d messages, want 8", i)
				}
				break
			}
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if n := len(resp.GetPayload().GetBody()); n != 100+i {
				t.Fatalf("message %d has %d bytes, want %d", i, n, 100+i)
			}
		}
		if err := <-m.grpc.StreamEnds(); err != nil {
			t.Errorf("server stream ended with %v", err)
		}
	})

	t.Run("cancel mid-stream", func(t *testing.T) {
		drainStreamEnds(m)
		sctx, scancel := context.WithCancel(ctx)
		req := &testpb.StreamingOutputCallRequest{}
		for range 20 {
			req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: 10, IntervalUs: 200_000})
		}
		stream, err := client.StreamingOutputCall(sctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first message: %v", err)
		}
		scancel()
		// The cancel travels as RST_STREAM through both proxies: the server
		// stops long before its four seconds of messages.
		select {
		case err := <-m.grpc.StreamEnds():
			if status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
				t.Errorf("server stream ended with %v, want Canceled", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("the server did not see the client's cancel")
		}
	})

	t.Run("bidi streaming", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			size := int32(1 + i*1000)
			if err := stream.Send(&testpb.StreamingOutputCallRequest{
				ResponseParameters: []*testpb.ResponseParameters{{Size: size}},
			}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv %d: %v", i, err)
			}
			if n := int32(len(resp.GetPayload().GetBody())); n != size {
				t.Fatalf("pong %d has %d bytes, want %d", i, n, size)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("after CloseSend: %v, want EOF", err)
		}
	})

	t.Run("status error", func(t *testing.T) {
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{
			ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such widget"},
		})
		st, ok := status.FromError(err)
		if !ok || st.Code() != codes.NotFound || st.Message() != "no such widget" {
			t.Fatalf("error = %v, want NotFound \"no such widget\"", err)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, side := range []struct {
			p      *meshtest.Proxy
			before meshtest.Metrics
			sel    meshtest.Labels
		}{
			{m.ClientProxy, before.client, with(outbound, contract.LabelAuthority, authority(grpcPort))},
			{m.ServerProxy, before.server, with(inbound, contract.LabelAuthority, authority(grpcPort))},
		} {
			// 3 unary + 1 server stream + 1 bidi succeed; 1 fails with
			// grpc-status 5 under HTTP status 200; 1 is cancelled.
			expectDelta(t, side.p, side.before, contract.MetricRequestTotal, side.sel, 7)
			expectDelta(t, side.p, side.before, contract.MetricResponseTotal, with(side.sel,
				contract.LabelGRPCStatusCode, "0", contract.LabelClassification, contract.ClassificationSuccess), 5)
			expectDelta(t, side.p, side.before, contract.MetricResponseTotal, with(side.sel,
				contract.LabelStatusCode, "200",
				contract.LabelGRPCStatusCode, fmt.Sprint(int(codes.NotFound)), contract.LabelClassification, contract.ClassificationFailure), 1)
		}
	})
}

func drainStreamEnds(m *testMesh) {
	for {
		select {
		case <-m.grpc.StreamEnds():
		default:
			return
		}
	}
}
