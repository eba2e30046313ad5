// Command web serves emojivoto's page and API on $WEB_PORT (8080), calling
// $EMOJISVC_HOST and $VOTINGSVC_HOST over gRPC.
package main

import (
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/app"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/web"
)

func main() {
	log := app.Logger("web")
	ctx, stop := app.SignalContext()
	defer stop()
	emojiConn, err := app.Dial(app.Env("EMOJISVC_HOST", "emoji-svc:8080"))
	if err != nil {
		app.Exit(log, err)
	}
	votingConn, err := app.Dial(app.Env("VOTINGSVC_HOST", "voting-svc:8080"))
	if err != nil {
		app.Exit(log, err)
	}
	addr := ":" + app.Env("WEB_PORT", "8080")
	log.Info("serving", "addr", addr)
	app.Exit(log, app.ServeHTTP(ctx, addr, web.New(emojiConn, votingConn, log)))
}
