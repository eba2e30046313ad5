package h2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conduitmesh/conduit/proxy/internal/conn"
	"github.com/conduitmesh/conduit/proxy/internal/metrics"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// relay forwards one client connection to its own upstream connection,
// frame by frame and unchanged: stream ids, flow control, SETTINGS, PING,
// RST_STREAM and GOAWAY all pass end to end, so the two endpoints see each
// other's HTTP/2 exactly. The relay reads the frame headers as the bytes go
// by, and decodes the header blocks (each direction keeps an HPACK decoder
// in step with the peer's encoder) to count requests and responses, time
// them and report them to tap. DATA payloads are never copied apart from
// the one read and one write each piece of bytes needs.
//
// It writes frames of its own only when the proxy drains: GOAWAY to the
// client, at a frame boundary.
type relay struct {
	p        *Proxy
	client   *conn.Conn
	clientIO net.Conn // client reads and writes, counted, bypassing detection's buffer
	up       net.Conn
	upIO     net.Conn
	source   netip.AddrPort

	requests, responses side

	mu         sync.Mutex
	streams    map[uint32]*stream
	lastClient uint32 // highest stream id the client opened
	closing    bool   // the final GOAWAY is out: end once no stream is open
	tapped     atomic.Int32
	idle       atomic.Bool // closing, and no stream is open
	aborted    atomic.Bool
	calmed     atomic.Bool   // closed for abuse: the client's bytes are read and dropped
	opened     atomic.Uint32 // lastClient, read without mu
	forwarded  atomic.Uint32 // the highest stream id whose opening went upstream
	drainOnce  sync.Once

	// Rapid reset: streams opened and reset by the client within
	// prematureAge, counted per resetWindow.
	windowStart     time.Time
	windowOpened    int
	windowPremature int
	lastActive      time.Time   // when a stream last opened or ended
	idleTimer       *time.Timer // the keep-alive timeout's check

	// Until the upstream's first frame proves it speaks HTTP/2, the
	// client's bytes are forwarded and kept (backlog) but not scanned:
	// if the upstream turns out not to, the connection is replayed to
	// the fallback server, which answers each request, and nothing was
	// counted twice. Once it does, the backlog is scanned first.
	gate       sync.Mutex
	confirmed  atomic.Bool      // the upstream's first frame was SETTINGS
	fallback   bool             // the upstream failed before that: the client's bytes are only kept
	backlog    []byte           // the client's bytes while neither is known
	earlyReset []*metrics.Route // requests the client reset before that
	verdict    chan struct{}    // closed once confirmed or fallback is set

	// Writes to the client, from the upstream pump and from drain.
	toClient         sync.Mutex
	clientAtBoundary bool   // what the client got so far ends at a frame boundary
	clientWrote      bool   // the client got something
	clientPending    []byte // the relay's own frames, waiting for a boundary

	abortOnce, closeOnce sync.Once
}

// outcome is how a stream ended.
type outcome int

const (
	ended     outcome = iota // the response ended cleanly
	failed                   // the server reset it, or the connection broke
	cancelled                // the client reset it
)

// stream is one request in flight, from its request headers to the end
// of its response.
type stream struct {
	route    *metrics.Route
	call     *tap.Call
	start    time.Time
	early    *earlyRequest // opened before the upstream proved it speaks HTTP/2: not counted yet
	answered bool
	status   int
	ttfb     time.Duration
	grpc     int
	bytes    int64
}

// side is one direction's reading state.
type side struct {
	scan         frameScanner
	dec          *hpack.Decoder
	allowedTable uint32
	announced    atomic.Uint32 // header table size the receiver announced
	inBlock      bool          // a header block continues in CONTINUATION frames
	blockStream  uint32
	blockEnds    bool // the block's HEADERS frame ended the stream
	blockIsPush  bool
	fields       headerFields
	listSize     int       // the block's decoded size so far
	now          time.Time // when the bytes being scanned arrived
}

// headerFields are the fields of one header block the relay looks at.
type headerFields struct {
	method, scheme, authority, host, path string
	status, grpcStatus                    int
}

