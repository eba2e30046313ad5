package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/meshstat/tap"
	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/internal/grpcapp"
	"github.com/conduitmesh/conduit/proxy/integration/internal/httpapp"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

const tapAppPort = 8080

// tapApp answers by path: /ok with "hello", /api/... with 201 and "made",
// anything else 404 with no body.
func tapApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ok":
			io.WriteString(w, "hello")
		case strings.HasPrefix(r.URL.Path, "/api/"):
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "made")
		default:
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusNotFound)
		}
	})
}

// tapStream is a subscription to one proxy's tap, read as meshstat reads
// it: one JSON line per contract.TapEvent.
type tapStream struct {
	events chan contract.TapEvent
	errs   chan error
}

// subscribe opens the tap of the proxy in ns (from inside that namespace,
// as the API server's pod proxy reaches it) with the query q.
func subscribe(t *testing.T, ns *meshtest.NetNS, q neturl.Values) *tapStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	u := fmt.Sprintf("http://127.0.0.1:%d%s?%s", contract.ProxyTapPort, contract.TapPath, q.Encode())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := ns.HTTPClient(0).Do(req)
	if err != nil {
		t.Fatalf("tap %s: %v", u, err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != contract.TapContentType {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("tap %s: %s %q: %s", u, resp.Status, resp.Header.Get("Content-Type"), b)
	}
	s := &tapStream{events: make(chan contract.TapEvent, 1000), errs: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var e contract.TapEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				s.errs <- fmt.Errorf("line %q: %v", sc.Text(), err)
				return
			}
			s.events <- e
		}
	}()
	return s
}

// next returns the next event, failing after timeout.
func (s *tapStream) next(t *testing.T, timeout time.Duration) contract.TapEvent {
	t.Helper()
	select {
	case e := <-s.events:
		return e
	case err := <-s.errs:
		t.Fatal(err)
	case <-time.After(timeout):
		t.Fatalf("no tap event within %v", timeout)
	}
	return contract.TapEvent{}
}

// requests reads n whole requests (req, rsp, end with one id each, in that
// order) and returns them by request.
func (s *tapStream) requests(t *testing.T, n int) [][3]contract.TapEvent {
	t.Helper()
	var out [][3]contract.TapEvent
	open := map[string]int{}
	done := 0
	for done < n {
		e := s.next(t, 10*time.Second)
		switch e.Type {
		case contract.TapRequest:
			if _, dup := open[e.ID]; dup {
				t.Fatalf("second req event for id %s", e.ID)
			}
			open[e.ID] = len(out)
			out = append(out, [3]contract.TapEvent{e})
		case contract.TapResponse, contract.TapEnd:
			i, ok := open[e.ID]
			if !ok {
				t.Fatalf("%s event for id %s before its req: %+v", e.Type, e.ID, e)
			}
			slot := 1
			if e.Type == contract.TapEnd {
				slot = 2
				done++
			}
			if out[i][slot].Type != "" || (slot == 2 && out[i][1].Type == "") {
				t.Fatalf("%s event for id %s out of order: %+v", e.Type, e.ID, out[i])
			}
			out[i][slot] = e
		default:
			t.Fatalf("unexpected event %+v", e)
		}
	}
	return out
}

