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

// maxKeptPayload bounds the payload of a frame the relay reads (headers,
// settings, resets, GOAWAY). A header block larger than this is refused.
const maxKeptPayload = 1 << 20

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

// goAwayFrame is a GOAWAY frame with no debug data.
func goAwayFrame(lastStreamID uint32, code http2.ErrCode) []byte {
	b := appendFrameHeader(make([]byte, 0, frameHeaderLen+8), http2.FrameGoAway, 0, 0, 8)
	b = binary.BigEndian.AppendUint32(b, lastStreamID)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}
