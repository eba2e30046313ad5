package conn

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReadableWaiter returns a function that blocks until c has bytes (or EOF
// or an error) to read, without reading them. For connections that are not
// sockets it returns at once. Relays wait with it before taking a copy
// buffer from a pool, so that idle connections hold no buffer.
func ReadableWaiter(c net.Conn) func() error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return func() error { return nil }
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() error { return nil }
	}
	one := make([]byte, 1)
	peek := func(fd uintptr) bool {
		// recv(MSG_PEEK) without unix.Recvfrom, which allocates an address.
		_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&one[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		return errno != unix.EAGAIN && errno != unix.EINTR
	}
	return func() error { return rc.Read(peek) }
}