// maxHeaderTable caps the HPACK dynamic table the relay keeps per
// direction, whatever the peers agree on.
const maxHeaderTable = 64 << 10

func (s *side) init() {
	s.allowedTable = 4096
	s.dec = hpack.NewDecoder(4096, s.emit)
	s.dec.SetMaxStringLength(maxKeptPayload)
}

func (s *side) emit(f hpack.HeaderField) {
	s.listSize += len(f.Name) + len(f.Value) + 32
	if s.listSize > maxHeaderList {
		s.dec.SetEmitEnabled(false) // the rest of the block is not looked at
		return
	}
	switch f.Name {
	case ":method":
		s.fields.method = f.Value
	case ":scheme":
		s.fields.scheme = f.Value
	case ":authority":
		s.fields.authority = f.Value
	case "host":
		s.fields.host = f.Value
	case ":path":
		s.fields.path = f.Value
	case ":status":
		s.fields.status, _ = strconv.Atoi(f.Value)
	case "grpc-status":
		s.fields.grpcStatus = parseStatus(f.Value)
	}
}

// decode feeds a header block fragment to the decoder; at the end of the
// block it calls done with the fields.
func (s *side) decode(fragment []byte, end bool, done func(s *side) error) error {
	if _, err := s.dec.Write(fragment); err != nil {
		return err
	}
	if s.listSize > maxHeaderList {
		return &abuseError{abuseHeaderListSize, fmt.Sprintf("header list of more than %d bytes decoded", maxHeaderList)}
	}
	if !end {
		s.inBlock = true
		return nil
	}
	s.inBlock = false
	if err := s.dec.Close(); err != nil {
		return err
	}
	return done(s)
}

// startBlock begins a header block from a HEADERS or PUSH_PROMISE frame.
func (s *side) startBlock(f *frame) {
	if a := s.announced.Load(); a > s.allowedTable {
		s.allowedTable = min(a, maxHeaderTable)
		s.dec.SetAllowedMaxDynamicTableSize(s.allowedTable)
	}
	s.fields = headerFields{grpcStatus: metrics.NoGRPCStatus}
	s.listSize = 0
	s.dec.SetEmitEnabled(true)
	s.blockStream = f.StreamID
	s.blockEnds = f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersEndStream)
	s.blockIsPush = f.Type == http2.FramePushPromise
}

// expectContinuation refuses any frame but CONTINUATION inside a header
// block (RFC 9113 section 6.10).
func (s *side) expectContinuation(f *frame) error {
	if s.inBlock && f.Type != http2.FrameContinuation {
		return errors.New("header block interrupted")
	}
	return nil
}

// block handles the header block frames of either direction.
func (s *side) block(f *frame, done func(s *side) error) error {
	if f.Type == http2.FrameContinuation {
		if !s.inBlock || f.StreamID != s.blockStream {
			return errors.New("CONTINUATION frame outside a header block")
		}
	} else {
		s.startBlock(f)
	}
	frag, err := headerBlockFragment(f)
	if err != nil {
		return err
	}
	end := f.Flags.Has(http2.FlagHeadersEndHeaders) // the same bit in all three frame types
	if s.blockIsPush {
		done = func(*side) error { return nil } // pushed requests are not counted; the block keeps the decoder in step
	}
	return s.decode(frag, end, done)
}

