package http1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/tap"
)

// recorder is a backend that records the method and path of every request
// that reaches it and answers each with its path.
type recorder struct {
	mu   sync.Mutex
	seen []string
	host []string
	be   *backend
}

func startRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.be = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, r.Method+" "+r.URL.RequestURI())
		rec.host = append(rec.host, r.Host)
		rec.mu.Unlock()
		io.WriteString(w, r.URL.Path)
	}))
	return rec
}

func (rec *recorder) requests() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.seen...)
}

// A request whose Connection field names Content-Length, Transfer-Encoding
// or Host must not lose that field as hop-by-hop while its body is still
// forwarded: the next hop would read the body as a second request
// (smuggling). The proxy refuses it with 400 and forwards nothing.
func TestConnectionNamingFramingRefused(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, rec.be.addr)
	hidden := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, tc := range []struct{ name, req string }{
		{"content-length", "POST /front HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: " +
			strconv.Itoa(len(hidden)) + "\r\n\r\n" + hidden},
		{"content-length listed with close", "POST /front HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, content-length\r\nContent-Length: " +
			strconv.Itoa(len(hidden)) + "\r\n\r\n" + hidden},
		{"transfer-encoding", "POST /front HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"0\r\n\r\n" + hidden},
		{"host", "GET /front HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := raw(t, p.addr, tc.req)
			if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, contract.ProxyErrorHeader+": framing field listed in Connection") {
				t.Fatalf("answered %q", out)
			}
			if strings.Count(out, "HTTP/1.1") != 1 {
				t.Fatalf("more than one response: %q", out)
			}
		})
	}
	if got := rec.requests(); len(got) != 0 {
		t.Fatalf("backend received %q", got)
	}
}

