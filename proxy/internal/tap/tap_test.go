package tap

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func request(stream uint64, method, authority, path string) *Request {
	return &Request{
		Time: t0, Conn: 7, Stream: stream, Direction: contract.DirectionInbound,
		Source:      netip.MustParseAddrPort("10.0.0.1:5000"),
		Destination: netip.MustParseAddrPort("[::ffff:10.0.0.2]:8080"),
		Method:      method, Scheme: "http", Authority: authority, Path: path,
	}
}

// whole drives one request through its three events.
func whole(h *Hub, r *Request) {
	c := h.Start(r)
	c.Response(200, r.Time.Add(3*time.Millisecond))
	c.End(42, NoGRPCStatus, "", r.Time.Add(5*time.Millisecond))
}

func TestNoSubscriberNoCall(t *testing.T) {
	h := NewHub()
	if h.Observing() {
		t.Fatal("a new hub reports a subscriber")
	}
	if c := h.Start(request(1, "GET", "a", "/")); c != nil {
		t.Fatal("Start without subscribers returned a call")
	}
	s := h.Subscribe(Filter{}, 10)
	if !h.Observing() {
		t.Fatal("Observing is false with a subscriber")
	}
	s.Close()
	if h.Observing() {
		t.Fatal("Observing stays true after the last subscriber left")
	}
	var nilHub *Hub
	if nilHub.Observing() {
		t.Fatal("nil hub observing")
	}
}

func TestEventsInOrderWithFields(t *testing.T) {
	h := NewHub()
	s := h.Subscribe(Filter{}, 10)
	defer s.Close()
	r := request(3, "POST", "web:80", "/api/vote")
	c := h.Start(r)
	c.Response(503, t0.Add(3*time.Millisecond))
	c.End(17, 14, "", t0.Add(10*time.Millisecond))
	c.End(99, 0, "again", t0.Add(time.Second)) // ignored
	got := s.Take(nil)
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3: %+v", len(got), got)
	}
	want := []contract.TapEventType{contract.TapRequest, contract.TapResponse, contract.TapEnd}
	for i, e := range got {
		if e.Type != want[i] || e.ID != "7:3" || e.Direction != "inbound" ||
			e.Source != "10.0.0.1:5000" || e.Destination != "10.0.0.2:8080" {
			t.Errorf("event %d = %+v", i, e)
		}
	}
	if q := got[0]; q.Method != "POST" || q.Scheme != "http" || q.Authority != "web:80" || q.Path != "/api/vote" || !q.Time.Equal(t0) {
		t.Errorf("req = %+v", q)
	}
	if p := got[1]; p.Status != 503 || p.Latency != 3*time.Millisecond || p.Method != "" {
		t.Errorf("rsp = %+v", p)
	}
	if e := got[2]; e.Duration != 7*time.Millisecond || e.ResponseBytes != 17 || e.GRPCStatus == nil || *e.GRPCStatus != 14 || e.Status != 0 {
		t.Errorf("end = %+v", e)
	}
}

func TestEndWithoutResponse(t *testing.T) {
	h := NewHub()
	s := h.Subscribe(Filter{}, 10)
	defer s.Close()
	c := h.Start(request(1, "GET", "a", "/"))
	c.End(0, NoGRPCStatus, "reset: CANCEL", t0.Add(time.Millisecond))
	c.Response(200, t0.Add(2*time.Millisecond)) // after the end: ignored
	got := s.Take(nil)
	if len(got) != 2 || got[1].Type != contract.TapEnd || got[1].Error != "reset: CANCEL" || got[1].GRPCStatus != nil {
		t.Fatalf("events = %+v", got)
	}
	if s.reserved != 0 {
		t.Fatalf("%d slots still reserved after the request ended", s.reserved)
	}
}

