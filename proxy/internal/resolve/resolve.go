// Package resolve is the seam between the proxy and service discovery: it
// turns where a connection or request was going into the endpoint the proxy
// connects to, and connects to it.
//
// Today the outbound side forwards to the original destination and the
// inbound side to the application at the pod's own address (loopback for
// the ports opted in). A discovery client (choosing
// endpoints by authority) and mTLS (wrapping connections in Connect, keyed
// by Endpoint.Identity) plug in here without touching the protocol code.
package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/pkg/ports"
)

// Target describes what a client asked for.
type Target struct {
	// OrigDst is the destination the client connected to, before the redirect.
	OrigDst netip.AddrPort
	// Authority is the HTTP authority (Host or :authority); empty for TCP.
	Authority string
}

// Endpoint is where the proxy sends a connection or request.
type Endpoint struct {
	Addr netip.AddrPort
	// Identity is the peer's expected identity for mTLS; empty means plain
	// TCP. Nothing sets it yet.
	Identity string
	// Fallback, when valid, is tried when Addr refuses the connection.
	Fallback netip.AddrPort
}

// Resolver picks an endpoint for a target. It is called per connection for
// TCP and per request for HTTP, so it must be cheap.
type Resolver interface {
	Resolve(ctx context.Context, t Target) (Endpoint, error)
}

// Connector opens a connection to an endpoint.
type Connector interface {
	Connect(ctx context.Context, e Endpoint) (net.Conn, error)
}

// ErrNoEndpoint is returned by a Resolver that knows no endpoint for a
// target; the proxy answers HTTP requests with 503.
var ErrNoEndpoint = errors.New("no endpoint for target")

// OrigDst forwards to the original destination unchanged (outbound).
type OrigDst struct{}

func (OrigDst) Resolve(_ context.Context, t Target) (Endpoint, error) {
	if !t.OrigDst.IsValid() {
		return Endpoint{}, ErrNoEndpoint
	}
	return Endpoint{Addr: t.OrigDst}, nil
}

// Inbound forwards to the application in the same pod (inbound). By
// default that is the original destination, the pod's own address, so an
// application port bound only to loopback (an admin or debug endpoint meant
// to stay inside the pod) is not reachable through the proxy, as it would
// not be without the mesh. The proxy's own connections are not redirected,
// so connecting to the pod's address reaches the application.
//
// LoopbackPorts opt ports in to loopback, in the original destination's
// family (127.0.0.1 or ::1), for applications that listen only there; the
// original destination is then the fallback when loopback refuses.
type Inbound struct {
	LoopbackPorts ports.List
}

var (
	loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	loopback6 = netip.IPv6Loopback()
)

func (r Inbound) Resolve(_ context.Context, t Target) (Endpoint, error) {
	port := t.OrigDst.Port()
	if port == 0 || !t.OrigDst.Addr().IsValid() {
		return Endpoint{}, ErrNoEndpoint
	}
	a := t.OrigDst.Addr().Unmap()
	if !r.LoopbackPorts.Contains(port) {
		return Endpoint{Addr: netip.AddrPortFrom(a, port)}, nil
	}
	lo := loopback4
	if a.Is6() {
		lo = loopback6
	}
	e := Endpoint{Addr: netip.AddrPortFrom(lo, port)}
	if !a.IsLoopback() && !a.IsUnspecified() {
		e.Fallback = netip.AddrPortFrom(a, port)
	}
	return e, nil
}

// Func adapts a function to Resolver.
type Func func(ctx context.Context, t Target) (Endpoint, error)

func (f Func) Resolve(ctx context.Context, t Target) (Endpoint, error) { return f(ctx, t) }

// TCP connects with plain TCP.
type TCP struct {
	// Timeout bounds the connect; zero means 1 second.
	Timeout time.Duration
}

func (d TCP) Connect(ctx context.Context, e Endpoint) (net.Conn, error) {
	if e.Identity != "" {
		return nil, errors.New("endpoint requires mTLS, which this connector does not speak")
	}
	timeout := d.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	nd := net.Dialer{Timeout: timeout}
	c, err := nd.DialContext(ctx, "tcp", e.Addr.String())
	if err != nil && e.Fallback.IsValid() && errors.Is(err, syscall.ECONNREFUSED) {
		c, err = nd.DialContext(ctx, "tcp", e.Fallback.String())
	}
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return c, nil
}
