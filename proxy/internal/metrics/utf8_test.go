package metrics

import (
	"testing"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// An authority that is not UTF-8 (an HTTP/2 :authority, say) must not reach
// Prometheus as a label value: it refuses one with a panic, which took the
// proxy down. It is counted under the authority with the bad bytes replaced.
func TestRouteNonUTF8Authority(t *testing.T) {
	m := New(Workload{})
	r := m.Route(contract.DirectionInbound, []byte("a\xffb"), false)
	r.Request()
	if m.Route(contract.DirectionInbound, []byte("a\xffb"), false) != r {
		t.Fatal("the same authority must give the same route")
	}
	if r.labels[1] != "a\uFFFDb" {
		t.Fatalf("authority label %q", r.labels[1])
	}
}
