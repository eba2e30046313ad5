// Package web is emojivoto's front end: a small page and a JSON API over
// the emoji and voting services.
//
//	GET /                      the page
//	GET /api/list              the emojis
//	GET /api/vote?choice=:x:   vote; 500 when the voting service fails
//	GET /api/leaderboard       the results, most votes first
package web

import (
	"context"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"

	pb "github.com/conduitmesh/conduit/examples/emojivoto/gen/emojivotov1"
	"github.com/conduitmesh/conduit/examples/emojivoto/internal/voting"
)

// Handler serves the page and the API.
type Handler struct {
	emoji  pb.EmojiServiceClient
	voting voting.Client
	log    *slog.Logger
	mux    *http.ServeMux
}

// New returns the front end over connections to the two services.
func New(emojiConn, votingConn grpc.ClientConnInterface, log *slog.Logger) *Handler {
	h := &Handler{emoji: pb.NewEmojiServiceClient(emojiConn), voting: voting.Client{Conn: votingConn}, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.page)
	h.mux.HandleFunc("GET /api/list", h.list)
	h.mux.HandleFunc("GET /api/vote", h.vote)
	h.mux.HandleFunc("GET /api/leaderboard", h.leaderboard)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// EmojiJSON is an emoji in the API.
type EmojiJSON struct {
	Unicode   string `json:"unicode"`
	Shortcode string `json:"shortcode"`
	Votes     int32  `json:"votes,omitempty"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	resp, err := h.emoji.ListAll(r.Context(), &pb.ListAllEmojiRequest{})
	if err != nil {
		h.fail(w, "listing emojis", err)
		return
	}
	out := make([]EmojiJSON, 0, len(resp.GetList()))
	for _, e := range resp.GetList() {
		out = append(out, EmojiJSON{Unicode: e.GetUnicode(), Shortcode: e.GetShortcode()})
	}
	writeJSON(w, out)
}

func (h *Handler) vote(w http.ResponseWriter, r *http.Request) {
	choice := r.URL.Query().Get("choice")
	if choice == "" {
		http.Error(w, "choice is required, e.g. /api/vote?choice=:joy:", http.StatusBadRequest)
		return
	}
	found, err := h.emoji.FindByShortcode(r.Context(), &pb.FindByShortcodeRequest{Shortcode: choice})
	if err != nil {
		h.fail(w, "finding "+choice, err)
		return
	}
	if err := h.voting.Vote(r.Context(), found.GetEmoji().GetShortcode()); err != nil {
		h.fail(w, "voting for "+choice, err)
		return
	}
	writeJSON(w, EmojiJSON{Unicode: found.GetEmoji().GetUnicode(), Shortcode: choice})
}

func (h *Handler) leaderboard(w http.ResponseWriter, r *http.Request) {
	results, err := h.voting.Results(r.Context())
	if err != nil {
		h.fail(w, "reading results", err)
		return
	}
	out := make([]EmojiJSON, 0, len(results))
	for _, res := range results {
		e, err := h.emoji.FindByShortcode(r.Context(), &pb.FindByShortcodeRequest{Shortcode: res.GetShortcode()})
		if err != nil {
			h.fail(w, "finding "+res.GetShortcode(), err)
			return
		}
		out = append(out, EmojiJSON{Unicode: e.GetEmoji().GetUnicode(), Shortcode: res.GetShortcode(), Votes: res.GetVotes()})
	}
	writeJSON(w, out)
}

func (h *Handler) fail(w http.ResponseWriter, what string, err error) {
	h.log.Warn("request failed", "what", what, "err", err)
	http.Error(w, what+": "+err.Error(), http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Emoji Vote</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}button{font-size:2em;margin:.2em;border:0;background:none;cursor:pointer}</style>
</head><body>
<h1>🗳 Emoji Vote</h1><p>Tap your favourite. <a href="/api/leaderboard">Leaderboard</a></p>
<div>{{range .}}<button title="{{.Shortcode}}" onclick="vote('{{.Shortcode}}')">{{.Unicode}}</button>{{end}}</div>
<p id="result"></p>
<script>
async function vote(choice) {
  const r = await fetch('/api/vote?choice=' + encodeURIComponent(choice));
  document.getElementById('result').textContent = r.ok ? 'You voted ' + choice : 'Voting failed: ' + await r.text();
}
</script></body></html>
`))

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	resp, err := h.emoji.ListAll(ctx, &pb.ListAllEmojiRequest{})
	if err != nil {
		h.fail(w, "listing emojis", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTemplate.Execute(w, resp.GetList())
}
