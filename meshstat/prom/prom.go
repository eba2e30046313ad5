// Package prom queries a Prometheus server's HTTP API with GET requests
// only, so that it works through the Kubernetes API server's services/proxy
// subresource with nothing but the "get" verb.
package prom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/common/model"
)

// Client runs instant queries against one Prometheus.
type Client struct {
	base *url.URL
	hc   *http.Client
	hint string
}

// Option configures New.
type Option func(*Client)

// WithHTTPClient sets the client that carries the requests, e.g. one with
// the kubeconfig's credentials for the API server.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithHint adds advice to errors that say Prometheus is unreachable.
func WithHint(h string) Option { return func(c *Client) { c.hint = h } }

// New returns a client for the Prometheus whose HTTP API is under base
// (base + "/api/v1/query").
func New(base string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--prometheus-url %q: want http(s)://host[:port][/path]", base)
	}
	c := &Client{base: u, hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// URL is the Prometheus base URL, for messages.
func (c *Client) URL() string { return c.base.String() }

// Error is a failed query: Prometheus could not be reached, refused the
// request, or rejected the query.
type Error struct {
	URL         string
	Query       string
	Status      int    // HTTP status; 0 when there was no answer
	Message     string // what went wrong
	Unreachable bool
	hint        string
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Status == http.StatusForbidden:
		fmt.Fprintf(&b, "forbidden: you may not get the Prometheus API at %s: %s", e.URL, e.Message)
	case e.Unreachable:
		fmt.Fprintf(&b, "Prometheus unreachable at %s: %s", e.URL, e.Message)
	default:
		fmt.Fprintf(&b, "Prometheus at %s rejected query %s: %s", e.URL, e.Query, e.Message)
	}
	if e.hint != "" && (e.Unreachable || e.Status == http.StatusForbidden) {
		b.WriteString(": " + e.hint)
	}
	return b.String()
}

// response is the envelope of the Prometheus HTTP API.
type response struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

type vectorData struct {
	ResultType string       `json:"resultType"`
	Result     model.Vector `json:"result"`
}

// Query runs an instant query at the server's current time and returns
// its vector result.
func (c *Client) Query(ctx context.Context, query string) (model.Vector, error) {
	u := *c.base
	u.Path += "/api/v1/query"
	u.RawQuery = url.Values{"query": {query}}.Encode()
	fail := func(status int, unreachable bool, msg string) error {
		return &Error{URL: c.URL(), Query: query, Status: status, Message: msg, Unreachable: unreachable, hint: c.hint}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fail(0, true, err.Error())
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fail(0, true, err.Error())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fail(resp.StatusCode, true, "reading the answer: "+err.Error())
	}
	var r response
	if jerr := json.Unmarshal(body, &r); jerr != nil || (r.Status != "success" && r.Status != "error") {
		// Not Prometheus talking: the API server's proxy (no such
		// Service, no endpoints, forbidden) or something else entirely.
		return nil, fail(resp.StatusCode, resp.StatusCode != http.StatusForbidden, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, snippet(body)))
	}
	if r.Status != "success" {
		return nil, fail(resp.StatusCode, false, r.ErrorType+": "+r.Error)
	}
	var d vectorData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return nil, fail(resp.StatusCode, false, "decoding the result: "+err.Error())
	}
	if d.ResultType != model.ValVector.String() {
		return nil, fail(resp.StatusCode, false, "result type "+d.ResultType+", want vector")
	}
	return d.Result, nil
}

// snippet is the start of a body, on one line, for an error message; the
// API server answers in JSON (a Status object) with a "message".
func snippet(body []byte) string {
	var st struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return st.Message
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}