func TestFilters(t *testing.T) {
	h := NewHub()
	subs := map[string]*Subscription{
		"method":    h.Subscribe(Filter{Method: "POST"}, 100),
		"authority": h.Subscribe(Filter{Authority: "b:80"}, 100),
		"path":      h.Subscribe(Filter{PathPrefix: "/api"}, 100),
		"all3":      h.Subscribe(Filter{Method: "GET", Authority: "a", PathPrefix: "/api/"}, 100),
	}
	reqs := []*Request{
		request(1, "GET", "a", "/api/x"),
		request(2, "POST", "a", "/other"),
		request(3, "GET", "b:80", "/ap"),
		request(4, "GET", "b", "/api"),
	}
	for _, r := range reqs {
		whole(h, r)
	}
	want := map[string][]string{
		"method":    {"7:2"},
		"authority": {"7:3"},
		"path":      {"7:1", "7:4"},
		"all3":      {"7:1"},
	}
	for name, s := range subs {
		var ids []string
		for _, e := range s.Take(nil) {
			if e.Type == contract.TapRequest {
				ids = append(ids, e.ID)
			}
		}
		if strings.Join(ids, ",") != strings.Join(want[name], ",") {
			t.Errorf("filter %s saw %v, want %v", name, ids, want[name])
		}
		s.Close()
	}
}

// The limit counts requests: over it, whole requests are left out and a
// dropped notice with their number comes before the next one shown, or
// on its own once a second.
func TestRateLimitDropsWholeRequests(t *testing.T) {
	ck := &clock{t: t0}
	h := NewHub(WithClock(ck.now))
	s := h.Subscribe(Filter{}, 2)
	defer s.Close()
	for i := range 5 {
		whole(h, request(uint64(i+1), "GET", "a", "/"))
	}
	got := s.Take(nil)
	if len(got) != 6 {
		t.Fatalf("got %d events, want 2 whole requests: %+v", len(got), got)
	}
	for i, e := range got {
		if wantID := []string{"7:1", "7:2"}[i/3]; e.ID != wantID {
			t.Fatalf("event %d id %s, want %s", i, e.ID, wantID)
		}
	}
	// Within the same second nothing more is said.
	if got := s.Take(nil); len(got) != 0 {
		t.Fatalf("unexpected events %+v", got)
	}
	// A second later: the notice on its own.
	ck.add(time.Second)
	got = s.Take(nil)
	if len(got) != 1 || got[0].Type != contract.TapDropped || got[0].Dropped != 3 {
		t.Fatalf("want one dropped notice of 3, got %+v", got)
	}
	// The bucket is full again: two shown, one dropped; then a shown
	// request brings the notice first.
	for i := range 3 {
		whole(h, request(uint64(10+i), "GET", "a", "/"))
	}
	got = s.Take(nil)
	if len(got) != 6 || got[0].ID != "7:10" || got[3].ID != "7:11" {
		t.Fatalf("events %+v", got)
	}
	ck.add(500 * time.Millisecond) // one token back
	whole(h, request(20, "GET", "a", "/"))
	got = s.Take(nil)
	if len(got) != 4 || got[0].Type != contract.TapDropped || got[0].Dropped != 1 || got[1].ID != "7:20" {
		t.Fatalf("want notice of 1 then request 7:20, got %+v", got)
	}
}