// serveRelay relays c to up until both are done. When the upstream ends
// or fails before its first frame (it does not speak HTTP/2, or closed
// at once), nothing has reached the client yet: serveRelay then returns
// everything the client sent, to be replayed to the fallback server, and
// ok.
func (p *Proxy) serveRelay(c *conn.Conn, up net.Conn) (replay []byte, ok bool) {
	r := &relay{
		p: p, client: c, clientIO: c.Conn, up: up, upIO: conn.RawIO(up),
		streams: map[uint32]*stream{}, verdict: make(chan struct{}),
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		r.source = a.AddrPort()
	}
	r.requests.init()
	r.requests.scan.skip = len(http2.ClientPreface)
	r.responses.init()
	c.OnDrain(func() { go r.drain() })
	defer c.OnDrain(nil)
	// At the drain timeout's end the upstream is closed too, also one
	// that never sent its first frame.
	c.OnAbort(r.abort)
	defer c.OnAbort(nil)
	if p.keepAlive > 0 {
		r.mu.Lock()
		r.lastActive = time.Now()
		r.idleTimer = time.AfterFunc(p.keepAlive, r.checkIdle)
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.idleTimer.Stop()
			r.mu.Unlock()
		}()
	}

	// Bytes read during detection (the preface, perhaps more) go first;
	// the reader that holds them is not read again.
	prefix, _ := c.Reader.Peek(c.Reader.Buffered())
	done := make(chan struct{})
	go func() {
		defer close(done)
		counts := c.Counts()
		r.pump(c.Raw(), func(n int) { counts.Transferred(int64(n), 0) }, prefix, &r.requests, r.fromClient, r.writeUpstream, r.upIO)
	}()
	r.pump(up, func(int) {}, nil, &r.responses, r.fromUpstream, r.writeClient, r.clientIO)
	if !r.confirmed.Load() {
		r.gate.Lock()
		r.fallback = true
		r.gate.Unlock()
		close(r.verdict)
	}
	if r.fallback && !r.aborted.Load() && !r.calmed.Load() {
		up.Close()
		// The client's pump stops at its next read, keeping what it read.
		c.Raw().SetReadDeadline(time.Unix(1, 0))
		<-done
		c.Raw().SetReadDeadline(time.Time{})
		if !r.aborted.Load() {
			c.Reader.Discard(len(prefix)) // the backlog begins with them
			r.gate.Lock()
			defer r.gate.Unlock()
			return r.backlog, true
		}
	}
	<-done
	r.abort()
	r.finish()
	return nil, false
}

// maxBacklog is how much of the client's bytes the relay keeps while it
// waits for the upstream's first frame; beyond it, it reads no more from
// the client until then. A client may send about that much before it
// hears from the server: its first request and the first 64 KiB of
// flow-controlled data.
const maxBacklog = 128 << 10

// fromClientEarly passes the client's bytes while the upstream has not
// yet shown that it speaks HTTP/2: they are kept, and scanned and
// forwarded unless the upstream already failed (the requests they open
// are counted once it has shown it). It reports whether it took care of
// b.
func (r *relay) fromClientEarly(b []byte, scan func([]byte) error) (handled bool, err error) {
	r.gate.Lock()
	if !r.confirmed.Load() && !r.fallback && len(r.backlog) >= maxBacklog {
		r.gate.Unlock()
		<-r.verdict
		r.gate.Lock()
	}
	if r.confirmed.Load() {
		r.gate.Unlock()
		return false, nil
	}
	r.backlog = append(r.backlog, b...)
	fallback := r.fallback
	r.gate.Unlock()
	// Scanning and writing need no lock: only this goroutine does them,
	// and requestHeaders sees under mu whether confirm has run.
	if fallback {
		return true, nil
	}
	if err := scan(b); err != nil {
		return true, err
	}
	if _, err := r.upIO.Write(b); err != nil {
		// The upstream closed: its pump says how (an HTTP/1 answer to
		// the preface, say), and the bytes are in the backlog.
		r.p.log.Debug("h2 relay: write to the upstream before its first frame", "direction", r.p.direction, "err", err)
	}
	r.forwarded.Store(r.opened.Load())
	return true, nil
}

// confirm is called on the upstream's first frame (SETTINGS): the
// requests opened so far are counted, and the client's bytes are no
// longer kept.
func (r *relay) confirm() {
	r.gate.Lock()
	defer r.gate.Unlock()
	r.mu.Lock()
	ids := make([]uint32, 0, len(r.streams))
	for id, st := range r.streams {
		if st.early != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		r.countEarlyLocked(r.streams[id])
	}
	for _, rt := range r.earlyReset {
		rt.Request()
	}
	r.earlyReset = nil
	r.confirmed.Store(true)
	r.mu.Unlock()
	r.backlog = nil
	close(r.verdict)
}

