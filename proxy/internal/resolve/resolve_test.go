package resolve

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

func TestResolvers(t *testing.T) {
	dst := netip.MustParseAddrPort("10.1.2.3:8080")
	e, err := OrigDst{}.Resolve(context.Background(), Target{OrigDst: dst})
	if err != nil || e.Addr != dst {
		t.Fatalf("OrigDst: %v %v", e, err)
	}
	e, err = Local{}.Resolve(context.Background(), Target{OrigDst: dst})
	if err != nil || e.Addr != netip.MustParseAddrPort("127.0.0.1:8080") {
		t.Fatalf("Local: %v %v", e, err)
	}
	if _, err := (OrigDst{}).Resolve(context.Background(), Target{}); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("OrigDst without destination: %v", err)
	}
	if _, err := (TCP{}).Connect(context.Background(), Endpoint{Addr: dst, Identity: "x"}); err == nil {
		t.Fatal("TCP connector must refuse an endpoint that requires mTLS")
	}
}
