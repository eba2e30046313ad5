// Package voting is the voting service: it counts votes per emoji, one gRPC
// method per emoji. Voting for the doughnut always fails, so the service's
// success rate stays below 100% and the mesh has a failure to show.
package voting

import (
	"context"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/conduitmesh/conduit/examples/emojivoto/gen/emojivotov1"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/emoji"
)

// BrokenShortcode is the emoji whose votes always fail.
const BrokenShortcode = ":doughnut:"

// Poll counts votes. It is safe for concurrent use.
type Poll struct {
	mu    sync.Mutex
	votes map[string]int32
}

// NewPoll returns a poll with no votes.
func NewPoll() *Poll { return &Poll{votes: map[string]int32{}} }

// Vote records a vote for the emoji with this shortcode.
func (p *Poll) Vote(shortcode string) error {
	if shortcode == BrokenShortcode {
		return status.Errorf(codes.Unknown, "ERROR: voting for %s is broken", shortcode)
	}
	if _, ok := emoji.ByShortcode(shortcode); !ok {
		return status.Errorf(codes.NotFound, "no emoji %q", shortcode)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.votes[shortcode]++
	return nil
}

// Results are the counts, most votes first, ties by shortcode.
func (p *Poll) Results() []*pb.VotingResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rs []*pb.VotingResult
	for code, n := range p.votes {
		rs = append(rs, &pb.VotingResult{Shortcode: code, Votes: n})
	}
	slices.SortFunc(rs, func(a, b *pb.VotingResult) int {
		if a.Votes != b.Votes {
			return int(b.Votes - a.Votes)
		}
		return strings.Compare(a.Shortcode, b.Shortcode)
	})
	return rs
}

// Register serves the poll as emojivoto.v1.VotingService. The generated
// service has one Vote<Name> method per emoji; they are all served by one
// handler that reads the emoji from the method name.
func Register(s *grpc.Server, p *Poll) {
	desc := grpc.ServiceDesc{
		ServiceName: pb.VotingService_ServiceDesc.ServiceName,
		HandlerType: (*any)(nil),
		Metadata:    pb.VotingService_ServiceDesc.Metadata,
	}
	for _, m := range pb.VotingService_ServiceDesc.Methods {
		if m.MethodName == "Results" {
			desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: m.MethodName, Handler: resultsHandler})
			continue
		}
		shortcode := shortcodeOf(strings.TrimPrefix(m.MethodName, "Vote"))
		fullMethod := "/" + desc.ServiceName + "/" + m.MethodName
		desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: m.MethodName, Handler: voteHandler(fullMethod, shortcode)})
	}
	s.RegisterService(&desc, p)
}

func shortcodeOf(name string) string {
	for _, e := range emoji.All {
		if e.Name == name {
			return e.Shortcode
		}
	}
	return ""
}

func voteHandler(fullMethod, shortcode string) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := new(pb.VoteRequest)
		if err := dec(req); err != nil {
			return nil, err
		}
		handle := func(context.Context, any) (any, error) {
			if err := srv.(*Poll).Vote(shortcode); err != nil {
				return nil, err
			}
			return &pb.VoteResponse{}, nil
		}
		if interceptor == nil {
			return handle(ctx, req)
		}
		return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}, handle)
	}
}

func resultsHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	req := new(pb.ResultsRequest)
	if err := dec(req); err != nil {
		return nil, err
	}
	handle := func(context.Context, any) (any, error) {
		return &pb.ResultsResponse{Results: srv.(*Poll).Results()}, nil
	}
	if interceptor == nil {
		return handle(ctx, req)
	}
	return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + pb.VotingService_ServiceDesc.ServiceName + "/Results"}, handle)
}

// Client votes through a VotingService client by shortcode.
type Client struct {
	Conn grpc.ClientConnInterface
}

// Vote calls VotingService/Vote<Name> for the emoji.
func (c Client) Vote(ctx context.Context, shortcode string) error {
	e, ok := emoji.ByShortcode(shortcode)
	if !ok {
		return status.Errorf(codes.NotFound, "no emoji %q", shortcode)
	}
	method := "/" + pb.VotingService_ServiceDesc.ServiceName + "/Vote" + e.Name
	return c.Conn.Invoke(ctx, method, &pb.VoteRequest{}, &pb.VoteResponse{})
}

// Results calls VotingService/Results.
func (c Client) Results(ctx context.Context) ([]*pb.VotingResult, error) {
	resp, err := pb.NewVotingServiceClient(c.Conn).Results(ctx, &pb.ResultsRequest{})
	return resp.GetResults(), err
}