// A reader that does not keep up loses whole requests, counted, and what
// it holds stays within QueueBytes however long the paths.
func TestSlowReaderDropsWholeRequests(t *testing.T) {
	h := NewHub()
	s := h.Subscribe(Filter{}, 1_000_000)
	defer s.Close()
	long := "/" + strings.Repeat("p", 2000)
	var open []*Call
	const offered = 1000
	for i := range offered {
		if c := h.Start(request(uint64(i), "GET", "a", long)); c != nil {
			open = append(open, c)
		}
		if s.bytes > QueueBytes {
			t.Fatalf("after %d requests the subscriber holds %d bytes, over %d", i+1, s.bytes, QueueBytes)
		}
	}
	perRequest := 3*eventOverhead + 3*len("7:999") + 3*len("10.0.0.1:5000") + 3*len("10.0.0.2:8080") + len("GET") + len("http") + len("a") + len(long)
	if len(open) == 0 || len(open) > QueueBytes/perRequest+1 || len(open) < QueueBytes/(perRequest+2*laterCost)-1 {
		t.Fatalf("%d requests admitted, want about %d", len(open), QueueBytes/perRequest)
	}
	for _, c := range open {
		c.Response(200, t0)
		c.End(0, NoGRPCStatus, "", t0)
	}
	if s.reserved != 0 || s.bytes > QueueBytes {
		t.Fatalf("reserved %d, holding %d bytes after the requests ended", s.reserved, s.bytes)
	}
	held := s.bytes
	got := s.Take(nil)
	if len(got) != 3*len(open) {
		t.Fatalf("%d events, want %d", len(got), 3*len(open))
	}
	// The taken events count until the next Take: the stream is writing
	// them.
	if s.bytes != held {
		t.Fatalf("holding %d bytes after Take, want still %d", s.bytes, held)
	}
	got = s.Take(got)
	if len(got) != 0 || s.bytes != 0 {
		t.Fatalf("events %+v, %d bytes", got, s.bytes)
	}
	whole(h, request(99999, "GET", "a", "/"))
	got = s.Take(got)
	if got[0].Type != contract.TapDropped || got[0].Dropped != offered-uint64(len(open)) {
		t.Fatalf("first event %+v, want a notice of %d drops", got[0], offered-len(open))
	}
	if got[1].ID != "7:99999" {
		t.Fatalf("then %+v, want the request", got[1])
	}
}

// A hub takes MaxSubscribers at once; one more is refused until one
// leaves.
func TestSubscriberCap(t *testing.T) {
	h := NewHub(WithMaxSubscribers(2))
	a, b := h.Subscribe(Filter{}, 1), h.Subscribe(Filter{}, 1)
	if a == nil || b == nil {
		t.Fatal("refused a subscriber under the cap")
	}
	if c := h.Subscribe(Filter{}, 1); c != nil {
		t.Fatal("took a subscriber over the cap")
	}
	a.Close()
	c := h.Subscribe(Filter{}, 1)
	if c == nil {
		t.Fatal("refused a subscriber after one left")
	}
	c.Close()
	b.Close()
	if NewHub().maxSubs != MaxSubscribers {
		t.Fatal("default cap")
	}
}

func TestHandlerRefusesOverTheCap(t *testing.T) {
	h := NewHub(WithMaxSubscribers(1))
	srv := httptest.NewServer(Handler(h))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+contract.TapPath, nil)
	first, err := http.DefaultClient.Do(req)
	if err != nil || first.StatusCode != 200 {
		t.Fatalf("first subscriber: %v %v", first, err)
	}
	defer first.Body.Close()
	resp, err := http.Get(srv.URL + contract.TapPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(body), "1 subscribers, its limit") {
		t.Fatalf("second subscriber: %s %q (Retry-After %q)", resp.Status, body, resp.Header.Get("Retry-After"))
	}
}

