package h2

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/net/http2"
)

// frameHeaderLen is the fixed size of an HTTP/2 frame header (RFC 9113
// section 4.1).
const frameHeaderLen = 9

// maxKeptPayload bounds the payload of a frame the relay reads (settings,
// resets, GOAWAY; header frames are bounded by maxHeaderBlock).
const maxKeptPayload = 1 << 20

// Limits on one header block (HEADERS or PUSH_PROMISE and its
// CONTINUATION frames), either way; over them the connection is closed,
// and the frame that went over is not forwarded. See the package README
// for how they compare with other servers'.
const (
	// maxHeaderBlock is the block's encoded size.
	maxHeaderBlock = 256 << 10
	// maxContinuations is how many CONTINUATION frames one block may
	// have: enough for maxHeaderBlock in 16 KiB frames.
	maxContinuations = 16
	// maxHeaderList is the block's decoded size as RFC 9113 section
	// 6.5.2 counts it (name, value and 32 bytes per field), which an
	// HPACK bomb makes far larger than the encoded size.
	maxHeaderList = 1 << 20
)

// Reasons a connection is closed for abuse (the metric's reason label).
const (
	abuseRapidReset        = "rapid_reset"
	abuseConcurrentStreams = "max_concurrent_streams"
	abuseContinuationFlood = "continuation_flood"
	abuseHeaderBlockSize   = "header_block_size"
	abuseHeaderListSize    = "header_list_size"
)

// abuseError is a peer that went over one of the relay's limits.
type abuseError struct {
	reason, detail string
}

func (e *abuseError) Error() string { return e.detail + " (" + e.reason + ")" }

// frame is one complete frame as the scanner reports it. Payload holds the
// frame's payload for the kinds the relay reads, and only the pad length
// byte (when padded) for DATA; it is valid until the callback returns.
type frame struct {
	Type     http2.FrameType
	Flags    http2.Flags
	StreamID uint32
	Length   uint32
	Payload  []byte
}

// frameScanner finds frame boundaries in a byte stream fed in arbitrary
// pieces, as they come off a socket, without copying the bytes it does not
// need: DATA payloads pass it by.
type frameScanner struct {
	skip    int  // preface bytes still to pass over
	started bool // the first frame's header was read
	hdr     [frameHeaderLen]byte
	hdrN    int
	cur     frame
	need    uint32 // payload bytes of cur still to come
	keep    bool   // whether cur's payload is kept
	payload []byte

	blockBytes  uint32 // the current header block's frame payloads so far
	blockFrames int    // its CONTINUATION frames so far
}

// kept reports whether the relay reads the payload of frames of type t.
func kept(t http2.FrameType) bool {
	switch t {
	case http2.FrameHeaders, http2.FrameContinuation, http2.FramePushPromise,
		http2.FrameRSTStream, http2.FrameSettings, http2.FrameGoAway:
		return true
	}
	return false
}

// atBoundary reports whether the bytes fed so far end at a frame boundary.
func (s *frameScanner) atBoundary() bool { return s.skip == 0 && s.hdrN == 0 }