func TestTap(t *testing.T) {
	meshtest.RequireRoot(t, "curl")
	m := &testMesh{Mesh: meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{})}
	t.Cleanup(httpapp.Serve(m.listen(t, tapAppPort), tapApp()))

	// Bad parameters are refused naming the parameter.
	resp, err := m.Server.HTTPClient(5 * time.Second).Get(fmt.Sprintf("http://127.0.0.1:%d%s?max_rps=0", contract.ProxyTapPort, contract.TapPath))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "max_rps") {
		t.Fatalf("max_rps=0: %s %q", resp.Status, body)
	}

	all := subscribe(t, m.Server, nil)
	posts := subscribe(t, m.Client, neturl.Values{contract.TapParamMethod: {"POST"}})
	apiOnly := subscribe(t, m.Server, neturl.Values{
		contract.TapParamPathPrefix: {"/api/"},
		contract.TapParamAuthority:  {authority(tapAppPort)},
	})

	m.curl(t, "--http1.1", "-o", "/dev/null", url(tapAppPort, "/ok"))
	m.curl(t, "--http1.1", "-o", "/dev/null", url(tapAppPort, "/missing"))
	m.curl(t, "--http1.1", "-o", "/dev/null", "-d", "vote=1", url(tapAppPort, "/api/vote"))
	m.curl(t, "--http2-prior-knowledge", "-o", "/dev/null", url(tapAppPort, "/ok?via=h2"))

	got := all.requests(t, 4)
	type want struct {
		method, path string
		status       int
		bytes        int64
	}
	wants := []want{{"GET", "/ok", 200, 5}, {"GET", "/missing", 404, 0}, {"POST", "/api/vote", 201, 4}, {"GET", "/ok?via=<redacted>", 200, 5}} // query values are redacted by default
	ids := map[string]bool{}
	for i, w := range wants {
		req, rsp, end := got[i][0], got[i][1], got[i][2]
		ids[req.ID] = true
		for _, e := range got[i] {
			if e.Direction != contract.DirectionInbound || e.Destination != authority(tapAppPort) ||
				!strings.HasPrefix(e.Source, meshtest.ClientAddr.String()+":") || e.TLS || e.Time.IsZero() {
				t.Errorf("request %d: %s event with wrong common fields: %+v", i, e.Type, e)
			}
		}
		if req.Method != w.method || req.Path != w.path || req.Scheme != "http" || req.Authority != authority(tapAppPort) {
			t.Errorf("request %d: req %+v, want %s %s", i, req, w.method, w.path)
		}
		if rsp.Status != w.status || rsp.Latency <= 0 || rsp.Method != "" {
			t.Errorf("request %d: rsp %+v, want status %d", i, rsp, w.status)
		}
		if end.ResponseBytes != w.bytes || end.GRPCStatus != nil || end.Error != "" || end.Duration < 0 {
			t.Errorf("request %d: end %+v, want %d bytes", i, end, w.bytes)
		}
		for _, e := range got[i] {
			t.Log(tap.Line(tap.Event{TapEvent: e}, true))
		}
		// meshstat prints it.
		line := tap.Line(tap.Event{TapEvent: rsp}, false)
		if wantLine := fmt.Sprintf("rsp id=%s src=%s dst=%s :status=%d latency=", rsp.ID, rsp.Source, rsp.Destination, w.status); !strings.HasPrefix(line, wantLine) {
			t.Errorf("meshstat line %q, want it to start %q", line, wantLine)
		}
	}
	if len(ids) != 4 {
		t.Errorf("ids not unique: %v", ids)
	}

	// The client proxy's tap, filtered to POST: the outbound request only.
	p := posts.requests(t, 1)[0]
	if p[0].Method != "POST" || p[0].Direction != contract.DirectionOutbound || p[0].Path != "/api/vote" ||
		!strings.HasPrefix(p[0].Source, meshtest.ClientAddr.String()+":") || p[0].Destination != authority(tapAppPort) ||
		p[1].Status != 201 || p[2].ResponseBytes != 4 {
		t.Errorf("outbound POST events %+v", p)
	}
	a := apiOnly.requests(t, 1)[0]
	if a[0].Path != "/api/vote" {
		t.Errorf("path/authority filter let through %+v", a[0])
	}
	// Nothing else matched those filters.
	select {
	case e := <-posts.events:
		t.Errorf("method filter let through %+v", e)
	case e := <-apiOnly.events:
		t.Errorf("path filter let through %+v", e)
	case <-time.After(300 * time.Millisecond):
	}

	// gRPC: the end event carries grpc-status.
	gl := m.listen(t, grpcPort)
	gs, _ := grpcapp.NewServer()
	go gs.Serve(gl)
	t.Cleanup(gs.Stop)
	grpcTap := subscribe(t, m.Server, neturl.Values{contract.TapParamPathPrefix: {"/grpc.testing.TestService/"}})
	gc, err := grpc.NewClient(authority(grpcPort),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return m.Client.Dial(ctx, "tcp4", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := testpb.NewTestServiceClient(gc)
	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 10}); err != nil {
		t.Fatal(err)
	}
	_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "gone"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("UnaryCall with status: %v", err)
	}
	calls := grpcTap.requests(t, 2)
	for i, want := range []uint32{0, uint32(codes.NotFound)} {
		req, rsp, end := calls[i][0], calls[i][1], calls[i][2]
		if req.Method != "POST" || req.Path != "/grpc.testing.TestService/UnaryCall" || rsp.Status != 200 ||
			end.GRPCStatus == nil || *end.GRPCStatus != want {
			t.Errorf("gRPC call %d: %+v", i, calls[i])
		}
	}
	if calls[0][2].ResponseBytes < 10 {
		t.Errorf("gRPC response of %d bytes, want the 10-byte payload and framing", calls[0][2].ResponseBytes)
	}
	if line := tap.Line(tap.Event{TapEvent: calls[1][2]}, false); !strings.Contains(line, "grpc-status=NotFound") {
		t.Errorf("meshstat line %q lacks grpc-status=NotFound", line)
	}

	// Rate limit: at 1 request per second, a burst of 6 shows whole
	// requests only, and a dropped notice counts the rest.
	limited := subscribe(t, m.Server, neturl.Values{contract.TapParamMaxRPS: {"1"}})
	var urls []string
	for range 6 {
		urls = append(urls, "-o", "/dev/null", url(tapAppPort, "/ok"))
	}
	m.curl(t, append([]string{"--http1.1"}, urls...)...)
	shown := map[string]int{}
	var dropped uint64
	deadline := time.Now().Add(10 * time.Second)
	for dropped+uint64(len(shown)) < 6 && time.Now().Before(deadline) {
		e := limited.next(t, 5*time.Second)
		if e.Type == contract.TapDropped {
			dropped += e.Dropped
			continue
		}
		shown[e.ID]++
	}
	for id, n := range shown {
		if n != 3 {
			t.Errorf("request %s shown with %d events, want 3 (whole requests only)", id, n)
		}
	}
	if dropped+uint64(len(shown)) != 6 || dropped < 4 {
		t.Errorf("rate limit 1/s over a burst of 6: %d shown, %d counted dropped", len(shown), dropped)
	}
}
