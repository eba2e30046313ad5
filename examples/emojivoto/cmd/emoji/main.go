// Command emoji serves emojivoto.v1.EmojiService on $GRPC_PORT (8080).
package main

import (
	"google.golang.org/grpc"

	pb "github.com/conduitmesh/conduit/examples/emojivoto/gen/emojivotov1"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/app"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/emoji"
)

func main() {
	log := app.Logger("emoji")
	ctx, stop := app.SignalContext()
	defer stop()
	s := grpc.NewServer()
	pb.RegisterEmojiServiceServer(s, emoji.Server{})
	addr := ":" + app.Env("GRPC_PORT", "8080")
	log.Info("serving", "addr", addr)
	app.Exit(log, app.ServeGRPC(ctx, addr, s))
}