// Framing that two readers could take two ways, and fields a server behind
// the proxy might end early, are refused; each case decided as net/http,
// Envoy and nginx decide it (README, HTTP/1.1).
func TestAmbiguousRequestsRefused(t *testing.T) {
	tests := []struct {
		raw    string
		status int
	}{
		{"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nConnection: close, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: HOST\r\n\r\n", 400},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 501},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", 400},
		// Read as Content-Length by servers that map names to CGI variables.
		{"POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\nGET /x HTTP/1.1\r\n\r\n", 400},
		// Host: required on HTTP/1.1, one, and a valid authority.
		{"GET / HTTP/1.1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n", 400},
		{"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"GET http://user@evil/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"CONNECT a:443/x HTTP/1.1\r\nHost: a:443\r\n\r\n", 400},
		{"CONNECT user@a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400},
		{"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	}
	for _, tt := range tests {
		_, err := parse(t, tt.raw, true)
		if status, _ := requestErrorStatus(err); status != tt.status {
			t.Errorf("%q: got status %d (err %v), want %d", tt.raw, status, err, tt.status)
		}
	}
}

// Chunk lines are read as net/http reads them (CRLF only, no CR inside,
// hex digits with nothing between them) or refused; so are trailers that
// are not fields.
func TestChunkLinesStrict(t *testing.T) {
	for _, bad := range []string{
		"1 2\r\nx\r\n0\r\n\r\n",              // digits after whitespace
		"1 ;x\r\nx\r\n0\r\n\r\n",             // BWS before an extension: net/http refuses it
		"1\r\r\nx\r\n0\r\n\r\n",              // CR inside the line
		"1;a\rb\r\nx\r\n0\r\n\r\n",           // CR inside the extension
		"1;a\x00\r\nx\r\n0\r\n\r\n",          // NUL in the extension
		"0x1\r\nx\r\n0\r\n\r\n",              // 0x prefix
		"-1\r\nx\r\n0\r\n\r\n",               // sign
		"+1\r\nx\r\n0\r\n\r\n",               // sign
		"1\nx\r\n0\r\n\r\n",                  // bare LF
		"1\r\nx\n0\r\n\r\n",                  // bare LF after data
		"fffffffffffffffff\r\n",              // overflow
		"0\r\nX-A: 1\n\r\n",                  // bare LF in the trailer
		"0\r\nnot a field\r\n\r\n",           // trailer without a colon
		"0\r\n X-A: 1\r\n\r\n",               // obs-fold in the trailer
		"0\r\nX-A: a\x00b\r\n\r\n",           // NUL in a trailer value
		"0\r\n\n",                            // bare LF ends the trailer
		"1\r\nxx\r\n0\r\n\r\n",               // data longer than its size
		"0000000000000001\r\nx\r\n0\r\n\r\n", // 16 digits
	} {
		r := bufio.NewReader(strings.NewReader(bad))
		if err := copyChunked(bufio.NewWriter(io.Discard), r, false); err == nil {
			t.Errorf("%q: accepted", bad)
		} else if s, _ := bodyErrorStatus(err); s != 400 && !strings.Contains(err.Error(), "EOF") {
			t.Errorf("%q: %v answered %d, want 400", bad, err, s)
		}
	}
	for _, good := range []string{
		"1\r\nx\r\n0\r\n\r\n",
		"1;ext=v\r\nx\r\n0\r\n\r\n",
		"1;ext=\"q s\"\r\nx\r\n0\r\n\r\n",
		"1  \r\nx\r\n0\r\n\r\n", // trailing whitespace, which net/http trims
		"A\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n",
		"00000000000001\r\nx\r\n0\r\n\r\n",
	} {
		r := bufio.NewReader(strings.NewReader(good))
		if err := copyChunked(bufio.NewWriter(io.Discard), r, false); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

// A malformed chunked request body is answered with 400 (no response had
// started) and the connection closed, and the request counted.
func TestMalformedChunkedBodyAnswered(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, rec.be.addr)
	out := raw(t, p.addr, "POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "malformed chunked encoding") {
		t.Fatalf("answered %q", out)
	}
	if v := p.sample(t, "response_total", map[string]string{"authority": "app", "status_code": "400"}); v != 1 {
		t.Fatalf("response_total{status_code=400} = %v, want 1", v)
	}
}

// Heads, and single lines, up to 64 KiB pass: large cookies and JWTs.
func TestLargeFieldsPass(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo-Len", strconv.Itoa(len(r.Header.Get("Cookie"))+len(r.Header.Get("Authorization"))))
		w.Header().Set("X-Big", strings.Repeat("r", 20<<10))
		io.WriteString(w, "ok")
	}))
	p := startProxy(t, be.addr)
	c := p.client()
	for _, tc := range []struct{ name, field, value string }{
		{"60 KiB cookie", "Cookie", "s=" + strings.Repeat("c", 60<<10)},
		{"16 KiB JWT", "Authorization", "Bearer " + strings.Repeat("j", 16<<10)},
	} {
		req, _ := http.NewRequest("GET", "http://app/", nil)
		req.Header.Set(tc.field, tc.value)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body := drain(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("X-Echo-Len") != strconv.Itoa(len(tc.value)) ||
			len(resp.Header.Get("X-Big")) != 20<<10 {
			t.Fatalf("%s: %d %q %q", tc.name, resp.StatusCode, body, resp.Header.Get("X-Echo-Len"))
		}
	}
}

// A head over the limit is answered with 431, and counted; so are the
// other requests the proxy answers itself.
func TestRejectedRequestsCounted(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, rec.be.addr)
	for _, tc := range []struct {
		req    string
		status string
	}{
		{"GET / HTTP/1.1\r\nHost: big\r\nCookie: " + strings.Repeat("c", 70<<10) + "\r\n\r\n", "431"},
		{"GET / HTTP/1.1\r\nHost: big\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n", "431"},
		{"GET / HTTP/1.1\r\nHost: bad\r\nBad Name: 1\r\n\r\n", "400"},
		{"POST / HTTP/1.1\r\nHost: te\r\nTransfer-Encoding: gzip\r\n\r\n", "501"},
	} {
		out := raw(t, p.addr, tc.req)
		if !strings.HasPrefix(out, "HTTP/1.1 "+tc.status+" ") {
			t.Fatalf("answered %.80q, want %s", out, tc.status)
		}
	}
	for auth, want := range map[string]float64{"big": 2, "bad": 1, "te": 1} {
		if v := p.sample(t, "request_total", map[string]string{"authority": auth}); v != want {
			t.Errorf("request_total{authority=%s} = %v, want %v", auth, v, want)
		}
	}
	for auth, status := range map[string]string{"big": "431", "bad": "400", "te": "501"} {
		if v := p.sample(t, "response_total", map[string]string{"authority": auth, "status_code": status}); v == 0 {
			t.Errorf("response_total{authority=%s,status_code=%s} missing", auth, status)
		}
	}
	if got := rec.requests(); len(got) != 0 {
		t.Fatalf("backend received %q", got)
	}
}

// A response head line longer than the 4 KiB read buffer passes; a
// response head over the limit is a 502.
func TestLongResponseLines(t *testing.T) {
	for _, tc := range []struct {
		size   int
		status string
	}{{30 << 10, "200"}, {70 << 10, "502"}} {
		addr := rawBackend(t, func(c net.Conn) {
			defer c.Close()
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("b", tc.size)+"\r\nContent-Length: 2\r\n\r\nok")
		})
		p := startProxy(t, addr)
		out := raw(t, p.addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 "+tc.status+" ") {
			t.Fatalf("%d-byte response field: answered %.80q", tc.size, out)
		}
	}
}

