package contract

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// The JSON field names are the wire format between the proxy and meshstat;
// this pins them.
func TestTapEventWireFormat(t *testing.T) {
	code := uint32(0)
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	events := map[string]TapEvent{
		`{"type":"req","ts":"2026-01-02T03:04:05.000000006Z","id":"0:809","direction":"inbound","src":"10.244.6.239:57202","dst":"10.244.1.237:8080","tls":true,"method":"POST","scheme":"http","authority":"voting-svc.emojivoto:8080","path":"/emojivoto.v1.VotingService/VoteDoughnut"}`: {
			Type: TapRequest, Time: ts, ID: "0:809", Direction: DirectionInbound,
			Source: "10.244.6.239:57202", Destination: "10.244.1.237:8080", TLS: true,
			Method: "POST", Scheme: "http", Authority: "voting-svc.emojivoto:8080", Path: "/emojivoto.v1.VotingService/VoteDoughnut",
		},
		`{"type":"rsp","ts":"2026-01-02T03:04:05.000000006Z","id":"0:809","status":200,"latency_ns":478000}`: {
			Type: TapResponse, Time: ts, ID: "0:809", Status: 200, Latency: 478 * time.Microsecond,
		},
		`{"type":"end","ts":"2026-01-02T03:04:05.000000006Z","id":"0:809","duration_ns":7000,"response_bytes":5,"grpc_status":0}`: {
			Type: TapEnd, Time: ts, ID: "0:809", Duration: 7 * time.Microsecond, ResponseBytes: 5, GRPCStatus: &code,
		},
		`{"type":"dropped","ts":"2026-01-02T03:04:05.000000006Z","dropped":12}`: {
			Type: TapDropped, Time: ts, Dropped: 12,
		},
	}
	for want, ev := range events {
		got, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("marshal %s:\n got %s\nwant %s", ev.Type, got, want)
		}
		var back TapEvent
		if err := json.Unmarshal([]byte(want), &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, ev) {
			t.Errorf("round trip %s: got %+v want %+v", ev.Type, back, ev)
		}
	}
}
