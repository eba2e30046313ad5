package h2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// scanned is what the scanner reported for one frame.
type scanned struct {
	Type     http2.FrameType
	Stream   uint32
	Length   uint32
	Fragment string // header block fragment, for header frames
	Data     int64  // payload without padding, for DATA
}

func scanAll(t *testing.T, stream []byte, piece int) []scanned {
	t.Helper()
	s := frameScanner{skip: len(http2.ClientPreface)}
	var got []scanned
	onFrame := func(f *frame) error {
		sc := scanned{Type: f.Type, Stream: f.StreamID, Length: f.Length}
		switch f.Type {
		case http2.FrameHeaders, http2.FrameContinuation, http2.FramePushPromise:
			frag, err := headerBlockFragment(f)
			if err != nil {
				return err
			}
			sc.Fragment = string(frag)
		case http2.FrameData:
			sc.Data = dataLength(f)
		}
		got = append(got, sc)
		return nil
	}
	for p := stream; len(p) > 0; {
		n := min(piece, len(p))
		if err := s.feed(p[:n], onFrame); err != nil {
			t.Fatalf("piece size %d: %v", piece, err)
		}
		p = p[n:]
	}
	if !s.atBoundary() {
		t.Fatalf("piece size %d: not at a frame boundary after the last frame", piece)
	}
	return got
}

// The scanner finds the same frames however the bytes are cut, strips
// padding and priority from header blocks, and does not count DATA padding.
func TestFrameScannerAnyPieces(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&b, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 8192})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte("first"), PadLength: 7,
		Priority: http2.PriorityParam{StreamDep: 0, Weight: 9}})
	fr.WriteContinuation(1, true, []byte("second"))
	fr.WriteDataPadded(1, false, bytes.Repeat([]byte{'d'}, 100), make([]byte, 20))
	fr.WriteData(1, true, nil) // an empty frame that ends the stream
	fr.WriteSettingsAck()
	fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte("promised"), EndHeaders: true, PadLength: 3})
	fr.WriteRSTStream(3, http2.ErrCodeCancel)
	fr.WriteGoAway(3, http2.ErrCodeNo, []byte("bye"))
	want := []scanned{
		{Type: http2.FrameSettings, Length: 6},
		{Type: http2.FrameHeaders, Stream: 1, Length: 1 + 5 + 5 + 7, Fragment: "first"},
		{Type: http2.FrameContinuation, Stream: 1, Length: 6, Fragment: "second"},
		{Type: http2.FrameData, Stream: 1, Length: 1 + 100 + 20, Data: 100},
		{Type: http2.FrameData, Stream: 1},
		{Type: http2.FrameSettings},
		{Type: http2.FramePushPromise, Stream: 1, Length: 1 + 4 + 8 + 3, Fragment: "promised"},
		{Type: http2.FrameRSTStream, Stream: 3, Length: 4},
		{Type: http2.FrameGoAway, Length: 8 + 3},
	}
	for _, piece := range []int{1, 2, 3, 5, 9, 10, 64, b.Len()} {
		got := scanAll(t, b.Bytes(), piece)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("piece size %d:\n got %v\nwant %v", piece, got, want)
		}
	}
}

func TestFrameScannerRefusesHugeHeaderFrames(t *testing.T) {
	var b bytes.Buffer
	http2.NewFramer(&b, nil).WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, make([]byte, maxKeptPayload+1))
	s := frameScanner{started: true}
	if err := s.feed(b.Bytes(), func(*frame) error { return nil }); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("a header frame over the limit: %v, want a refusal", err)
	}
	// DATA frames of any size pass without being kept.
	b.Reset()
	http2.NewFramer(&b, nil).WriteRawFrame(http2.FrameData, 0, 1, make([]byte, maxKeptPayload+1))
	s = frameScanner{started: true}
	if err := s.feed(b.Bytes(), func(*frame) error { return nil }); err != nil {
		t.Fatalf("a large DATA frame: %v", err)
	}
	if cap(s.payload) > 1 {
		t.Fatalf("the scanner kept %d bytes of DATA", cap(s.payload))
	}
}

func TestHeaderTableSize(t *testing.T) {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	s := frameScanner{}
	var got []string
	s.feed(b.Bytes(), func(f *frame) error {
		v, ok := headerTableSize(f)
		got = append(got, fmt.Sprint(v, ok))
		return nil
	})
	if fmt.Sprint(got) != "[0 true]" {
		t.Fatalf("header table size %v, want [0 true]", got)
	}
}

// Many requests whose header fields churn the HPACK dynamic tables both
// ways (new authorities, large values that evict older entries): the
// relay's decoders stay in step with the peers', so every request and
// response is counted under the right authority and status.
func TestRelayDecodersStayInStep(t *testing.T) {
	be := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.Header().Set("X-Echo", r.Header.Get("X-Pad"))
		w.WriteHeader(code)
	}))
	p := startProxy(t, be)
	c := h2cClient(p.addr)
	const n = 120
	for i := range n {
		code := 200 + i%3 // 200, 201, 202
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://host-%d.test/?code=%d", i%40, code), nil)
		req.Header.Set("X-Pad", strings.Repeat(strconv.Itoa(i), 700/len(strconv.Itoa(i))))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code || resp.Header.Get("X-Echo") != req.Header.Get("X-Pad") {
			t.Fatalf("request %d: %d, echo of %d bytes", i, resp.StatusCode, len(resp.Header.Get("X-Echo")))
		}
	}
	for h := range 40 {
		auth := fmt.Sprintf("host-%d.test", h)
		if v := p.sample(t, "request_total", map[string]string{"authority": auth}); v != 3 {
			t.Errorf("request_total{authority=%s} = %v, want 3", auth, v)
		}
	}
	for _, code := range []string{"200", "201", "202"} {
		var sum float64
		for h := range 40 {
			sum += p.sample(t, "response_total", map[string]string{"authority": fmt.Sprintf("host-%d.test", h), "status_code": code})
		}
		if sum != n/3 {
			t.Errorf("response_total{status_code=%s} = %v, want %d", code, sum, n/3)
		}
	}
}

