package adversarial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const h2floodPort = 8090

// h2floodBackend is a real Go h2c server in the server namespace that
// counts the handlers it starts.
type h2floodBackend struct{ started atomic.Int64 }

func h2floodServe(t *testing.T, m *meshtest.Mesh) *h2floodBackend {
	t.Helper()
	l, err := m.Server.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", h2floodPort))
	if err != nil {
		t.Fatal(err)
	}
	b := &h2floodBackend{}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP1(true)
	s := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.started.Add(1)
		io.WriteString(w, "ok")
	})}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return b
}

// h2floodClient is an attacker speaking HTTP/2 frame by frame from the
// client namespace, through both proxies.
type h2floodClient struct {
	c   net.Conn
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func h2floodDial(t *testing.T, m *meshtest.Mesh) *h2floodClient {
	t.Helper()
	c := m.DialServer(t, h2floodPort)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fc := &h2floodClient{c: c, fr: http2.NewFramer(c, c)}
	fc.enc = hpack.NewEncoder(&fc.hb)
	fc.fr.AllowIllegalWrites = true
	io.WriteString(c, http2.ClientPreface)
	fc.fr.WriteSettings()
	return fc
}

func (fc *h2floodClient) block(extra ...hpack.HeaderField) []byte {
	fc.hb.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", fmt.Sprintf("%s:%d", meshtest.ServerAddr, h2floodPort)}, {":path", "/"}} {
		fc.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for _, f := range extra {
		fc.enc.WriteField(f)
	}
	return append([]byte(nil), fc.hb.Bytes()...)
}

// goAway reads until a GOAWAY (returned) or the connection's end, then
// reads on to the end, which must come.
func (fc *h2floodClient) goAway(t *testing.T) *http2.GoAwayFrame {
	t.Helper()
	var g *http2.GoAwayFrame
	for g == nil {
		f, err := fc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("the connection ended without GOAWAY: %v", err)
		}
		g, _ = f.(*http2.GoAwayFrame)
	}
	fc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, fc.c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the proxy kept the connection open after GOAWAY")
	}
	return g
}

func h2floodAbuse(t *testing.T, p *meshtest.Proxy, reason string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := p.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ms.Sum(contract.MetricHTTP2AbuseTotal, meshtest.Labels{contract.LabelReason: reason})
}

// Rapid reset through both proxies: 20000 streams opened and reset at
// once. The client's proxy stops it with GOAWAY(ENHANCE_YOUR_CALM); the
// backend starts a bounded number of handlers (it started tens of
// thousands before), and a well-behaved client still gets through.
func TestH2FloodRapidReset(t *testing.T) {
	m := meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{})
	be := h2floodServe(t, m)
	fc := h2floodDial(t, m)
	const pairs = 20000
	go func() {
		for i := range pairs {
			id := uint32(2*i + 1)
			if fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.block(), EndStream: true, EndHeaders: true}) != nil ||
				fc.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	g := fc.goAway(t)
	if g.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", g.ErrCode)
	}
	if v := h2floodAbuse(t, m.ClientProxy, "rapid_reset"); v != 1 {
		t.Errorf("client proxy http2_abuse_total{reason=rapid_reset} = %v, want 1", v)
	}
	t.Logf("%d streams opened and reset: the backend started %d handlers", pairs, be.started.Load())
	if n := be.started.Load(); n > 200 {
		t.Errorf("the backend started %d handlers, want at most 200", n)
	}
	// A normal client is served.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p, DialContext: m.Client.Dial}}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d/", meshtest.ServerAddr, h2floodPort))
	if err != nil {
		t.Fatalf("a normal h2c request after the attack: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("a normal h2c request after the attack: %s %q", resp.Status, body)
	}
}

// CONTINUATION flood through both proxies: one header block that never
// ends, in one-byte and then empty frames. The connection is closed and
// no request reaches the backend.
func TestH2FloodContinuation(t *testing.T) {
	m := meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{})
	be := h2floodServe(t, m)
	fc := h2floodDial(t, m)
	blk := fc.block(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 4096)})
	go func() {
		if fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:10], EndStream: true}) != nil {
			return
		}
		for i := 10; i < len(blk); i++ {
			if fc.fr.WriteContinuation(1, false, blk[i:i+1]) != nil {
				return
			}
		}
		for fc.fr.WriteContinuation(1, false, nil) == nil {
		}
	}()
	g := fc.goAway(t)
	if g.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", g.ErrCode)
	}
	if v := h2floodAbuse(t, m.ClientProxy, "continuation_flood"); v != 1 {
		t.Errorf("client proxy http2_abuse_total{reason=continuation_flood} = %v, want 1", v)
	}
	if n := be.started.Load(); n != 0 {
		t.Errorf("the backend started %d handlers, want none", n)
	}
}
