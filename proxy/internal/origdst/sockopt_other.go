//go:build !linux

package origdst

import (
	"errors"
	"net"
	"net/netip"
)

// Lookup is only implemented on Linux, where conduit-init redirects.
func Lookup(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("original destination: only supported on Linux")
}
