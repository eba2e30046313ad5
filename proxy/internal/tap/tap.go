// Package tap is the proxy's live request stream: the HTTP/1 and HTTP/2
// paths report each request's start, response start and end to a Hub,
// which hands them to the subscribers whose filters match, each within its
// own rate limit, as contract.TapEvent values.
//
// With no subscriber the protocol paths check one atomic value
// (Observing) and do nothing else.
package tap

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"golang.org/x/time/rate"
)

// Observer is what the protocol paths report to. They call Observing
// first (an atomic load) and build a Request only when it says true.
type Observer interface {
	Observing() bool
	// Start reports a request's headers; the Call it returns (nil when no
	// subscriber wants the request) takes the response start and end.
	Start(r *Request) *Call
}

// Request is a request start as the protocol path saw it.
type Request struct {
	Time time.Time
	// Conn is the connection's number in this process, Stream the
	// request's number on it.
	Conn, Stream uint64
	Direction    string
	Source       netip.AddrPort
	Destination  netip.AddrPort
	TLS          bool

	Method, Scheme, Authority, Path string
}

// Filter selects requests; empty fields match anything.
type Filter struct {
	Method     string
	Authority  string
	PathPrefix string
}

func (f Filter) match(r *Request) bool {
	return (f.Method == "" || f.Method == r.Method) &&
		(f.Authority == "" || f.Authority == r.Authority) &&
		strings.HasPrefix(r.Path, f.PathPrefix)
}

// Hub fans requests out to subscribers. The zero value is not usable; see
// NewHub.
type Hub struct {
	active atomic.Bool
	mu     sync.Mutex
	subs   atomic.Pointer[[]*Subscription]
	now    func() time.Time
}

// HubOption configures a Hub.
type HubOption func(*Hub)

// WithClock replaces time.Now for the rate limit and the dropped notices
// (tests).
func WithClock(now func() time.Time) HubOption { return func(h *Hub) { h.now = now } }

// NewHub returns a Hub with no subscribers.
func NewHub(opts ...HubOption) *Hub {
	h := &Hub{now: time.Now}
	for _, o := range opts {
		o(h)
	}
	h.subs.Store(&[]*Subscription{})
	return h
}

// Observing reports whether anyone subscribes.
func (h *Hub) Observing() bool { return h != nil && h.active.Load() }

// QueueLimit is how many events a subscriber may have waiting. A request
// is admitted only with room for all three of its events, so a slow reader
// loses whole requests (counted as dropped), never parts of one.
const QueueLimit = 3 * 1024

// Subscribe adds a subscriber shown at most maxRPS requests per second.
// It must be closed with Close.
func (h *Hub) Subscribe(f Filter, maxRPS int) *Subscription {
	if maxRPS <= 0 {
		maxRPS = contract.TapDefaultMaxRPS
	}
	s := &Subscription{
		hub:     h,
		filter:  f,
		limit:   rate.NewLimiter(rate.Limit(maxRPS), maxRPS),
		ready:   make(chan struct{}, 1),
		now:     h.now,
		lastOut: h.now(),
	}
	h.mu.Lock()
	old := *h.subs.Load()
	next := append(append(make([]*Subscription, 0, len(old)+1), old...), s)
	h.subs.Store(&next)
	h.active.Store(true)
	h.mu.Unlock()
	return s
}

func (h *Hub) remove(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.subs.Load()
	next := make([]*Subscription, 0, len(old))
	for _, o := range old {
		if o != s {
			next = append(next, o)
		}
	}
	h.subs.Store(&next)
	h.active.Store(len(next) > 0)
}

// Start offers a request to every subscriber. It returns nil when none
// took it.
func (h *Hub) Start(r *Request) *Call {
	if !h.Observing() {
		return nil
	}
	var c *Call
	for _, s := range *h.subs.Load() {
		if !s.filter.match(r) {
			continue
		}
		if c == nil {
			c = &Call{start: r.Time, base: contract.TapEvent{
				ID:          strconv.FormatUint(r.Conn, 10) + ":" + strconv.FormatUint(r.Stream, 10),
				Direction:   r.Direction,
				Source:      addr(r.Source),
				Destination: addr(r.Destination),
				TLS:         r.TLS,
			}}
		}
		e := c.base
		e.Type, e.Time = contract.TapRequest, r.Time
		e.Method, e.Scheme, e.Authority, e.Path = r.Method, r.Scheme, r.Authority, r.Path
		if s.admit(e) {
			c.subs = append(c.subs, s)
		}
	}
	if c == nil || len(c.subs) == 0 {
		return nil
	}
	return c
}

