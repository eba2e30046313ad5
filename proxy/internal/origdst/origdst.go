// Package origdst recovers the destination a connection was addressed to
// before the redirect installed by conduit-init sent it to the proxy.
package origdst

import (
	"errors"
	"net"
	"net/netip"
)

// Func returns the original destination of an accepted connection. The
// proxy takes one as a dependency so tests can run on loopback without a
// redirect in place.
type Func func(net.Conn) (netip.AddrPort, error)

// ErrNotRedirected means the connection reached the proxy directly, not
// through a redirect, so it has no original destination.
var ErrNotRedirected = errors.New("connection has no original destination (not redirected)")

// Fixed returns a Func that reports addr for every connection.
func Fixed(addr netip.AddrPort) Func {
	return func(net.Conn) (netip.AddrPort, error) { return addr, nil }
}