// pump moves bytes from src to dst, scanning them on the way, until src
// ends (then dst's write half is closed) or either side fails (then both
// connections are closed). count sees the bytes read.
func (r *relay) pump(src net.Conn, count func(int), prefix []byte, s *side, onFrame func(*frame) error,
	write func([]byte) error, dst net.Conn) {
	rd := conn.NewPooledReader(src, &r.p.bufs)
	early := s == &r.requests
	scan := func(b []byte) error {
		s.now = time.Now()
		if err := s.scan.feed(b, onFrame); err != nil {
			r.p.log.Debug("h2 relay: closing connection", "direction", r.p.direction, "err", err)
			return err
		}
		return nil
	}
	pass := func(b []byte) error {
		if early {
			if !r.confirmed.Load() {
				if handled, err := r.fromClientEarly(b, scan); handled || err != nil {
					return err
				}
			}
			early = false
		}
		if err := scan(b); err != nil {
			return err
		}
		if err := write(b); err != nil {
			return err
		}
		if s == &r.requests {
			r.forwarded.Store(r.opened.Load())
		}
		return nil
	}
	discard := false // closed for abuse: the client's bytes are dropped until it closes
	// The upstream's pump leaves a connection whose upstream failed
	// before its first frame to serveRelay, and so does the client's
	// pump once that is known.
	toFallback := func() bool {
		if s == &r.responses {
			return !r.confirmed.Load() || r.calmed.Load()
		}
		r.gate.Lock()
		defer r.gate.Unlock()
		return r.fallback
	}
	failed := func(err error) bool {
		var ab *abuseError
		if errors.As(err, &ab) {
			if s == &r.requests {
				r.calm(ab.reason)
				discard = true
				return false
			}
			r.p.metrics.HTTP2Abuse(r.p.direction, ab.reason)
		}
		if !toFallback() {
			r.abort()
		}
		return true
	}
	if len(prefix) > 0 {
		if err := pass(prefix); err != nil && failed(err) {
			return
		}
	}
	for {
		bp, n, err := rd.Read()
		if n > 0 {
			count(n)
			var perr error
			if !discard {
				perr = pass((*bp)[:n])
			}
			r.p.bufs.Put(bp)
			if perr != nil && failed(perr) {
				return
			}
		}
		if err != nil {
			switch {
			case discard:
				r.abort()
			case toFallback():
			case errors.Is(err, io.EOF):
				conn.CloseWrite(dst)
			default:
				r.abort()
			}
			return
		}
	}
}

func (r *relay) writeUpstream(b []byte) error {
	_, err := r.upIO.Write(b)
	return err
}

func (r *relay) writeClient(b []byte) error {
	r.toClient.Lock()
	defer r.toClient.Unlock()
	if r.calmed.Load() {
		return errCalmed
	}
	r.clientWrote = true
	if _, err := r.clientIO.Write(b); err != nil {
		return err
	}
	r.clientAtBoundary = r.responses.scan.atBoundary()
	err := r.flushPendingLocked()
	r.closeIfIdleLocked()
	return err
}

func (r *relay) flushPendingLocked() error {
	if !r.clientAtBoundary || len(r.clientPending) == 0 {
		return nil
	}
	_, err := r.clientIO.Write(r.clientPending)
	r.clientPending = nil
	return err
}

// sendClient writes a frame of the relay's own to the client, at once if
// the client's byte stream is at a frame boundary (and the upstream's
// first SETTINGS went out), else as soon as it is.
func (r *relay) sendClient(f []byte) {
	r.toClient.Lock()
	defer r.toClient.Unlock()
	r.clientPending = append(r.clientPending, f...)
	if r.flushPendingLocked() != nil {
		r.abort()
	}
	r.closeIfIdleLocked()
}

// closeIfIdle ends a drained connection once its last stream is done and
// all the client was sent ends at a frame boundary.
func (r *relay) closeIfIdle() {
	r.toClient.Lock()
	defer r.toClient.Unlock()
	r.closeIfIdleLocked()
}