func addr(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()).String()
}

// Call is one shown request. Its methods do nothing on a nil Call, so the
// protocol paths call them unconditionally.
type Call struct {
	start    time.Time
	rspAt    time.Time
	base     contract.TapEvent
	subs     []*Subscription
	answered bool
	ended    atomic.Bool
}

// Response reports the response's headers at t.
func (c *Call) Response(status int, t time.Time) {
	if c == nil || c.answered || c.ended.Load() {
		return
	}
	c.answered, c.rspAt = true, t
	e := c.base
	e.Type, e.Time = contract.TapResponse, t
	e.Status, e.Latency = status, t.Sub(c.start)
	for _, s := range c.subs {
		s.push(e, 1)
	}
}

// NoGRPCStatus is End's grpcStatus when the response had none.
const NoGRPCStatus = -1

// End reports the response's end at t: the body bytes, the grpc-status
// (NoGRPCStatus when absent) and, when the stream did not end cleanly,
// why. Only the first End counts.
func (c *Call) End(bodyBytes int64, grpcStatus int, reason string, t time.Time) {
	if c == nil || !c.ended.CompareAndSwap(false, true) {
		return
	}
	e := c.base
	e.Type, e.Time = contract.TapEnd, t
	from := c.rspAt
	if !c.answered {
		from = c.start
	}
	e.Duration, e.ResponseBytes, e.Error = t.Sub(from), bodyBytes, reason
	if grpcStatus >= 0 {
		g := uint32(grpcStatus)
		e.GRPCStatus = &g
	}
	// Without a response start the slot reserved for it is released.
	release := 1
	if !c.answered {
		release = 2
	}
	for _, s := range c.subs {
		s.push(e, release)
	}
}

// Subscription is one subscriber's queue of events.
type Subscription struct {
	hub    *Hub
	filter Filter
	limit  *rate.Limiter
	ready  chan struct{}
	now    func() time.Time

	mu       sync.Mutex
	queue    []contract.TapEvent
	reserved int // slots promised to shown requests' later events
	dropped  uint64
	lastOut  time.Time // when the last dropped notice went out
	closed   bool
}

// admit queues a request start when the rate limit and the queue allow,
// reserving room for its response and end; otherwise it counts a drop.
func (s *Subscription) admit(e contract.TapEvent) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	need := 3
	if s.dropped > 0 {
		need++
	}
	if len(s.queue)+s.reserved+need > QueueLimit || !s.limit.AllowN(now, 1) {
		s.dropped++
		return false
	}
	s.noticeLocked(now)
	s.queue = append(s.queue, e)
	s.reserved += 2
	s.signal()
	return true
}

// noticeLocked queues a dropped notice when requests were dropped.
func (s *Subscription) noticeLocked(now time.Time) {
	if s.dropped == 0 {
		return
	}
	s.queue = append(s.queue, contract.TapEvent{Type: contract.TapDropped, Time: now, Dropped: s.dropped})
	s.dropped, s.lastOut = 0, now
}

func (s *Subscription) push(e contract.TapEvent, release int) {
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, e)
		s.reserved -= release
		s.signal()
	}
	s.mu.Unlock()
}

func (s *Subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready receives a value when events may be waiting.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the events waiting, oldest first, and appends a dropped
// notice when requests were dropped and no notice went out for a second.
// buf is reused for the result.
func (s *Subscription) Take(buf []contract.TapEvent) []contract.TapEvent {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped > 0 && now.Sub(s.lastOut) >= time.Second {
		s.noticeLocked(now)
	}
	out := append(buf[:0], s.queue...)
	clear(s.queue)
	s.queue = s.queue[:0]
	return out
}

// Close removes the subscriber.
func (s *Subscription) Close() {
	s.hub.remove(s)
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
}
