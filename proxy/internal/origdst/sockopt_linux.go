package origdst

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (and IP6T_SO_ORIGINAL_DST, which has
// the same value) from linux/netfilter_ipv4.h.
const soOriginalDst = 80

// Lookup reads SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6) from a
// TCP connection accepted after an nftables redirect.
func Lookup(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T is not a socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	local, _ := c.LocalAddr().(*net.TCPAddr)
	v6 := local != nil && local.IP.To4() == nil
	var (
		dst   netip.AddrPort
		opErr error
	)
	err = rc.Control(func(fd uintptr) {
		if v6 {
			dst, opErr = getV6(int(fd))
		} else {
			dst, opErr = getV4(int(fd))
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if opErr != nil {
		if opErr == unix.ENOENT {
			return netip.AddrPort{}, ErrNotRedirected
		}
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", opErr)
	}
	return dst, nil
}

func getsockopt(fd, level int, buf []byte) error {
	n := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), soOriginalDst,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func getV4(fd int) (netip.AddrPort, error) {
	var buf [unix.SizeofSockaddrInet4]byte // struct sockaddr_in
	if err := getsockopt(fd, unix.SOL_IP, buf[:]); err != nil {
		return netip.AddrPort{}, err
	}
	port := binary.BigEndian.Uint16(buf[2:4])
	addr := netip.AddrFrom4([4]byte(buf[4:8]))
	return netip.AddrPortFrom(addr, port), nil
}

func getV6(fd int) (netip.AddrPort, error) {
	var buf [unix.SizeofSockaddrInet6]byte // struct sockaddr_in6
	if err := getsockopt(fd, unix.SOL_IPV6, buf[:]); err != nil {
		return netip.AddrPort{}, err
	}
	port := binary.BigEndian.Uint16(buf[2:4])
	addr := netip.AddrFrom16([16]byte(buf[8:24])).Unmap()
	return netip.AddrPortFrom(addr, port), nil
}
