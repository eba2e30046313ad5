package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		status, grpc int
		want         string
	}{
		{200, NoGRPCStatus, "success"},
		{404, NoGRPCStatus, "success"},
		{499, NoGRPCStatus, "success"},
		{500, NoGRPCStatus, "failure"},
		{503, NoGRPCStatus, "failure"},
		{200, 0, "success"},
		{200, 5, "failure"},  // grpc-status wins over HTTP 200
		{503, 0, "success"},  // and over a 5xx
		{200, 14, "failure"}, // UNAVAILABLE
	}
	for _, tt := range tests {
		if got := Classify(tt.status, tt.grpc); got != tt.want {
			t.Errorf("Classify(%d, %d) = %s, want %s", tt.status, tt.grpc, got, tt.want)
		}
	}
}

func TestLabelsAndCaching(t *testing.T) {
	m := New(Workload{Namespace: "shop", Pod: "web-7d9f", Kind: "deployment", Name: "web"})
	r := m.Route(contract.DirectionInbound, []byte("web.shop.svc:80"), false)
	if m.Route(contract.DirectionInbound, []byte("web.shop.svc:80"), false) != r {
		t.Fatal("the same label values must give the same cached route")
	}
	r.Request()
	resp := r.Response(503, NoGRPCStatus)
	if r.Response(503, NoGRPCStatus) != resp {
		t.Fatal("the same status must give the same cached response metrics")
	}
	resp.Observe(7 * time.Millisecond)
	r.Failed(200).Observe(time.Millisecond)

	want := `
# HELP request_total HTTP requests received.
# TYPE request_total counter
request_total{authority="web.shop.svc:80",deployment="web",direction="inbound",namespace="shop",pod="web-7d9f",tls="false"} 1
# HELP response_total HTTP responses sent.
# TYPE response_total counter
response_total{authority="web.shop.svc:80",classification="failure",deployment="web",direction="inbound",grpc_status_code="",namespace="shop",pod="web-7d9f",status_code="200",tls="false"} 1
response_total{authority="web.shop.svc:80",classification="failure",deployment="web",direction="inbound",grpc_status_code="",namespace="shop",pod="web-7d9f",status_code="503",tls="false"} 1
`
	if err := gatherAndCompare(m.Registry(), strings.NewReader(want), "request_total", "response_total"); err != nil {
		t.Fatal(err)
	}
	// The latency histogram has the contract's buckets, in milliseconds.
	fams, _ := m.Registry().Gather()
	for _, f := range fams {
		if f.GetName() != contract.MetricResponseLatencyMs {
			continue
		}
		for _, mm := range f.Metric {
			h := mm.GetHistogram()
			if len(h.Bucket) != len(contract.ResponseLatencyBucketsMs) {
				t.Fatalf("%d buckets, want %d", len(h.Bucket), len(contract.ResponseLatencyBucketsMs))
			}
			for i, b := range h.Bucket {
				if b.GetUpperBound() != contract.ResponseLatencyBucketsMs[i] {
					t.Fatalf("bucket %d = %v, want %v", i, b.GetUpperBound(), contract.ResponseLatencyBucketsMs[i])
				}
			}
			if h.GetSampleSum() != 7 && h.GetSampleSum() != 1 {
				t.Fatalf("latency sum %v: not in milliseconds", h.GetSampleSum())
			}
		}
		return
	}
	t.Fatal("no response_latency_ms")
}

// Authorities past the cap fold into one value per direction, so a client
// making up host names cannot grow the metrics without bound.
func TestAuthorityCardinalityCap(t *testing.T) {
	m := New(Workload{}, WithMaxAuthorities(3))
	for i := range 10 {
		m.Route(contract.DirectionOutbound, []byte{'a' + byte(i)}, false).Request()
	}
	m.Route(contract.DirectionOutbound, []byte("a"), false).Request()
	m.Route(contract.DirectionInbound, []byte("z"), false).Request() // its own budget
	want := `
# HELP request_total HTTP requests received.
# TYPE request_total counter
request_total{authority="a",direction="outbound",tls="false"} 2
request_total{authority="b",direction="outbound",tls="false"} 1
request_total{authority="c",direction="outbound",tls="false"} 1
request_total{authority="other",direction="outbound",tls="false"} 7
request_total{authority="z",direction="inbound",tls="false"} 1
`
	if err := gatherAndCompare(m.Registry(), strings.NewReader(want), "request_total"); err != nil {
		t.Fatal(err)
	}
}

func TestTCP(t *testing.T) {
	m := New(Workload{})
	tc := m.TCP(contract.DirectionInbound, false)
	tc.Opened()
	tc.Opened()
	tc.Transferred(100, 0)
	tc.Transferred(0, 40)
	tc.Closed()
	want := `
# HELP tcp_open_connections TCP connections open.
# TYPE tcp_open_connections gauge
tcp_open_connections{direction="inbound",tls="false"} 1
# HELP tcp_open_total TCP connections accepted.
# TYPE tcp_open_total counter
tcp_open_total{direction="inbound",tls="false"} 2
# HELP tcp_read_bytes_total Bytes read from accepted connections.
# TYPE tcp_read_bytes_total counter
tcp_read_bytes_total{direction="inbound",tls="false"} 100
# HELP tcp_write_bytes_total Bytes written to accepted connections.
# TYPE tcp_write_bytes_total counter
tcp_write_bytes_total{direction="inbound",tls="false"} 40
`
	if err := gatherAndCompare(m.Registry(), strings.NewReader(want),
		"tcp_open_connections", "tcp_open_total", "tcp_read_bytes_total", "tcp_write_bytes_total"); err != nil {
		t.Fatal(err)
	}
}

// gatherAndCompare renders the named families in the text format and
// compares them with want.
func gatherAndCompare(g prometheus.Gatherer, want *strings.Reader, names ...string) error {
	fams, err := g.Gather()
	if err != nil {
		return err
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		for _, n := range names {
			if f.GetName() == n {
				if err := enc.Encode(f); err != nil {
					return err
				}
			}
		}
	}
	w := new(strings.Builder)
	want.WriteTo(w)
	if strings.TrimSpace(b.String()) != strings.TrimSpace(w.String()) {
		return fmt.Errorf("metrics differ\ngot:\n%s\nwant:\n%s", b.String(), w.String())
	}
	return nil
}