// closeIfIdleLocked half-closes both connections when the relay is idle:
// each peer reads to the end of what it was sent, then closes, and the
// pumps end.
func (r *relay) closeIfIdleLocked() {
	if !r.idle.Load() || !r.clientAtBoundary || len(r.clientPending) > 0 {
		return
	}
	r.closeOnce.Do(func() {
		conn.CloseWrite(r.upIO)
		conn.CloseWrite(r.clientIO)
		// A peer that never closes its side does not keep the
		// connection (and the drain) waiting.
		time.AfterFunc(drainLinger, r.abort)
	})
}

var errCalmed = errors.New("connection closed for abuse")

// calm ends an abusive client's connection: nothing more of it goes
// upstream (that connection is closed), and the client gets GOAWAY with
// ENHANCE_YOUR_CALM naming the last stream that went upstream, when what
// it was sent ends at a frame boundary (preceded by SETTINGS when it got
// nothing yet, as its first frame must be). Its write half is then
// closed; what it still sends is read and dropped until it closes, or
// for drainLinger, so the GOAWAY is not lost to a reset.
func (r *relay) calm(reason string) {
	if !r.calmed.CompareAndSwap(false, true) {
		return
	}
	r.p.metrics.HTTP2Abuse(r.p.direction, reason)
	r.p.log.Debug("h2 relay: closing an abusive connection", "direction", r.p.direction, "reason", reason, "client", r.source)
	r.up.Close()
	r.toClient.Lock()
	var f []byte
	if !r.clientWrote {
		f = settingsFrame()
	}
	if !r.clientWrote || r.clientAtBoundary {
		f = append(f, goAwayFrame(r.forwarded.Load(), http2.ErrCodeEnhanceYourCalm)...)
		r.clientIO.Write(f)
	}
	r.toClient.Unlock()
	conn.CloseWrite(r.clientIO)
	r.client.Raw().SetReadDeadline(time.Now().Add(drainLinger))
}

// abort closes both connections; the pumps then end.
func (r *relay) abort() {
	r.abortOnce.Do(func() {
		r.aborted.Store(true)
		r.client.Raw().Close()
		r.up.Close()
	})
}

// fromClient reads the frames the client sends.
func (r *relay) fromClient(f *frame) error {
	if err := r.requests.expectContinuation(f); err != nil {
		return err
	}
	switch f.Type {
	case http2.FrameHeaders, http2.FrameContinuation, http2.FramePushPromise:
		return r.requests.block(f, r.requestHeaders)
	case http2.FrameRSTStream:
		if len(f.Payload) == 4 {
			err := r.reset(f.StreamID, false, http2.ErrCode(binary.BigEndian.Uint32(f.Payload)))
			r.closeIfIdle()
			return err
		}
	case http2.FrameSettings:
		if v, ok := headerTableSize(f); ok {
			r.responses.announced.Store(v)
		}
	}
	return nil
}

// fromUpstream reads the frames the upstream sends.
func (r *relay) fromUpstream(f *frame) error {
	if !r.confirmed.Load() {
		r.confirm()
	}
	if err := r.responses.expectContinuation(f); err != nil {
		return err
	}
	switch f.Type {
	case http2.FrameHeaders, http2.FrameContinuation, http2.FramePushPromise:
		return r.responses.block(f, r.responseHeaders)
	case http2.FrameData:
		if f.Flags.Has(http2.FlagDataEndStream) || r.tapped.Load() > 0 {
			r.responseData(f)
		}
	case http2.FrameRSTStream:
		if len(f.Payload) == 4 {
			r.reset(f.StreamID, true, http2.ErrCode(binary.BigEndian.Uint32(f.Payload)))
		}
	case http2.FrameSettings:
		if v, ok := headerTableSize(f); ok {
			r.requests.announced.Store(v)
		}
	case http2.FrameGoAway:
		if len(f.Payload) >= 8 {
			r.refusedAfter(binary.BigEndian.Uint32(f.Payload) & (1<<31 - 1))
		}
	}
	return nil
}

