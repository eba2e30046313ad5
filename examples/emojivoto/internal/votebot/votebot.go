// Package votebot drives the web front end like a crowd of voters: at a
// steady rate it votes for a random emoji, sometimes the doughnut.
package votebot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// Bot votes through the web front end at base URL.
type Bot struct {
	Base   string  // e.g. http://web-svc:80
	Rate   float64 // votes per second
	Client *http.Client
	Log    *slog.Logger
	Rand   *rand.Rand
}

// Run votes until ctx ends.
func (b *Bot) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.Rate))
	defer tick.Stop()
	var shortcodes []string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if len(shortcodes) == 0 {
			var err error
			if shortcodes, err = b.list(ctx); err != nil {
				b.Log.Warn("listing emojis", "err", err)
				continue
			}
		}
		choice := shortcodes[b.Rand.IntN(len(shortcodes))]
		if b.Rand.IntN(10) == 0 {
			choice = ":doughnut:" // a crowd favourite, whose votes always fail
		}
		if err := b.vote(ctx, choice); err != nil {
			b.Log.Info("vote failed", "choice", choice, "err", err)
		}
	}
}

func (b *Bot) list(ctx context.Context) ([]string, error) {
	body, err := b.get(ctx, "/api/list")
	if err != nil {
		return nil, err
	}
	var emojis []struct {
		Shortcode string `json:"shortcode"`
	}
	if err := json.Unmarshal(body, &emojis); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range emojis {
		out = append(out, e.Shortcode)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no emojis listed")
	}
	return out, nil
}

func (b *Bot) vote(ctx context.Context, choice string) error {
	_, err := b.get(ctx, "/api/vote?choice="+url.QueryEscape(choice))
	return err
}

func (b *Bot) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.Base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}
