package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/proxy/internal/fdlimit"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/metrics/metricstest"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
)

// silentBackend accepts connections and sends nothing; it counts them
// and reports each one's end (the proxy closed it).
type silentBackend struct {
	addr     netip.AddrPort
	accepted atomic.Int64
	closed   chan struct{}
}

func newSilentBackend(t *testing.T) *silentBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	b := &silentBackend{addr: netip.MustParseAddrPort(ln.Addr().String()), closed: make(chan struct{}, 100)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
				b.closed <- struct{}{}
			}()
		}
	}()
	return b
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newTestServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	cfg.Direction = contract.DirectionInbound
	cfg.Resolver, cfg.Connector = resolve.OrigDst{}, resolve.TCP{}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(metrics.Workload{})
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, ln.Addr().String()
}

func dialClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// At the drain timeout's end an opaque connection to a silent server is
// closed on both sides and Shutdown returns.
func TestShutdownAbortsOpaqueUpstream(t *testing.T) {
	b := newSilentBackend(t)
	s, addr := newTestServer(t, Config{OrigDst: origdst.Fixed(b.addr), OpaquePorts: ports.Of(b.addr.Port())})
	c := dialClient(t, addr)
	c.Write([]byte("x"))
	waitFor(t, 2*time.Second, "backend connection", func() bool { return b.accepted.Load() == 1 })
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Shutdown took %v with a 200ms drain timeout", d)
	}
	select {
	case <-b.closed:
	case <-time.After(time.Second):
		t.Fatal("upstream connection still open after the drain timeout")
	}
}

// A silent client still in detection, with the upstream opened early to
// see whether the server speaks first, is closed at the drain timeout's
// end too, upstream included (detection alone would wait a minute).
func TestShutdownAbortsDetectionWithEarlyUpstream(t *testing.T) {
	b := newSilentBackend(t)
	s, addr := newTestServer(t, Config{OrigDst: origdst.Fixed(b.addr), DetectTimeout: time.Minute})
	dialClient(t, addr)
	waitFor(t, 2*time.Second, "early upstream connection", func() bool { return b.accepted.Load() == 1 })
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s.Shutdown(ctx)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Shutdown took %v with a 200ms drain timeout", d)
	}
	select {
	case <-b.closed:
	case <-time.After(time.Second):
		t.Fatal("early upstream connection still open after the drain timeout")
	}
}

// Opaque TCP on which nobody says anything is closed at the idle timeout.
func TestOpaqueIdleTimeout(t *testing.T) {
	b := newSilentBackend(t)
	const idle = 200 * time.Millisecond
	_, addr := newTestServer(t, Config{OrigDst: origdst.Fixed(b.addr), OpaquePorts: ports.Of(b.addr.Port()), OpaqueIdleTimeout: idle})
	c := dialClient(t, addr)
	start := time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("idle opaque connection still open after 5s with a 200ms idle timeout")
	}
	if d := time.Since(start); d < idle {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
	select {
	case <-b.closed:
	case <-time.After(time.Second):
		t.Fatal("upstream of the idle connection still open")
	}
}

// Silent clients get at most MaxEarlyDials upstream connections opened
// for them at a time; the others wait for their bytes as detection did
// before the race.
func TestEarlyDialsBounded(t *testing.T) {
	b := newSilentBackend(t)
	_, addr := newTestServer(t, Config{OrigDst: origdst.Fixed(b.addr), DetectTimeout: time.Minute, MaxEarlyDials: 2})
	for range 6 {
		dialClient(t, addr) // silent; closed when the test ends
	}
	waitFor(t, 2*time.Second, "two early upstream connections", func() bool { return b.accepted.Load() >= 2 })
	// The other four are well past their 1 ms window after 200 ms.
	time.Sleep(200 * time.Millisecond)
	if n := b.accepted.Load(); n != 2 {
		t.Fatalf("%d upstream connections for 6 silent clients, want 2 (MaxEarlyDials)", n)
	}
	// A client that speaks is still served (opaque, over a new connection).
	// A seventh client, so it is not one of the two that got an early
	// connection (which two did depends on scheduling).
	talker := dialClient(t, addr)
	talker.Write([]byte("hello\r\n")) // not an HTTP method token followed by a space: opaque at once
	waitFor(t, 2*time.Second, "the talking client's upstream", func() bool { return b.accepted.Load() == 3 })
}

// Near the descriptor limit new connections are closed at accept and
// counted; the ones admitted keep working.
func TestShedAtDescriptorBudget(t *testing.T) {
	open, err := fdlimit.Count()
	if err != nil {
		t.Fatal(err)
	}
	// Room for about ten more connections (two descriptors each, client
	// side in this process too).
	limit := open + 64 + 40
	m := metrics.New(metrics.Workload{})
	b := newSilentBackend(t)
	_, addr := newTestServer(t, Config{OrigDst: origdst.Fixed(b.addr), OpaquePorts: ports.Of(b.addr.Port()),
		FDs: fdlimit.NewBudget(limit), Metrics: m})
	var live, shed int
	for range 40 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			shed++ // reset before connect returned
			continue
		}
		t.Cleanup(func() { c.Close() })
		// A shed connection is reset at accept; one served stays silent.
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			live++
		} else {
			shed++
		}
	}
	if shed == 0 || live == 0 {
		t.Fatalf("%d connections served, %d shed; want both", live, shed)
	}
	got := metricstest.Sample(t, m.Registry(), contract.MetricTCPShedTotal, map[string]string{contract.LabelDirection: contract.DirectionInbound})
	if int(got) != shed {
		t.Fatalf("%s = %v, want %d", contract.MetricTCPShedTotal, got, shed)
	}
}
