// Command voting serves emojivoto.v1.VotingService on $GRPC_PORT (8080).
package main

import (
	"google.golang.org/grpc"

	"github.com/conduitmesh/conduit/examples/emojivoto/internal/app"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/voting"
)

func main() {
	log := app.Logger("voting")
	ctx, stop := app.SignalContext()
	defer stop()
	s := grpc.NewServer()
	voting.Register(s, voting.NewPoll())
	addr := ":" + app.Env("GRPC_PORT", "8080")
	log.Info("serving", "addr", addr)
	app.Exit(log, app.ServeGRPC(ctx, addr, s))
}