// Header blocks larger than a frame arrive as HEADERS plus CONTINUATION
// frames, both ways; the relay decodes them across frames and reads.
func TestRelayHeaderBlocksInContinuations(t *testing.T) {
	big := strings.Repeat("c", 40<<10)
	be := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", r.Header.Get("X-Big"))
		w.WriteHeader(http.StatusAccepted)
	}))
	p := startProxy(t, be)
	req, _ := http.NewRequest("GET", "http://continued.test/", nil)
	req.Header.Set("X-Big", big)
	resp, err := h2cClient(p.addr).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Big") != big {
		t.Fatalf("got %d and %d bytes of X-Big", resp.StatusCode, len(resp.Header.Get("X-Big")))
	}
	if v := p.sample(t, "response_total", map[string]string{"authority": "continued.test", "status_code": "202"}); v != 1 {
		t.Fatalf("response_total{status_code=202} = %v, want 1", v)
	}
}

// A stream the server resets before any response is a failure with no
// status code.
func TestRelayResetBeforeResponse(t *testing.T) {
	be := startH2C(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler) // RST_STREAM, no headers
	}))
	p := startProxy(t, be)
	if resp, err := h2cClient(p.addr).Get("http://refused.test/"); err == nil {
		resp.Body.Close()
		t.Fatalf("got %s, want the stream reset", resp.Status)
	}
	l := map[string]string{"authority": "refused.test", "status_code": "", "classification": "failure"}
	if v := p.sample(t, "response_total", l); v != 1 {
		t.Fatalf("response_total%v = %v, want 1", l, v)
	}
}

// A peer whose first frame is not SETTINGS does not speak HTTP/2.
func TestFrameScannerWantsSettingsFirst(t *testing.T) {
	s := frameScanner{}
	err := s.feed([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), func(*frame) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "does not speak HTTP/2") {
		t.Fatalf("an HTTP/1 answer: %v, want a refusal", err)
	}
}

// An upstream that answers the client preface with HTTP/1 gets nothing
// more, and the client nothing of its answer: the connection goes to the
// fallback server, which answers the request with 502 and the reason,
// counted once, however the upstream's answer and the client's request
// race.
func TestRelayUpstreamNotHTTP2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()} // HTTP/1 only
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p := startProxy(t, ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://h1only.test/", nil)
	resp, err := h2cClient(p.addr).Do(req)
	if err != nil {
		t.Fatalf("the client got %v, want the proxy's 502", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(contract.ProxyErrorHeader) == "" {
		t.Fatalf("got %s (%s %q), want 502 with the reason", resp.Status, contract.ProxyErrorHeader, resp.Header.Get(contract.ProxyErrorHeader))
	}
	for _, l := range []map[string]string{
		{"authority": "h1only.test", "status_code": "502", "classification": "failure"},
		{"authority": "h1only.test", "status_code": "", "classification": "failure"},
	} {
		want := 0.0
		if l["status_code"] == "502" {
			want = 1
		}
		if v := p.sample(t, "response_total", l); v != want {
			t.Errorf("response_total%v = %v, want %v", l, v, want)
		}
	}
	if v := p.sample(t, "request_total", map[string]string{"authority": "h1only.test"}); v != 1 {
		t.Errorf("request_total = %v, want 1", v)
	}
}

// The relay's own GOAWAY is a well-formed frame the peer's framer reads.
func TestGoAwayFrame(t *testing.T) {
	f, err := http2.NewFramer(nil, bytes.NewReader(goAwayFrame(7, http2.ErrCodeNo))).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	g, ok := f.(*http2.GoAwayFrame)
	if !ok || g.LastStreamID != 7 || g.ErrCode != http2.ErrCodeNo {
		t.Fatalf("read back %v", f)
	}
}

// On drain the relay tells the client with GOAWAY, first for any stream
// and then, after the grace period, naming the last stream it opened; the
// stream in flight still gets its whole response, and then the
// connection ends.
func TestRelayDrainSendsGoAwayTwice(t *testing.T) {
	be := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte("finished"))
	}))
	p := startProxy(t, be)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "drain.test"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})

	// Drain once the request is with the server.
	time.Sleep(100 * time.Millisecond)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		shut <- p.srv.Shutdown(ctx)
	}()

	var goAways []uint32
	var body []byte
	ended := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("reading frames: %v (GOAWAYs %v, body %q)", err, goAways, body)
			}
			c.Close() // as a client does at the end of the connection
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			goAways = append(goAways, f.LastStreamID)
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			ended = ended || f.StreamEnded()
		case *http2.HeadersFrame:
			ended = ended || f.StreamEnded()
		}
	}
	if fmt.Sprint(goAways) != fmt.Sprint([]uint32{1<<31 - 1, 1}) {
		t.Errorf("GOAWAY last stream ids %v, want [%d 1]", goAways, uint32(1<<31-1))
	}
	if !ended || string(body) != "finished" {
		t.Errorf("stream 1 ended %v with body %q, want the whole response", ended, body)
	}
	if err := <-shut; err != nil {
		t.Errorf("drain: %v", err)
	}
}
