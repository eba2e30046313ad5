package http1

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
	"github.com/conduitmesh/conduit/proxy/internal/resolve"
	"github.com/conduitmesh/conduit/proxy/internal/server"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
)

// startTappedProxy is startProxy with the HTTP/1 path reporting to o.
func startTappedProxy(b testing.TB, backend string, o tap.Observer) string {
	m := metrics.New(metrics.Workload{})
	r, c := resolve.OrigDst{}, resolve.TCP{}
	var opts []Option
	if o != nil {
		opts = append(opts, WithTap(o))
	}
	srv, err := server.New(server.Config{
		Direction: contract.DirectionOutbound,
		OrigDst:   origdst.Fixed(netip.MustParseAddrPort(backend)),
		Resolver:  r, Connector: c, Metrics: m,
		HTTP1: New(contract.DirectionOutbound, r, c, m, opts...),
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// BenchmarkTap measures what tap costs the HTTP/1 path per request: no
// tap at all, a hub with no subscriber (what every proxy runs with), and a
// hub with a subscriber that takes every request (a reader drains the
// events as the tap handler would, without the JSON).
func BenchmarkTap(b *testing.B) {
	backend := fastBackend(b)
	none := startTappedProxy(b, backend, nil)
	idleHub := tap.NewHub()
	idle := startTappedProxy(b, backend, idleHub)
	busyHub := tap.NewHub()
	busy := startTappedProxy(b, backend, busyHub)

	b.Run("no-tap", func(b *testing.B) { benchRoundTrips(b, none) })
	b.Run("tap-no-subscriber", func(b *testing.B) {
		benchRoundTrips(b, idle)
		if idleHub.Observing() {
			b.Fatal("hub has a subscriber")
		}
	})
	b.Run("tap-subscribed", func(b *testing.B) {
		sub := busyHub.Subscribe(tap.Filter{}, 1<<30)
		stop, done := make(chan struct{}), make(chan struct{})
		events := 0
		go func() {
			defer close(done)
			var buf []contract.TapEvent
			for {
				select {
				case <-sub.Ready():
					buf = sub.Take(buf)
					events += len(buf)
				case <-stop:
					return
				}
			}
		}()
		benchRoundTrips(b, busy)
		close(stop)
		<-done
		sub.Close()
		if events == 0 {
			b.Fatal("the subscriber saw no events")
		}
	})
}
