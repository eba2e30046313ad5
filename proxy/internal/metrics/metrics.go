// Package metrics holds the proxy's Prometheus metrics: request, response
// and latency per authority, and TCP connection counts and bytes.
//
// Updating a metric on the request path must cost a few atomic adds, not a
// label lookup: callers fetch a *Route or *TCP once (cached here by label
// values) and keep it, and routes cache their *Response per status.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Workload names the pod the proxy runs in; its fields become constant
// labels on every metric so a plain scrape needs no relabeling.
type Workload struct {
	Namespace string
	Pod       string
	Kind      string // lower-case, one of contract.WorkloadKinds
	Name      string
}

// OtherAuthority is the authority label value that absorbs authorities
// beyond the cardinality cap.
const OtherAuthority = "other"

// DefaultMaxAuthorities caps distinct authority label values per direction.
const DefaultMaxAuthorities = 100

type config struct {
	maxAuthorities int
	runtime        bool
}

// Option configures New.
type Option func(*config)

// WithMaxAuthorities sets the cap on distinct authority values per
// direction; requests for further authorities are counted under
// OtherAuthority.
func WithMaxAuthorities(n int) Option { return func(c *config) { c.maxAuthorities = n } }

// WithRuntimeMetrics adds the Go runtime and process collectors.
func WithRuntimeMetrics() Option { return func(c *config) { c.runtime = true } }

// Metrics is the proxy's metric set on its own registry.
type Metrics struct {
	reg            *prometheus.Registry
	maxAuthorities int

	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	latency   *prometheus.HistogramVec

	tcpOpen, tcpClose, tcpRead, tcpWrite *prometheus.CounterVec
	tcpConns                             *prometheus.GaugeVec

	h2Abuse *prometheus.CounterVec

	mu     sync.Mutex
	routes map[routeKey]*Route
	counts map[routeDir]int
	tcp    map[tcpKey]*TCP

	shed *prometheus.CounterVec // see shed.go
}

type routeDir struct {
	direction string
	tls       bool
}

type routeKey struct {
	routeDir
	authority string
}

type tcpKey = routeDir

