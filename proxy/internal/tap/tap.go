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
	"unsafe"

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
	// ShowQuery shows the values in paths' query strings. Without it
	// each value is replaced by Redacted (the keys stay), and PathPrefix
	// is matched against the path so redacted, so it cannot be used to
	// guess a value either.
	ShowQuery bool
}

func (f Filter) match(r *Request, path string) bool {
	return (f.Method == "" || f.Method == r.Method) &&
		(f.Authority == "" || f.Authority == r.Authority) &&
		strings.HasPrefix(path, f.PathPrefix)
}

// Redacted replaces query values in the paths a subscriber is shown,
// unless it asked for them (Filter.ShowQuery).
const Redacted = "<redacted>"

// RedactQuery returns path with every value in its query string replaced
// by Redacted: "/a?token=x&b" becomes "/a?token=<redacted>&<redacted>" (a
// part without "=" may be a value on its own). A path without a query
// is returned as it is.
func RedactQuery(path string) string {
	i := strings.IndexByte(path, '?')
	if i < 0 {
		return path
	}
	var b strings.Builder
	b.Grow(len(path) + 16)
	b.WriteString(path[:i+1])
	for j, part := range strings.Split(path[i+1:], "&") {
		if j > 0 {
			b.WriteByte('&')
		}
		key, value, hasValue := strings.Cut(part, "=")
		switch {
		case hasValue && value == "":
			b.WriteString(part)
		case hasValue:
			b.WriteString(key)
			b.WriteString("=" + Redacted)
		case part != "":
			b.WriteString(Redacted)
		}
	}
	return b.String()
}

// Hub fans requests out to subscribers. The zero value is not usable; see
// NewHub.
type Hub struct {
	active  atomic.Bool
	mu      sync.Mutex
	subs    atomic.Pointer[[]*Subscription]
	now     func() time.Time
	maxSubs int
}

// HubOption configures a Hub.
type HubOption func(*Hub)

// WithClock replaces time.Now for the rate limit and the dropped notices
// (tests).
func WithClock(now func() time.Time) HubOption { return func(h *Hub) { h.now = now } }

// WithMaxSubscribers sets how many subscribers the hub takes at once
// (MaxSubscribers by default).
func WithMaxSubscribers(n int) HubOption { return func(h *Hub) { h.maxSubs = n } }

// MaxSubscribers is how many subscribers a hub takes at once by default.
// Each one costs the proxy a goroutine, a connection and up to QueueBytes
// of events; `meshstat tap` takes one per pod and invocation, so this
// leaves room for a handful of people tapping at once.
const MaxSubscribers = 16

// NewHub returns a Hub with no subscribers.
func NewHub(opts ...HubOption) *Hub {
	h := &Hub{now: time.Now, maxSubs: MaxSubscribers}
	for _, o := range opts {
		o(h)
	}
	h.subs.Store(&[]*Subscription{})
	return h
}

// Observing reports whether anyone subscribes.
func (h *Hub) Observing() bool { return h != nil && h.active.Load() }

// QueueBytes bounds the memory a subscriber's events take while they wait
// to be written, counted with eventCost (the events the stream is writing
// count until it takes the next ones). A request is admitted only with
// room for all three of its events, so a slow or stalled reader loses
// whole requests (counted as dropped), never parts of one.
const QueueBytes = 128 << 10

// eventOverhead is what one queued event takes besides its strings.
const eventOverhead = int(unsafe.Sizeof(contract.TapEvent{}))

// laterCost is what is reserved for each of a shown request's response
// and end events: the event, and its shared strings and error message
// up to that many bytes each.
const laterCost = eventOverhead + 256

// eventCost is what e takes in a queue: the event and its strings.
func eventCost(e *contract.TapEvent) int {
	return eventOverhead + len(e.ID) + len(e.Source) + len(e.Destination) +
		len(e.Method) + len(e.Scheme) + len(e.Authority) + len(e.Path) + len(e.Error)
}

// Subscribe adds a subscriber shown at most maxRPS requests per second.
// It must be closed with Close. It returns nil when the hub already has
// its maximum of subscribers.
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
	if len(old) >= h.maxSubs {
		h.mu.Unlock()
		return nil
	}
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
	redacted, isRedacted := "", false
	for _, s := range *h.subs.Load() {
		path := r.Path
		if !s.filter.ShowQuery {
			if !isRedacted {
				redacted, isRedacted = RedactQuery(r.Path), true
			}
			path = redacted
		}
		if !s.filter.match(r, path) {
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
		e.Method, e.Scheme, e.Authority, e.Path = r.Method, r.Scheme, r.Authority, path
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
	bytes    int // what queue, reserved and taken come to (eventCost)
	reserved int // bytes promised to shown requests' later events
	taken    int // bytes of the events the stream took last, being written
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
	need := eventCost(&e) + 2*laterCost
	if s.dropped > 0 {
		need += eventOverhead
	}
	if s.bytes+need > QueueBytes || !s.limit.AllowN(now, 1) {
		s.dropped++
		return false
	}
	s.noticeLocked(now)
	s.queue = append(s.queue, e)
	s.reserved += 2 * laterCost
	s.bytes += eventCost(&e) + 2*laterCost
	s.signal()
	return true
}

// noticeLocked queues a dropped notice when requests were dropped.
func (s *Subscription) noticeLocked(now time.Time) {
	if s.dropped == 0 {
		return
	}
	e := contract.TapEvent{Type: contract.TapDropped, Time: now, Dropped: s.dropped}
	s.queue = append(s.queue, e)
	s.bytes += eventCost(&e)
	s.dropped, s.lastOut = 0, now
}

func (s *Subscription) push(e contract.TapEvent, release int) {
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, e)
		s.reserved -= release * laterCost
		s.bytes += eventCost(&e) - release*laterCost
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
// buf is the previous result, done with: its events stop counting
// against QueueBytes now, the returned ones until the next Take.
func (s *Subscription) Take(buf []contract.TapEvent) []contract.TapEvent {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped > 0 && now.Sub(s.lastOut) >= time.Second {
		s.noticeLocked(now)
	}
	clear(buf)
	out := s.queue
	s.queue = buf[:0]
	s.bytes -= s.taken
	s.taken = 0
	for i := range out {
		s.taken += eventCost(&out[i])
	}
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
