package emojivoto_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/conduitmesh/conduit/examples/emojivoto/gen/emojivotov1"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/app"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/emoji"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/votebot"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/voting"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/web"
)

// serve starts a gRPC server on loopback and returns a connection to it.
func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := app.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// stack runs emoji, voting and web on loopback, as the demo wires them.
func stack(t *testing.T) (*httptest.Server, *voting.Poll) {
	poll := voting.NewPoll()
	emojiConn := serve(t, func(s *grpc.Server) { pb.RegisterEmojiServiceServer(s, emoji.Server{}) })
	votingConn := serve(t, func(s *grpc.Server) { voting.Register(s, poll) })
	srv := httptest.NewServer(web.New(emojiConn, votingConn, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return srv, poll
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestVotingThroughTheWebFrontEnd(t *testing.T) {
	srv, _ := stack(t)

	code, body := get(t, srv.URL+"/api/list")
	var list []web.EmojiJSON
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != len(emoji.All) {
		t.Fatalf("list: %d %s", code, body)
	}
	for range 2 {
		if code, body := get(t, srv.URL+"/api/vote?choice=:joy:"); code != 200 {
			t.Fatalf("vote :joy:: %d %s", code, body)
		}
	}
	if code, body := get(t, srv.URL+"/api/vote?choice=:rocket:"); code != 200 {
		t.Fatalf("vote :rocket:: %d %s", code, body)
	}
	if code, body := get(t, srv.URL+"/api/vote?choice=:doughnut:"); code != 500 || !strings.Contains(body, "broken") {
		t.Errorf("vote :doughnut: = %d %q, want a 500 from the broken vote", code, body)
	}
	if code, _ := get(t, srv.URL+"/api/vote?choice=:nope:"); code != 500 {
		t.Errorf("vote for an unknown emoji = %d, want 500", code)
	}
	if code, _ := get(t, srv.URL+"/api/vote"); code != 400 {
		t.Errorf("vote without a choice = %d, want 400", code)
	}

	code, body = get(t, srv.URL+"/api/leaderboard")
	var board []web.EmojiJSON
	if code != 200 || json.Unmarshal([]byte(body), &board) != nil {
		t.Fatalf("leaderboard: %d %s", code, body)
	}
	want := []web.EmojiJSON{{Unicode: "😂", Shortcode: ":joy:", Votes: 2}, {Unicode: "🚀", Shortcode: ":rocket:", Votes: 1}}
	if len(board) != 2 || board[0] != want[0] || board[1] != want[1] {
		t.Errorf("leaderboard = %+v, want %+v", board, want)
	}

	if code, body := get(t, srv.URL+"/"); code != 200 || !strings.Contains(body, ":doughnut:") {
		t.Errorf("page: %d", code)
	}
}

// TestVotingServiceMethods calls the generated per-emoji methods the way
// the mesh sees them: /emojivoto.v1.VotingService/VoteDoughnut fails.
func TestVotingServiceMethods(t *testing.T) {
	poll := voting.NewPoll()
	conn := serve(t, func(s *grpc.Server) { voting.Register(s, poll) })
	client := pb.NewVotingServiceClient(conn)
	ctx := context.Background()
	if _, err := client.VoteTaco(ctx, &pb.VoteRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := client.VoteDoughnut(ctx, &pb.VoteRequest{})
	if status.Code(err) != codes.Unknown {
		t.Errorf("VoteDoughnut: %v, want code Unknown", err)
	}
	res, err := client.Results(ctx, &pb.ResultsRequest{})
	if err != nil || len(res.GetResults()) != 1 || res.GetResults()[0].GetShortcode() != ":taco:" {
		t.Errorf("results = %v, %v", res, err)
	}
}

func TestVoteBotVotes(t *testing.T) {
	srv, poll := stack(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	bot := &votebot.Bot{Base: srv.URL, Rate: 200, Client: srv.Client(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Rand: rand.New(rand.NewPCG(1, 2))}
	go func() { done <- bot.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for total(poll) < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := total(poll); n < 20 {
		t.Fatalf("the bot cast %d successful votes, want at least 20", n)
	}
	for _, r := range poll.Results() {
		if r.GetShortcode() == voting.BrokenShortcode {
			t.Errorf("a doughnut vote was counted")
		}
	}
}

func total(p *voting.Poll) int32 {
	var n int32
	for _, r := range p.Results() {
		n += r.GetVotes()
	}
	return n
}
