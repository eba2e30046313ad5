package tap

import (
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// The seed's three lines, from the events the proxy sends.
func TestLineFormat(t *testing.T) {
	ok, unavailable := uint32(0), uint32(14)
	src, dst := "10.244.6.239:57202", "10.244.1.237:8080"
	for _, c := range []struct {
		e    contract.TapEvent
		wide bool
		want string
	}{
		{contract.TapEvent{Type: contract.TapRequest, ID: "0:809", Source: src, Destination: dst, Method: "POST", Scheme: "http",
			Authority: "voting-svc.emojivoto:8080", Path: "/emojivoto.v1.VotingService/VoteDoughnut"}, false,
			"req id=0:809 src=10.244.6.239:57202 dst=10.244.1.237:8080 :method=POST :authority=voting-svc.emojivoto:8080 :path=/emojivoto.v1.VotingService/VoteDoughnut"},
		{contract.TapEvent{Type: contract.TapResponse, ID: "0:809", Source: src, Destination: dst, Status: 200, Latency: 478 * time.Microsecond}, false,
			"rsp id=0:809 src=10.244.6.239:57202 dst=10.244.1.237:8080 :status=200 latency=478µs"},
		{contract.TapEvent{Type: contract.TapEnd, ID: "0:809", Source: src, Destination: dst, GRPCStatus: &ok, Duration: 7 * time.Microsecond, ResponseBytes: 5}, false,
			"end id=0:809 src=10.244.6.239:57202 dst=10.244.1.237:8080 grpc-status=OK duration=7µs response-length=5B"},
		{contract.TapEvent{Type: contract.TapEnd, ID: "1:3", Source: src, Destination: dst, GRPCStatus: &unavailable, Error: "reset: CANCEL", Duration: 12 * time.Millisecond}, false,
			`end id=1:3 src=10.244.6.239:57202 dst=10.244.1.237:8080 grpc-status=Unavailable error="reset: CANCEL" duration=12ms response-length=0B`},
		{contract.TapEvent{Type: contract.TapRequest, ID: "0:1", Direction: contract.DirectionOutbound, TLS: true, Source: src, Destination: dst, Method: "GET", Scheme: "http", Authority: "web", Path: "/"}, true,
			"req id=0:1 pod=emojivoto/voting-1 proxy=out src=10.244.6.239:57202 dst=10.244.1.237:8080 tls=true :method=GET :scheme=http :authority=web :path=/"},
	} {
		if got := Line(Event{Namespace: "emojivoto", Pod: "voting-1", TapEvent: c.e}, c.wide); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0µs", 7 * time.Microsecond: "7µs", 999 * time.Microsecond: "999µs", time.Millisecond: "1ms",
		2460 * time.Microsecond: "2.5ms", 35400 * time.Microsecond: "35ms", 1500 * time.Millisecond: "1500ms",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
