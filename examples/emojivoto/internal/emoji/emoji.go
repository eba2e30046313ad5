// Package emoji is the emoji service: the emojis one can vote for, served
// over gRPC.
package emoji

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/conduitmesh/conduit/examples/emojivoto/gen/emojivotov1"
)

// Emoji is one emoji of the poll. Name is the suffix of its voting method:
// VotingService/Vote<Name>.
type Emoji struct {
	Name, Unicode, Shortcode string
}

// All are the emojis of the poll, in display order.
var All = []Emoji{
	{"Poop", "💩", ":poop:"},
	{"Joy", "😂", ":joy:"},
	{"Sunglasses", "😎", ":sunglasses:"},
	{"Relaxed", "☺️", ":relaxed:"},
	{"Smirk", "😏", ":smirk:"},
	{"HeartEyes", "😍", ":heart_eyes:"},
	{"Laughing", "😆", ":laughing:"},
	{"Innocent", "😇", ":innocent:"},
	{"Thinking", "🤔", ":thinking:"},
	{"Scream", "😱", ":scream:"},
	{"Rage", "😡", ":rage:"},
	{"Sleeping", "😴", ":sleeping:"},
	{"Wink", "😉", ":wink:"},
	{"Ghost", "👻", ":ghost:"},
	{"Alien", "👽", ":alien:"},
	{"Robot", "🤖", ":robot:"},
	{"Fire", "🔥", ":fire:"},
	{"Rocket", "🚀", ":rocket:"},
	{"Doughnut", "🍩", ":doughnut:"},
	{"Pizza", "🍕", ":pizza:"},
	{"Taco", "🌮", ":taco:"},
	{"Champagne", "🍾", ":champagne:"},
	{"Trophy", "🏆", ":trophy:"},
	{"Unicorn", "🦄", ":unicorn:"},
	{"Rainbow", "🌈", ":rainbow:"},
	{"Star", "⭐", ":star:"},
	{"Sparkles", "✨", ":sparkles:"},
	{"Zap", "⚡", ":zap:"},
	{"Tada", "🎉", ":tada:"},
	{"Clap", "👏", ":clap:"},
}

// ByShortcode finds an emoji.
func ByShortcode(shortcode string) (Emoji, bool) {
	for _, e := range All {
		if e.Shortcode == shortcode {
			return e, true
		}
	}
	return Emoji{}, false
}

// Server implements emojivoto.v1.EmojiService.
type Server struct {
	pb.UnimplementedEmojiServiceServer
}

func (Server) ListAll(context.Context, *pb.ListAllEmojiRequest) (*pb.ListAllEmojiResponse, error) {
	resp := &pb.ListAllEmojiResponse{}
	for _, e := range All {
		resp.List = append(resp.List, &pb.Emoji{Unicode: e.Unicode, Shortcode: e.Shortcode})
	}
	return resp, nil
}

func (Server) FindByShortcode(_ context.Context, req *pb.FindByShortcodeRequest) (*pb.FindByShortcodeResponse, error) {
	e, ok := ByShortcode(req.GetShortcode())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no emoji %q", req.GetShortcode())
	}
	return &pb.FindByShortcodeResponse{Emoji: &pb.Emoji{Unicode: e.Unicode, Shortcode: e.Shortcode}}, nil
}