// feed scans p and calls onFrame for every frame that p completes.
func (s *frameScanner) feed(p []byte, onFrame func(*frame) error) error {
	if s.skip > 0 {
		n := min(s.skip, len(p))
		s.skip -= n
		p = p[n:]
	}
	for len(p) > 0 {
		if s.hdrN < frameHeaderLen {
			n := copy(s.hdr[s.hdrN:], p)
			s.hdrN += n
			p = p[n:]
			if s.hdrN < frameHeaderLen {
				return nil
			}
			h := &s.hdr
			s.cur = frame{
				Length:   uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2]),
				Type:     http2.FrameType(h[3]),
				Flags:    http2.Flags(h[4]),
				StreamID: binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1),
			}
			if !s.started && s.cur.Type != http2.FrameSettings {
				// Both connection prefaces begin with SETTINGS (RFC 9113
				// section 3.4); anything else is not HTTP/2, such as an
				// HTTP/1 server's answer to the client preface.
				return errNotHTTP2
			}
			s.started = true
			if err := s.checkBlock(); err != nil {
				return err
			}
			s.need = s.cur.Length
			s.keep = kept(s.cur.Type)
			if s.keep && s.cur.Length > maxKeptPayload {
				return fmt.Errorf("%v frame of %d bytes exceeds the relay's limit of %d", s.cur.Type, s.cur.Length, maxKeptPayload)
			}
			s.payload = s.payload[:0]
		}
		n := min(s.need, uint32(len(p)))
		switch {
		case s.keep:
			s.payload = append(s.payload, p[:n]...)
		case n > 0 && len(s.payload) == 0 && s.cur.Type == http2.FrameData && s.cur.Flags.Has(http2.FlagDataPadded):
			s.payload = append(s.payload, p[0]) // the pad length
		}
		s.need -= n
		p = p[n:]
		if s.need == 0 {
			if err := s.complete(onFrame); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkBlock applies the header block limits to the frame whose header
// was just read, before any of its payload is kept or passed on.
func (s *frameScanner) checkBlock() error {
	switch s.cur.Type {
	case http2.FrameHeaders, http2.FramePushPromise:
		s.blockBytes, s.blockFrames = 0, 0
	case http2.FrameContinuation:
		s.blockFrames++
		if s.blockFrames > maxContinuations {
			return &abuseError{abuseContinuationFlood, fmt.Sprintf("header block of more than %d CONTINUATION frames", maxContinuations)}
		}
	default:
		return nil
	}
	s.blockBytes += s.cur.Length
	if s.blockBytes > maxHeaderBlock || s.cur.Length > maxHeaderBlock {
		return &abuseError{abuseHeaderBlockSize, fmt.Sprintf("header block of %d bytes or more exceeds the relay's limit of %d", s.blockBytes, maxHeaderBlock)}
	}
	return nil
}

func (s *frameScanner) complete(onFrame func(*frame) error) error {
	s.hdrN = 0
	s.cur.Payload = s.payload
	err := onFrame(&s.cur)
	if cap(s.payload) > 16<<10 {
		s.payload = nil // one large header block does not stay with the connection
	}
	return err
}

var errMalformed = errors.New("malformed frame")

// errNotHTTP2 is a peer whose first frame is not SETTINGS.
var errNotHTTP2 = errors.New("peer does not speak HTTP/2: first frame is not SETTINGS")

// headerBlockFragment is the header block fragment in a HEADERS,
// PUSH_PROMISE or CONTINUATION frame's payload: padding, priority and the
// promised stream id removed.
func headerBlockFragment(f *frame) ([]byte, error) {
	p := f.Payload
	if f.Type == http2.FrameContinuation {
		return p, nil
	}
	padded := (f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersPadded)) ||
		(f.Type == http2.FramePushPromise && f.Flags.Has(http2.FlagPushPromisePadded))
	pad := 0
	if padded {
		if len(p) < 1 {
			return nil, errMalformed
		}
		pad, p = int(p[0]), p[1:]
	}
	skip := 0
	if f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersPriority) {
		skip = 5 // stream dependency and weight
	}
	if f.Type == http2.FramePushPromise {
		skip = 4 // promised stream id
	}
	if len(p) < skip+pad {
		return nil, errMalformed
	}
	return p[skip : len(p)-pad], nil
}

// dataLength is a DATA frame's payload length without its padding.
func dataLength(f *frame) int64 {
	n := int64(f.Length)
	if f.Flags.Has(http2.FlagDataPadded) && len(f.Payload) == 1 {
		n -= 1 + int64(f.Payload[0])
	}
	return max(n, 0)
}

// headerTableSize is the SETTINGS_HEADER_TABLE_SIZE a SETTINGS frame
// announces, if it does.
func headerTableSize(f *frame) (uint32, bool) {
	if f.Flags.Has(http2.FlagSettingsAck) {
		return 0, false
	}
	var v uint32
	found := false
	for p := f.Payload; len(p) >= 6; p = p[6:] {
		if http2.SettingID(binary.BigEndian.Uint16(p)) == http2.SettingHeaderTableSize {
			v, found = binary.BigEndian.Uint32(p[2:]), true
		}
	}
	return v, found
}

// appendFrameHeader appends a frame header to b.
func appendFrameHeader(b []byte, t http2.FrameType, flags http2.Flags, streamID uint32, length int) []byte {
	b = append(b, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(flags))
	return binary.BigEndian.AppendUint32(b, streamID)
}

// settingsFrame is an empty SETTINGS frame.
func settingsFrame() []byte {
	return appendFrameHeader(make([]byte, 0, frameHeaderLen), http2.FrameSettings, 0, 0, 0)
}

// goAwayFrame is a GOAWAY frame with no debug data.
func goAwayFrame(lastStreamID uint32, code http2.ErrCode) []byte {
	b := appendFrameHeader(make([]byte, 0, frameHeaderLen+8), http2.FrameGoAway, 0, 0, 8)
	b = binary.BigEndian.AppendUint32(b, lastStreamID)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}
