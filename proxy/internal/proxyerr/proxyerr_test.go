package proxyerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/conduitmesh/conduit/proxy/internal/resolve"
)

func TestMap(t *testing.T) {
	opErr := func(errno error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		kind   Kind
		err    error
		status int
		reason string
	}{
		{Resolve, resolve.ErrNoEndpoint, 503, "no endpoint"},
		{Connect, fmt.Errorf("resolving: %w", resolve.ErrNoEndpoint), 503, "no endpoint"},
		{Connect, opErr(syscall.ECONNREFUSED), 502, "connection refused"},
		{Connect, &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, 504, "connect timeout"},
		{Connect, context.DeadlineExceeded, 504, "connect timeout"},
		{Connect, opErr(syscall.EHOSTUNREACH), 502, "unreachable"},
		{Connect, errors.New("odd"), 502, "connect failed"},
		{Response, opErr(syscall.ECONNRESET), 502, "connection reset"},
		{Response, io.EOF, 502, "connection closed before response"},
		{Response, os.ErrDeadlineExceeded, 504, "response timeout"},
		{Response, errors.New("malformed status line"), 502, "bad response"},
	}
	for _, tt := range tests {
		e := Map(tt.kind, tt.err)
		if e.Status != tt.status || e.Reason != tt.reason {
			t.Errorf("Map(%v, %v) = %d %q, want %d %q", tt.kind, tt.err, e.Status, e.Reason, tt.status, tt.reason)
		}
		if !errors.Is(e, tt.err) {
			t.Errorf("Map(%v, %v) does not wrap the cause", tt.kind, tt.err)
		}
	}
}