// requestHeaders starts a stream, or reads a request's trailers. A client
// with more than maxClientStreams open at once is refused.
func (r *relay) requestHeaders(s *side) error {
	id := s.blockStream
	r.mu.Lock()
	defer r.mu.Unlock()
	if id%2 == 0 || id <= r.lastClient {
		return nil // trailers of a request already counted
	}
	if len(r.streams) >= maxClientStreams {
		return &abuseError{abuseConcurrentStreams, fmt.Sprintf("more than %d streams open", maxClientStreams)}
	}
	r.lastClient = id
	r.opened.Store(id)
	if s.now.Sub(r.windowStart) >= resetWindow {
		r.windowStart, r.windowOpened, r.windowPremature = s.now, 0, 0
	}
	r.windowOpened++
	r.lastActive = s.now
	authority := s.fields.authority
	if authority == "" {
		authority = s.fields.host
	}
	st := &stream{
		route: r.p.metrics.RouteString(r.p.direction, authority, false),
		start: s.now,
		grpc:  metrics.NoGRPCStatus,
	}
	if r.confirmed.Load() {
		r.countLocked(st, s.fields.method, s.fields.scheme, authority, s.fields.path)
	} else {
		st.early = &earlyRequest{s.fields.method, s.fields.scheme, authority, s.fields.path}
	}
	r.streams[id] = st
	return nil
}

// earlyRequest is what tap is told of a request opened before the
// upstream's first frame, once it comes.
type earlyRequest struct {
	method, scheme, authority, path string
}

// countEarlyLocked counts a request opened before the upstream's first
// frame.
func (r *relay) countEarlyLocked(st *stream) {
	e := st.early
	st.early = nil
	r.countLocked(st, e.method, e.scheme, e.authority, e.path)
}

// countLocked counts a stream's request, and offers it to tap.
func (r *relay) countLocked(st *stream, method, scheme, authority, path string) {
	st.route.Request()
	if r.p.tap != nil && r.p.tap.Observing() {
		st.call = r.p.tap.Start(&tap.Request{
			Time: st.start, Direction: r.p.direction,
			Conn: r.client.ID, Stream: r.client.NextRequest(),
			Source: r.source, Destination: r.client.OrigDst,
			Method: method, Scheme: scheme, Authority: authority, Path: path,
		})
		if st.call != nil {
			r.tapped.Add(1)
		}
	}
}

// responseHeaders reads a response's headers or trailers.
func (r *relay) responseHeaders(s *side) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.streams[s.blockStream]
	if st == nil {
		return nil
	}
	if !st.answered {
		if s.fields.status >= 100 && s.fields.status < 200 {
			return nil // informational; the final response follows
		}
		st.answered, st.status, st.ttfb = true, s.fields.status, s.now.Sub(st.start)
		st.call.Response(st.status, s.now)
	}
	if s.fields.grpcStatus != metrics.NoGRPCStatus {
		st.grpc = s.fields.grpcStatus
	}
	if s.blockEnds {
		r.endLocked(s.blockStream, st, ended, "")
	}
	return nil
}

func (r *relay) responseData(f *frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.streams[f.StreamID]
	if st == nil {
		return
	}
	st.bytes += dataLength(f)
	if f.Flags.Has(http2.FlagDataEndStream) {
		r.endLocked(f.StreamID, st, ended, "")
	}
}

// reset ends a stream that either side reset. A client that resets more
// than maxPrematureResets streams within prematureAge of opening them,
// and at least as many as it lets finish, in resetWindow, is abusive
// (rapid reset).
func (r *relay) reset(id uint32, byUpstream bool, code http2.ErrCode) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.streams[id]
	if st == nil {
		return nil
	}
	if byUpstream {
		r.endLocked(id, st, failed, "reset by the server: "+code.String())
		return nil
	}
	r.endLocked(id, st, cancelled, "reset by the client: "+code.String())
	if now := r.requests.now; now.Sub(st.start) < prematureAge && !st.start.Before(r.windowStart) {
		r.windowPremature++
		if r.windowPremature >= maxPrematureResets && 2*r.windowPremature >= r.windowOpened {
			return &abuseError{abuseRapidReset, fmt.Sprintf("%d of %d streams reset at once", r.windowPremature, r.windowOpened)}
		}
	}
	return nil
}

