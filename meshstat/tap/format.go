package tap

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"google.golang.org/grpc/codes"
)

// Event is one tap event and the pod whose proxy sent it. Its JSON is the
// proxy's event with "namespace" and "pod" added (-o json).
type Event struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	contract.TapEvent
}

// Line formats e in the seed's format; wide adds the pod, the proxy
// direction, tls and the scheme. Dropped notices are not lines (see
// DroppedNotice).
//
//	req id=0:809 src=10.244.6.239:57202 dst=10.244.1.237:8080 :method=POST :authority=voting-svc.emojivoto:8080 :path=/emojivoto.v1.VotingService/VoteDoughnut
//	rsp id=0:809 src=10.244.6.239:57202 dst=10.244.1.237:8080 :status=200 latency=478µs
//	end id=0:809 src=10.244.6.239:57202 dst=10.244.1.237:8080 grpc-status=OK duration=7µs response-length=5B
func Line(e Event, wide bool) string {
	var b strings.Builder
	b.WriteString(string(e.Type))
	b.WriteString(" id=" + e.ID)
	if wide {
		b.WriteString(" pod=" + e.Namespace + "/" + e.Pod)
		b.WriteString(" proxy=" + proxyDir(e.Direction))
	}
	b.WriteString(" src=" + e.Source + " dst=" + e.Destination)
	if wide {
		b.WriteString(" tls=" + strconv.FormatBool(e.TLS))
	}
	switch e.Type {
	case contract.TapRequest:
		b.WriteString(" :method=" + e.Method)
		if wide {
			b.WriteString(" :scheme=" + e.Scheme)
		}
		b.WriteString(" :authority=" + e.Authority + " :path=" + e.Path)
	case contract.TapResponse:
		fmt.Fprintf(&b, " :status=%d latency=%s", e.Status, FormatDuration(e.Latency))
	case contract.TapEnd:
		if e.GRPCStatus != nil {
			b.WriteString(" grpc-status=" + codes.Code(*e.GRPCStatus).String())
		}
		if e.Error != "" {
			b.WriteString(" error=" + strconv.Quote(e.Error))
		}
		fmt.Fprintf(&b, " duration=%s response-length=%dB", FormatDuration(e.Duration), e.ResponseBytes)
	}
	return b.String()
}

// JSON is e as one line of JSON.
func JSON(e Event) string {
	b, err := json.Marshal(e)
	if err != nil { // cannot happen: the event is plain data
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	return string(b)
}

// DroppedNotice tells the user some requests were not shown.
func DroppedNotice(e Event, maxRPS int) string {
	limit := "the proxy's default rate limit"
	if maxRPS > 0 {
		limit = fmt.Sprintf("--max-rps %d", maxRPS)
	}
	return fmt.Sprintf("pod %s/%s: %d requests not shown (over %s, or output read too slowly)", e.Namespace, e.Pod, e.Dropped, limit)
}

func proxyDir(d string) string {
	switch d {
	case contract.DirectionInbound:
		return "in"
	case contract.DirectionOutbound:
		return "out"
	}
	return d
}

// FormatDuration prints µs below a millisecond (478µs), ms with one
// decimal below 10 ms (2.5ms), whole ms above (35ms).
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < 10*time.Millisecond:
		ms := float64(d.Round(100*time.Microsecond)) / float64(time.Millisecond)
		return strconv.FormatFloat(ms, 'f', -1, 64) + "ms"
	}
	return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + "ms"
}
