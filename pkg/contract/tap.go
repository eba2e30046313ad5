package contract

import "time"

// Tap: the proxy's live request stream.
//
// The proxy serves TapPath on ProxyTapPort on all of the pod's addresses, so
// the API server's pods/proxy subresource reaches it:
//
//	GET /api/v1/namespaces/NS/pods/POD:4190/proxy/tap?method=POST&path=/api&max_rps=50
//
// The answer is 200 with Content-Type TapContentType: newline-delimited JSON,
// one TapEvent per line, flushed after every line, until the client goes
// away. Bad parameters get 400 with a plain-text body naming the parameter
// and value. A proxy that already streams to its maximum of subscribers
// answers 503 with a Retry-After and a plain-text reason. Events carry no
// bodies, no header values other than the pseudo-headers below, and no
// query values unless asked (TapParamQuery). With no subscriber the proxy
// does no tap work.
const (
	TapPath        = "/tap"
	TapContentType = "application/x-ndjson"

	// TapParamMethod keeps only requests with this method (exact, e.g. POST).
	TapParamMethod = "method"
	// TapParamAuthority keeps only requests with this :authority (exact,
	// including the port when the request names one).
	TapParamAuthority = "authority"
	// TapParamPathPrefix keeps only requests whose :path starts with this.
	TapParamPathPrefix = "path"
	// TapParamMaxRPS is the most requests per second this subscriber is
	// shown, a positive integer; TapDefaultMaxRPS when absent. The limit
	// counts requests, not events: a request is shown whole (req, rsp, end)
	// or not at all, so lines always pair up.
	TapParamMaxRPS = "max_rps"
	// TapParamQuery "1" shows the values in paths' query strings (often
	// tokens); by default each is replaced by "<redacted>", keeping the
	// keys ("/cb?code=<redacted>&state=<redacted>"), and the path filter
	// is matched against the redacted path.
	TapParamQuery = "query"

	TapDefaultMaxRPS = 100
)

// TapEventType is the kind of a TapEvent.
type TapEventType string

const (
	// TapRequest: the request's headers were read (request start).
	TapRequest TapEventType = "req"
	// TapResponse: the response's headers were sent (response start).
	TapResponse TapEventType = "rsp"
	// TapEnd: the response ended (last byte, trailers, or a reset).
	TapEnd TapEventType = "end"
	// TapDropped: requests matching the filters were not shown since the
	// previous notice, because of the rate limit or because this subscriber
	// read too slowly. Sent before the next event that is shown, and at
	// least once a second while requests are being dropped.
	TapDropped TapEventType = "dropped"
)

// TapEvent is one line of the tap stream. Which fields are set depends on
// Type; fields not set are omitted from the JSON.
type TapEvent struct {
	Type TapEventType `json:"type"`
	// Time is when the event happened, in the proxy's clock.
	Time time.Time `json:"ts"`

	// ID is "connection:stream", e.g. "0:809": the proxy's connection
	// counter and the request's number on that connection (the HTTP/2
	// stream id, or the request's sequence number on an HTTP/1 connection).
	// Unique per proxy process; the three events of a request share it.
	ID string `json:"id,omitempty"`
	// Direction is DirectionInbound or DirectionOutbound.
	Direction string `json:"direction,omitempty"`
	// Source and Destination are "ip:port" of the original client and
	// server, as the application sees them (not the proxy's own sockets).
	Source      string `json:"src,omitempty"`
	Destination string `json:"dst,omitempty"`
	// TLS is whether the connection to the peer proxy is mutually
	// authenticated TLS.
	TLS bool `json:"tls,omitempty"`

	// Request start (req).
	Method    string `json:"method,omitempty"`
	Scheme    string `json:"scheme,omitempty"`
	Authority string `json:"authority,omitempty"`
	Path      string `json:"path,omitempty"`

	// Response start (rsp): the HTTP status, and the time from the request
	// start to the response's headers (latency to first byte).
	Status  int           `json:"status,omitempty"`
	Latency time.Duration `json:"latency_ns,omitempty"`

	// Response end (end): the time from the response's headers to its end,
	// the response body's length in bytes, the grpc-status trailer (a gRPC
	// code number; absent when the response had none), and, when the
	// stream did not end cleanly, why (e.g. "reset: CANCEL").
	Duration      time.Duration `json:"duration_ns,omitempty"`
	ResponseBytes int64         `json:"response_bytes,omitempty"`
	GRPCStatus    *uint32       `json:"grpc_status,omitempty"`
	Error         string        `json:"error,omitempty"`

	// Dropped notice (dropped): how many requests were not shown since the
	// previous notice.
	Dropped uint64 `json:"dropped,omitempty"`
}