// refusedAfter forgets the streams an upstream GOAWAY says were never
// processed: the client retries them elsewhere.
func (r *relay) refusedAfter(last uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, st := range r.streams {
		if id > last {
			delete(r.streams, id)
			r.untapLocked(st)
			st.call.End(0, tap.NoGRPCStatus, "refused by the server's GOAWAY", time.Now())
		}
	}
}

// endLocked records a stream's end. A response that began and then broke
// off is a failure whatever its status; a stream the client reset before
// any response is not a response at all and counts nowhere.
func (r *relay) endLocked(id uint32, st *stream, how outcome, reason string) {
	delete(r.streams, id)
	now := time.Now()
	r.lastActive = now
	if r.closing && len(r.streams) == 0 {
		r.idle.Store(true)
	}
	if st.early != nil {
		// Ended before the upstream said anything: counted once it does,
		// or now if the connection broke.
		if how != failed {
			r.earlyReset = append(r.earlyReset, st.route)
			return
		}
		r.countEarlyLocked(st)
	}
	r.untapLocked(st)
	switch {
	case how == ended:
		st.route.Response(st.status, st.grpc).Observe(st.ttfb)
	case st.answered:
		st.route.Failed(st.status).Observe(st.ttfb)
	case how == failed:
		st.route.Failed(metrics.NoStatus).Observe(now.Sub(st.start))
	}
	st.call.End(st.bytes, st.grpc, reason, now)
}

func (r *relay) untapLocked(st *stream) {
	if st.call != nil {
		r.tapped.Add(-1)
	}
}

// finish ends the streams still open when the connection closed.
func (r *relay) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, st := range r.streams {
		r.endLocked(id, st, failed, "connection closed")
	}
}

// Limits on what a client may make the upstream do; see the package
// README for how they compare with other servers'.
const (
	// maxClientStreams is how many streams a client may have open at
	// once. The relay does not announce it (SETTINGS pass end to end; a
	// client keeps to its server's SETTINGS_MAX_CONCURRENT_STREAMS), so
	// it is well above what servers announce (Go 100 to 250, nginx 128).
	maxClientStreams = 1000
	// maxPrematureResets streams reset by the client within prematureAge
	// of opening them, and at least half of those it opened, within
	// resetWindow, is a rapid reset attack (CVE-2023-44487).
	maxPrematureResets = 100
	prematureAge       = time.Second
	resetWindow        = 10 * time.Second
)

// checkIdle closes the connection gracefully, as drain does, once no
// stream has been open for the keep-alive timeout.
func (r *relay) checkIdle() {
	r.mu.Lock()
	wait := r.p.keepAlive
	if len(r.streams) == 0 {
		wait -= time.Since(r.lastActive)
	}
	if wait > 0 {
		r.idleTimer.Reset(wait)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.p.log.Debug("h2 relay: closing an idle connection", "direction", r.p.direction, "client", r.source)
	r.drain()
}

// drainGrace is how long a client has, after the first GOAWAY, to see it
// before the final one names the last stream the upstream will serve.
const drainGrace = time.Second

// drainLinger is how long a drained connection waits, once both write
// halves are closed, for the peers to close theirs.
const drainLinger = time.Second

// drain ends the connection gracefully (RFC 9113 section 6.8): a GOAWAY
// that stops new streams, then, after a grace period, the final GOAWAY;
// the connection closes once the streams in flight are done.
func (r *relay) drain() {
	r.drainOnce.Do(r.drainNow)
}

func (r *relay) drainNow() {
	r.sendClient(goAwayFrame(1<<31-1, http2.ErrCodeNo))
	time.Sleep(drainGrace)
	r.mu.Lock()
	last := r.lastClient
	r.closing = true
	if len(r.streams) == 0 {
		r.idle.Store(true)
	}
	r.mu.Unlock()
	r.sendClient(goAwayFrame(last, http2.ErrCodeNo))
}