func TestRedactQuery(t *testing.T) {
	for in, want := range map[string]string{
		"/":                           "/",
		"/a/b":                        "/a/b",
		"/a?":                         "/a?",
		"/cb?code=abc&state=xyz":      "/cb?code=<redacted>&state=<redacted>",
		"/x?token=s3cr3t&empty=&flag": "/x?token=<redacted>&empty=&<redacted>",
		"/x?a=1=2&&b=3":               "/x?a=<redacted>&&b=<redacted>",
		"/p%3Fq?k=v":                  "/p%3Fq?k=<redacted>",
	} {
		if got := RedactQuery(in); got != want {
			t.Errorf("RedactQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

// Query values are redacted unless the subscriber asked for them, and a
// path filter cannot find a value by its prefix.
func TestQueryRedactedByDefault(t *testing.T) {
	h := NewHub()
	plain := h.Subscribe(Filter{}, 100)
	shown := h.Subscribe(Filter{ShowQuery: true}, 100)
	probe := h.Subscribe(Filter{PathPrefix: "/login?token=s"}, 100)
	defer plain.Close()
	defer shown.Close()
	defer probe.Close()
	whole(h, request(1, "GET", "a", "/login?token=s3cr3t&user=bob"))
	if got := plain.Take(nil); len(got) != 3 || got[0].Path != "/login?token=<redacted>&user=<redacted>" {
		t.Fatalf("default subscriber saw %+v", got)
	}
	if got := shown.Take(nil); len(got) != 3 || got[0].Path != "/login?token=s3cr3t&user=bob" {
		t.Fatalf("subscriber with query=1 saw %+v", got)
	}
	if got := probe.Take(nil); len(got) != 0 {
		t.Fatalf("a path filter matched a query value: %+v", got)
	}
}

func TestParseQuery(t *testing.T) {
	f, n, err := ParseQuery(url.Values{"method": {"GET"}, "authority": {"a:1"}, "path": {"/x"}, "max_rps": {"7"}})
	if err != nil || n != 7 || f != (Filter{Method: "GET", Authority: "a:1", PathPrefix: "/x"}) {
		t.Fatalf("got %+v %d %v", f, n, err)
	}
	if f, n, _ := ParseQuery(url.Values{}); n != contract.TapDefaultMaxRPS || f.ShowQuery {
		t.Fatalf("default max_rps %d, query shown %v", n, f.ShowQuery)
	}
	if f, _, err := ParseQuery(url.Values{"query": {"1"}}); err != nil || !f.ShowQuery {
		t.Fatalf("query=1: %+v %v", f, err)
	}
	for _, bad := range []struct{ q, want string }{
		{"max_rps=0", `max_rps "0"`},
		{"max_rps=-3", `max_rps "-3"`},
		{"max_rps=lots", `max_rps "lots"`},
		{"colour=red", `"colour"`},
		{"method=GET&method=POST", `"method" given 2 times`},
		{"method=G%20T", `method "G T"`},
		{"query=yes", `query "yes"`},
	} {
		q, _ := url.ParseQuery(bad.q)
		if _, _, err := ParseQuery(q); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: err %v, want it to name %s", bad.q, err, bad.want)
		}
	}
}

func TestHandlerStreams(t *testing.T) {
	h := NewHub()
	srv := httptest.NewServer(Handler(h))
	defer srv.Close()

	resp, err := http.Get(srv.URL + contract.TapPath + "?max_rps=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("bad max_rps: %s", resp.Status)
	}

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+contract.TapPath+"?path=/a", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != contract.TapContentType {
		t.Fatalf("%s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	if !h.Observing() {
		t.Fatal("hub not observing while a stream is open")
	}
	whole(h, request(1, "GET", "a", "/b"))
	whole(h, request(2, "GET", "a", "/a/1"))
	sc := bufio.NewScanner(resp.Body)
	var types []string
	for len(types) < 3 && sc.Scan() {
		var e contract.TapEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if e.ID != "7:2" {
			t.Fatalf("filtered-out request streamed: %s", sc.Text())
		}
		types = append(types, string(e.Type))
	}
	if strings.Join(types, ",") != "req,rsp,end" {
		t.Fatalf("types %v", types)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for h.Observing() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.Observing() {
		t.Fatal("subscriber still registered after the client went away")
	}
}

// BenchmarkObserving is the whole cost of tap per request while nobody
// subscribes: the check the protocol paths make.
func BenchmarkObserving(b *testing.B) {
	var o Observer = NewHub()
	n := 0
	for range b.N {
		if o.Observing() {
			n++
		}
	}
	if n != 0 {
		b.Fatal("observing with no subscriber")
	}
}
