package conn

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/conduitmesh/conduit/proxy/internal/metrics"
)

func TestDrainHookAndCounting(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	m := metrics.New(metrics.Workload{})
	c := New(a, netip.MustParseAddrPort("10.0.0.1:80"), m.TCP("inbound", false), 16)
	calls := 0
	c.OnDrain(func() { calls++ })
	if c.Draining() {
		t.Fatal("draining before Drain")
	}
	c.Drain()
	if calls != 1 || !c.Draining() {
		t.Fatalf("hook ran %d times, draining=%v", calls, c.Draining())
	}
	// A hook registered after the drain started runs at once.
	late := false
	c.OnDrain(func() { late = true })
	if !late {
		t.Fatal("a hook registered while draining did not run")
	}

	go func() { b.Write([]byte("hello")); b.Close() }()
	got, _ := io.ReadAll(c)
	if string(got) != "hello" {
		t.Fatalf("read %q", got)
	}
	fams, _ := m.Registry().Gather()
	read := -1.0
	for _, f := range fams {
		if f.GetName() == "tcp_read_bytes_total" {
			read = f.Metric[0].GetCounter().GetValue()
		}
	}
	if read != 5 {
		t.Fatalf("counted %v bytes read, want 5", read)
	}
}
