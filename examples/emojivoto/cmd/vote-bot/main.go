// Command vote-bot votes through the web front end at $WEB_HOST
// (web-svc:80), $VOTE_RATE times a second (2).
package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/conduitmesh/conduit/examples/emojivoto/internal/app"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/votebot"
)

func main() {
	log := app.Logger("vote-bot")
	ctx, stop := app.SignalContext()
	defer stop()
	rate, err := strconv.ParseFloat(app.Env("VOTE_RATE", "2"), 64)
	if err != nil || rate <= 0 {
		app.Exit(log, fmt.Errorf("VOTE_RATE=%q: want a positive number of votes per second", app.Env("VOTE_RATE", "")))
	}
	bot := &votebot.Bot{
		Base:   "http://" + app.Env("WEB_HOST", "web-svc:80"),
		Rate:   rate,
		Client: &http.Client{Timeout: 5 * time.Second},
		Log:    log,
		Rand:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0)),
	}
	log.Info("voting", "web", bot.Base, "rate", rate)
	app.Exit(log, bot.Run(ctx))
}