// HTTP/1.1 without Host is refused (RFC 9112 section 3.2); HTTP/1.0 may
// go without and gets the original destination.
func TestHostRequired(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, rec.be.addr)
	if out := raw(t, p.addr, "GET /nohost HTTP/1.1\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 400 ") {
		t.Fatalf("HTTP/1.1 without Host answered %q", out)
	}
	if out := raw(t, p.addr, "GET /old HTTP/1.0\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 200 ") {
		t.Fatalf("HTTP/1.0 without Host answered %q", out)
	}
	if got := rec.requests(); len(got) != 1 || got[0] != "GET /old" || rec.host[0] != rec.be.addr {
		t.Fatalf("backend received %q with Host %q", got, rec.host)
	}
}

// An absolute-form target's authority wins over Host (RFC 9112 section
// 3.2.2): the proxy counts it and forwards it as Host, never the other.
func TestAbsoluteFormAuthorityWins(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, rec.be.addr)
	out := raw(t, p.addr, "GET http://target.ns:8080/p?q=1 HTTP/1.1\r\nHost: other.ns\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") {
		t.Fatalf("answered %q", out)
	}
	if len(rec.host) != 1 || rec.host[0] != "target.ns:8080" {
		t.Fatalf("backend saw Host %q, want target.ns:8080", rec.host)
	}
	if v := p.sample(t, "request_total", map[string]string{"authority": "target.ns:8080"}); v != 1 {
		t.Fatalf("request_total{authority=target.ns:8080} = %v", v)
	}
	if v := p.sample(t, "request_total", map[string]string{"authority": "other.ns"}); v != 0 {
		t.Fatalf("request_total{authority=other.ns} = %v", v)
	}
	h, err := parse(t, "GET HTTP://A.b/x HTTP/1.1\r\nHost: c\r\n\r\n", true)
	if err != nil || string(h.authority()) != "A.b" {
		t.Fatalf("authority %q %v", h.authority(), err)
	}
	if got := forwardedRequest(t, "GET http://a.b HTTP/1.1\r\nX: 1\r\nHost: c\r\n\r\n"); got != "GET http://a.b HTTP/1.1\r\nHost: a.b\r\nX: 1\r\n\r\n" {
		t.Fatalf("forwarded %q", got)
	}
}

// Methods are case-sensitive: "head" is not HEAD. Framing a lower-case
// head's response as bodiless left its body on the pooled upstream
// connection, where it was read as the next request's response.
func TestMethodCaseSensitive(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, rec.be.addr)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "head /first HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if b := drain(t, resp.Body); string(b) != "/first" {
		t.Fatalf("head: body %q", b)
	}
	io.WriteString(c, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err = http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if b := drain(t, resp.Body); string(b) != "/second" {
		t.Fatalf("second response: body %q", b)
	}
}

