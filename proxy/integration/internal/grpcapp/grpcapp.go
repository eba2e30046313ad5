// Package grpcapp is the gRPC application the integration tests put behind
// the mesh: grpc-go's interop TestService with unary, server-streaming and
// bidi-streaming calls and a requested status error.
package grpcapp

import (
	"context"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// Server implements the calls the tests use.
type Server struct {
	testpb.UnimplementedTestServiceServer
	streamEnds chan error
}

// NewServer returns a grpc.Server with the TestService registered, and the
// service, whose StreamEnds reports how server streams ended.
func NewServer() (*grpc.Server, *Server) {
	svc := &Server{streamEnds: make(chan error, 64)}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, svc)
	return s, svc
}

// StreamEnds receives, for each StreamingOutputCall, nil when it sent
// everything or the error that cut it short (such as the client's cancel
// arriving as RST_STREAM).
func (s *Server) StreamEnds() <-chan error { return s.streamEnds }

// UnaryCall answers with a payload of the requested size, or with the
// requested status when ResponseStatus has a non-zero code.
func (*Server) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: payload(req.GetResponseSize())}, nil
}

// StreamingOutputCall sends one response per parameter, each after its
// interval, so a stream can stay open as long as the client asks.
func (s *Server) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) (err error) {
	defer func() {
		select {
		case s.streamEnds <- err:
		default:
		}
	}()
	for _, p := range req.GetResponseParameters() {
		if d := time.Duration(p.GetIntervalUs()) * time.Microsecond; d > 0 {
			select {
			case <-time.After(d):
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
	}
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

// FullDuplexCall answers each request as it arrives: ping-pong.
func (*Server) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if st := req.GetResponseStatus(); st.GetCode() != 0 {
			return status.Error(codes.Code(st.GetCode()), st.GetMessage())
		}
		for _, p := range req.GetResponseParameters() {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
				return err
			}
		}
	}
}

func payload(size int32) *testpb.Payload {
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i)
	}
	return &testpb.Payload{Body: body}
}
