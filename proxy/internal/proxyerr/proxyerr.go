// Package proxyerr maps why the proxy could not get a response from
// upstream to the HTTP status it answers with (502, 503 or 504) and a short
// reason for the contract.ProxyErrorHeader response header.
package proxyerr

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/conduitmesh/conduit/proxy/internal/resolve"
)

// Kind says which step failed.
type Kind uint8

const (
	// Resolve: no endpoint for the target.
	Resolve Kind = iota
	// Connect: the TCP (or later mTLS) connection to upstream failed.
	Connect
	// Response: upstream failed before sending response headers.
	Response
)

// Error is an upstream failure with the status the client receives.
type Error struct {
	Status int
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Map turns a failure at a step into the response status and reason.
func Map(k Kind, err error) *Error {
	e := &Error{Status: 502, Err: err}
	switch {
	case k == Resolve || errors.Is(err, resolve.ErrNoEndpoint):
		e.Status, e.Reason = 503, "no endpoint"
	case isTimeout(err):
		e.Status = 504
		if k == Connect {
			e.Reason = "connect timeout"
		} else {
			e.Reason = "response timeout"
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Reason = "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		e.Reason = "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		e.Reason = "unreachable"
	case k == Connect:
		e.Reason = "connect failed"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		e.Reason = "connection closed before response"
	default:
		e.Reason = "bad response"
	}
	return e
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