// A request the proxy refuses shows in tap like any other: its request,
// the proxy's status, and its end.
func TestRejectedRequestTapped(t *testing.T) {
	rec := startRecorder(t)
	hub := tap.NewHub()
	addr := startTappedProxy(t, rec.be.addr, hub)
	sub := hub.Subscribe(tap.Filter{}, 1000)
	defer sub.Close()
	out := raw(t, addr, "PROPFIND /dav HTTP/1.1\r\nHost: dav.ns\r\nBad Name: 1\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
		t.Fatalf("answered %q", out)
	}
	var events []contract.TapEvent
	deadline := time.Now().Add(5 * time.Second)
	for len(events) < 3 && time.Now().Before(deadline) {
		select {
		case <-sub.Ready():
			events = sub.Take(events)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if len(events) != 3 || events[0].Type != contract.TapRequest || events[0].Method != "PROPFIND" ||
		events[0].Authority != "dav.ns" || events[0].Path != "/dav" ||
		events[1].Type != contract.TapResponse || events[1].Status != 400 || events[2].Type != contract.TapEnd {
		t.Fatalf("tap events %+v", events)
	}
}

// The number of fields and of Connection options is bounded, so a head of
// many tiny fields holds bounded memory and applying Connection's list
// (options × fields) stays cheap.
func TestFieldCountsBounded(t *testing.T) {
	many := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("a:\r\n", maxFields) + "\r\n"
	if _, err := parse(t, many, true); err != errHeadTooLarge {
		t.Fatalf("%d fields: %v, want %v", maxFields+1, err, errHeadTooLarge)
	}
	if _, err := parse(t, "GET / HTTP/1.1\r\nHost: a\r\n"+strings.Repeat("a:\r\n", maxFields-1)+"\r\n", true); err != nil {
		t.Fatalf("%d fields: %v", maxFields, err)
	}
	opts := "GET / HTTP/1.1\r\nHost: a\r\nConnection: " + strings.Repeat("x,", maxConnOptions) + "y\r\n\r\n"
	_, err := parse(t, opts, true)
	if status, _ := requestErrorStatus(err); status != 400 {
		t.Fatalf("%d Connection options: %v (%d), want 400", maxConnOptions+1, err, status)
	}
}

// After refusing a request the proxy reads what the client still sends so
// the answer is not lost to a reset, but only for a while: a client that
// keeps the connection open, or keeps sending, is closed within the
// lingering time.
func TestLingerBounded(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, rec.be.addr)
	for _, flood := range []bool{false, true} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n")
		c.SetReadDeadline(start.Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 400 {
			t.Fatalf("flood=%v: %v %v", flood, resp, err)
		}
		stop := make(chan struct{})
		if flood {
			go func() {
				junk := make([]byte, 64<<10)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := c.Write(junk); err != nil {
						return
					}
				}
			}()
		}
		// The client holds its end open; the proxy's end must go.
		deadline := start.Add(lingerTime + 2*time.Second)
		for p.sample(t, contract.MetricTCPOpenConnections, nil) != 0 {
			if time.Now().After(deadline) {
				close(stop)
				t.Fatalf("flood=%v: the proxy still holds the connection after %v", flood, time.Since(start))
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(stop)
	}
}

// A Host that is not valid UTF-8 once reached the metrics as a label value,
// which Prometheus refuses with a panic that took the whole proxy down.
// It is a 400 now, and the proxy goes on serving.
func TestNonUTF8HostRefused(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, rec.be.addr)
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
		"GET http://\xff/ HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		if out := raw(t, p.addr, req); !strings.HasPrefix(out, "HTTP/1.1 400 ") {
			t.Fatalf("%q answered %q", req, out)
		}
	}
	if out := raw(t, p.addr, "GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(out, "/after") {
		t.Fatalf("after: %q", out)
	}
}