// New returns metrics registered on a new private registry.
func New(w Workload, opts ...Option) *Metrics {
	cfg := config{maxAuthorities: DefaultMaxAuthorities}
	for _, o := range opts {
		o(&cfg)
	}
	constLabels := prometheus.Labels{}
	if w.Namespace != "" {
		constLabels[contract.LabelNamespace] = w.Namespace
	}
	if w.Pod != "" {
		constLabels[contract.LabelPod] = w.Pod
	}
	if w.Kind != "" && w.Name != "" {
		constLabels[w.Kind] = w.Name
	}
	route := []string{contract.LabelDirection, contract.LabelAuthority, contract.LabelTLS}
	resp := append(route[:len(route):len(route)], contract.LabelStatusCode, contract.LabelClassification, contract.LabelGRPCStatusCode)
	tcp := []string{contract.LabelDirection, contract.LabelTLS}
	m := &Metrics{
		reg:            prometheus.NewRegistry(),
		maxAuthorities: cfg.maxAuthorities,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: contract.MetricRequestTotal, Help: "HTTP requests received.", ConstLabels: constLabels,
		}, route),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: contract.MetricResponseTotal, Help: "HTTP responses sent.", ConstLabels: constLabels,
		}, resp),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: contract.MetricResponseLatencyMs, Help: "Time from request to response headers, in milliseconds.",
			Buckets: contract.ResponseLatencyBucketsMs, ConstLabels: constLabels,
		}, resp),
		tcpOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: contract.MetricTCPOpenTotal, Help: "TCP connections accepted.", ConstLabels: constLabels,
		}, tcp),
		tcpClose: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: contract.MetricTCPCloseTotal, Help: "TCP connections closed.", ConstLabels: constLabels,
		}, tcp),
		tcpConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: contract.MetricTCPOpenConnections, Help: "TCP connections open.", ConstLabels: constLabels,
		}, tcp),
		tcpRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: contract.MetricTCPReadBytesTotal, Help: "Bytes read from accepted connections.", ConstLabels: constLabels,
		}, tcp),
		tcpWrite: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: contract.MetricTCPWriteBytesTotal, Help: "Bytes written to accepted connections.", ConstLabels: constLabels,
		}, tcp),
		h2Abuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: contract.MetricHTTP2AbuseTotal, Help: "HTTP/2 connections closed for abuse, by reason.", ConstLabels: constLabels,
		}, []string{contract.LabelDirection, contract.LabelReason}),
		routes: map[routeKey]*Route{},
		counts: map[routeDir]int{},
		tcp:    map[tcpKey]*TCP{},
	}
	m.reg.MustRegister(m.requests, m.responses, m.latency, m.tcpOpen, m.tcpClose, m.tcpConns, m.tcpRead, m.tcpWrite)
	m.registerShed(constLabels)
	m.reg.MustRegister(m.h2Abuse)
	if cfg.runtime {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry is the private registry holding the metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func tlsLabel(tls bool) string {
	if tls {
		return "true"
	}
	return "false"
}

// Route returns the request metrics for an authority. The lookup with a
// []byte converted in the map index does not allocate.
func (m *Metrics) Route(direction string, authority []byte, tls bool) *Route {
	dir := routeDir{direction, tls}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.routes[routeKey{dir, string(authority)}]; ok {
		return r
	}
	auth := string(authority)
	if !utf8.ValidString(auth) {
		// Prometheus refuses a label value that is not UTF-8, with a panic.
		auth = strings.ToValidUTF8(auth, "\uFFFD")
		if r, ok := m.routes[routeKey{dir, auth}]; ok {
			return r
		}
	}
	if m.counts[dir] >= m.maxAuthorities {
		auth = OtherAuthority
		if r, ok := m.routes[routeKey{dir, auth}]; ok {
			return r
		}
	}
	r := &Route{
		m:         m,
		labels:    [3]string{direction, auth, tlsLabel(tls)},
		requests:  m.requests.WithLabelValues(direction, auth, tlsLabel(tls)),
		responses: map[respKey]*Response{},
	}
	m.routes[routeKey{dir, auth}] = r
	m.counts[dir]++
	return r
}

// RouteString is Route for an authority held as a string.
func (m *Metrics) RouteString(direction, authority string, tls bool) *Route {
	dir := routeDir{direction, tls}
	m.mu.Lock()
	r, ok := m.routes[routeKey{dir, authority}]
	m.mu.Unlock()
	if ok {
		return r
	}
	return m.Route(direction, []byte(authority), tls)
}

// Route counts requests and responses for one direction and authority.
type Route struct {
	m        *Metrics
	labels   [3]string
	requests prometheus.Counter

	mu        sync.Mutex
	responses map[respKey]*Response
}

type respKey struct {
	status, grpc int
	failed       bool
}

// Authority is the label value this route counts under (OtherAuthority
// past the cap).
func (r *Route) Authority() string { return r.labels[1] }

// Request counts one request.
func (r *Route) Request() { r.requests.Inc() }

// NoGRPCStatus marks a response without a grpc-status.
const NoGRPCStatus = -1

// NoStatus is the status of a request that failed before any response
// status arrived and for which the proxy answered none either (an HTTP/2
// stream the server reset): its status_code label is empty.
const NoStatus = 0

// Classify is the response classification: a grpc-status, when present,
// decides (0 is success); otherwise a 5xx status is a failure.
func Classify(status, grpcStatus int) string {
	if grpcStatus != NoGRPCStatus {
		if grpcStatus == 0 {
			return contract.ClassificationSuccess
		}
		return contract.ClassificationFailure
	}
	if status >= 500 {
		return contract.ClassificationFailure
	}
	return contract.ClassificationSuccess
}

// Response returns the response metrics for a status and grpc-status
// (NoGRPCStatus when absent).
func (r *Route) Response(status, grpcStatus int) *Response {
	return r.response(respKey{status, grpcStatus, false})
}

// Failed returns the metrics for responses that began with status but
// then broke off (the upstream reset the stream or went away): they are
// failures whatever the status said.
func (r *Route) Failed(status int) *Response {
	return r.response(respKey{status, NoGRPCStatus, true})
}

func (r *Route) response(k respKey) *Response {
	status, grpcStatus := k.status, k.grpc
	r.mu.Lock()
	defer r.mu.Unlock()
	if x, ok := r.responses[k]; ok {
		return x
	}
	grpc := ""
	if grpcStatus != NoGRPCStatus {
		grpc = strconv.Itoa(grpcStatus)
	}
	class := Classify(status, grpcStatus)
	if k.failed {
		class = contract.ClassificationFailure
	}
	code := ""
	if status != NoStatus {
		code = strconv.Itoa(status)
	}
	lv := []string{r.labels[0], r.labels[1], r.labels[2], code, class, grpc}
	x := &Response{
		total:   r.m.responses.WithLabelValues(lv...),
		latency: r.m.latency.WithLabelValues(lv...),
	}
	r.responses[k] = x
	return x
}

// Response counts responses of one status and records their latency.
type Response struct {
	total   prometheus.Counter
	latency prometheus.Observer
}

// Observe counts one response whose headers came latency after the request.
func (x *Response) Observe(latency time.Duration) {
	x.total.Inc()
	x.latency.Observe(float64(latency) / float64(time.Millisecond))
}

// HTTP2Abuse counts an HTTP/2 connection closed for abuse.
func (m *Metrics) HTTP2Abuse(direction, reason string) {
	m.h2Abuse.WithLabelValues(direction, reason).Inc()
}

// TCP returns the connection metrics for a direction.
func (m *Metrics) TCP(direction string, tls bool) *TCP {
	k := tcpKey{direction, tls}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.tcp[k]; ok {
		return t
	}
	lv := []string{direction, tlsLabel(tls)}
	t := &TCP{
		open:  m.tcpOpen.WithLabelValues(lv...),
		close: m.tcpClose.WithLabelValues(lv...),
		conns: m.tcpConns.WithLabelValues(lv...),
		read:  m.tcpRead.WithLabelValues(lv...),
		write: m.tcpWrite.WithLabelValues(lv...),
	}
	m.tcp[k] = t
	return t
}

// TCP counts accepted connections of one direction.
type TCP struct {
	open, close, read, write prometheus.Counter
	conns                    prometheus.Gauge
}

// Opened counts a new connection.
func (t *TCP) Opened() {
	t.open.Inc()
	t.conns.Inc()
}

// Transferred adds bytes read from and written to an accepted connection.
func (t *TCP) Transferred(read, written int64) {
	if read > 0 {
		t.read.Add(float64(read))
	}
	if written > 0 {
		t.write.Add(float64(written))
	}
}

// Closed counts a closed connection.
func (t *TCP) Closed() {
	t.close.Inc()
	t.conns.Dec()
}
