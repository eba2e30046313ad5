package soak

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// soakKind says what a scenario's requests should do.
type soakKind int

const (
	// soakGood requests must succeed: they count towards the error rate.
	soakGood soakKind = iota
	// soakBad requests meet a backend that resets or hangs: they must not
	// succeed, and how they fail is only reported.
	soakBad
)

func (k soakKind) String() string {
	if k == soakGood {
		return "good"
	}
	return "bad"
}

// soakScenario is one kind of request; weight is its share per 1000.
type soakScenario struct {
	name   string
	weight int
	kind   soakKind
	run    func(ctx context.Context) error
}

// Client-side time limits: generous for requests that must succeed (the
// machine may be busy with other tests), short for the hanging ones.
const (
	soakGoodTimeout = 10 * time.Second
	soakHangTimeout = time.Second
)

// soakClients are the client namespace's connections to the backend.
type soakClients struct {
	ns                *meshtest.NetNS
	http1, churn, h2c *http.Client
	grpcConn          *grpc.ClientConn
	grpc              testpb.TestServiceClient
}

func newSoakClients(ns *meshtest.NetNS) (*soakClients, error) {
	transport := func(h1, h2c, keepAlive bool) *http.Transport {
		var p http.Protocols
		p.SetHTTP1(h1)
		p.SetUnencryptedHTTP2(h2c)
		return &http.Transport{
			DialContext:         ns.Dial,
			Protocols:           &p,
			DisableKeepAlives:   !keepAlive,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     5 * time.Second, // under --keepalive-timeout=10s (SOAK_PROXY_TIMEOUTS)
		}
	}
	c := &soakClients{
		ns:    ns,
		http1: &http.Client{Transport: transport(true, false, true)},
		churn: &http.Client{Transport: transport(true, false, false)},
		h2c:   &http.Client{Transport: transport(false, true, true)},
	}
	conn, err := grpc.NewClient(soakAuthority(soakGRPCPort),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return ns.Dial(ctx, "tcp4", addr)
		}))
	if err != nil {
		return nil, err
	}
	c.grpcConn, c.grpc = conn, testpb.NewTestServiceClient(conn)
	return c, nil
}

// Close closes every connection the clients keep.
func (c *soakClients) Close() {
	for _, hc := range []*http.Client{c.http1, c.churn, c.h2c} {
		hc.CloseIdleConnections()
	}
	c.grpcConn.Close()
}

func soakAuthority(port int) string { return fmt.Sprintf("%s:%d", meshtest.ServerAddr, port) }

func soakURL(path string) string { return "http://" + soakAuthority(soakHTTPPort) + path }

// soakStatusError is an answer with an unexpected status.
type soakStatusError struct{ code int }

func (e soakStatusError) Error() string { return fmt.Sprintf("status %d", e.code) }

// soakCheckBody reads the body and checks it is n bytes of soakPattern.
func soakCheckBody(r io.Reader, n int) error {
	buf := make([]byte, 32<<10)
	off := 0
	for {
		k, err := r.Read(buf)
		for i := range k {
			if buf[i] != soakPattern(off+i) {
				return fmt.Errorf("body byte %d differs", off+i)
			}
		}
		off += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if off != n {
		return fmt.Errorf("body of %d bytes, want %d", off, n)
	}
	return nil
}

// soakGet sends GET path and checks a 200 with n bytes of soakPattern.
func soakGet(ctx context.Context, c *http.Client, path string, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, soakURL(path), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return soakStatusError{resp.StatusCode}
	}
	if n < 0 {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	return soakCheckBody(resp.Body, n)
}

// soakGetPartial sends GET for a large body, reads its head and 16 KiB,
// then gives up on the rest: cancel closes the HTTP/1 connection or
// resets the HTTP/2 stream.
func soakGetPartial(ctx context.Context, c *http.Client) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, soakURL("/ok?n=1048576"), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return soakStatusError{resp.StatusCode}
	}
	_, err = io.CopyN(io.Discard, resp.Body, 16<<10)
	return err
}

func soakPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = soakPattern(i)
	}
	return b
}

func soakUploadAnswer(body []byte) string {
	sum := sha256.Sum256(body)
	return fmt.Sprintf("%d %s", len(body), hex.EncodeToString(sum[:]))
}

// soakRaw runs f on a new connection from the client namespace to port,
// closed afterwards, with the whole exchange bounded by ctx.
func (c *soakClients) soakRaw(ctx context.Context, port int, f func(conn *net.TCPConn) error) error {
	conn, err := c.ns.Dial(ctx, "tcp4", soakAuthority(port))
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	return f(conn.(*net.TCPConn))
}

// soakTrickle writes b in pieces pieces apart by gap.
func soakTrickle(w io.Writer, b []byte, pieces int, gap time.Duration) error {
	size := (len(b) + pieces - 1) / pieces
	for off := 0; off < len(b); off += size {
		if off > 0 {
			time.Sleep(gap)
		}
		if _, err := w.Write(b[off:min(off+size, len(b))]); err != nil {
			return err
		}
	}
	return nil
}

// soakSlowReader hands out at most 2 KiB per read, 20 ms apart: a client
// that reads its response slowly.
type soakSlowReader struct{ r io.Reader }

func (s soakSlowReader) Read(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	return s.r.Read(p[:min(len(p), 2048)])
}

// soakScenarios is the mix, per 1000 requests.
func (c *soakClients) soakScenarios() []soakScenario {
	host := soakAuthority(soakHTTPPort)
	upload := soakPayload(4096)
	slowUpload := soakPayload(8192)
	echo := soakPayload(1024)
	return []soakScenario{
		{"http1 keep-alive GET", 360, soakGood, func(ctx context.Context) error {
			return soakGet(ctx, c.http1, "/ok?n=1024", 1024)
		}},
		{"http1 keep-alive POST", 50, soakGood, func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, soakURL("/upload"), bytes.NewReader(upload))
			if err != nil {
				return err
			}
			resp, err := c.http1.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return soakStatusError{resp.StatusCode}
			}
			if want := soakUploadAnswer(upload); string(got) != want {
				return fmt.Errorf("upload answer %q, want %q", got, want)
			}
			return nil
		}},
		{"h2c GET", 150, soakGood, func(ctx context.Context) error {
			return soakGet(ctx, c.h2c, "/ok?n=1024", 1024)
		}},
		{"grpc unary", 150, soakGood, func(ctx context.Context) error {
			resp, err := c.grpc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 256, Payload: &testpb.Payload{Body: echo[:256]}})
			if err != nil {
				return err
			}
			if n := len(resp.GetPayload().GetBody()); n != 256 {
				return fmt.Errorf("grpc payload of %d bytes, want 256", n)
			}
			return nil
		}},
		{"http1 new connection", 100, soakGood, func(ctx context.Context) error {
			return soakGet(ctx, c.churn, "/ok?n=1024", 1024)
		}},
		{"opaque tcp echo", 30, soakGood, func(ctx context.Context) error {
			return c.soakRaw(ctx, soakOpaquePort, func(conn *net.TCPConn) error {
				return soakEcho(conn, echo)
			})
		}},
		{"detected tcp echo", 10, soakGood, func(ctx context.Context) error {
			return c.soakRaw(ctx, soakDetectedPort, func(conn *net.TCPConn) error {
				return soakEcho(conn, []byte("soak: not HTTP, echo me\n"))
			})
		}},
		{"tcp open and close", 10, soakGood, func(ctx context.Context) error {
			return c.soakRaw(ctx, soakDetectedPort, func(*net.TCPConn) error { return nil })
		}},
		{"slow backend (300 ms)", 20, soakGood, func(ctx context.Context) error {
			return soakGet(ctx, c.http1, "/slow?ms=300", -1)
		}},
		{"slow client (trickled head, slow read)", 20, soakGood, func(ctx context.Context) error {
			return c.soakRaw(ctx, soakHTTPPort, func(conn *net.TCPConn) error {
				head := "GET /ok?n=32768 HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: soak-slow\r\n\r\n"
				if err := soakTrickle(conn, []byte(head), 8, 100*time.Millisecond); err != nil {
					return err
				}
				resp, err := http.ReadResponse(bufio.NewReaderSize(soakSlowReader{conn}, 2048), nil)
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					return soakStatusError{resp.StatusCode}
				}
				return soakCheckBody(resp.Body, 32768)
			})
		}},
		{"slow client (trickled body)", 10, soakGood, func(ctx context.Context) error {
			return c.soakRaw(ctx, soakHTTPPort, func(conn *net.TCPConn) error {
				head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", host, len(slowUpload))
				if _, err := io.WriteString(conn, head); err != nil {
					return err
				}
				if err := soakTrickle(conn, slowUpload, 8, 100*time.Millisecond); err != nil {
					return err
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					return err
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					return soakStatusError{resp.StatusCode}
				}
				if want := soakUploadAnswer(slowUpload); string(got) != want {
					return fmt.Errorf("upload answer %q, want %q", got, want)
				}
				return nil
			})
		}},
		{"http1 client leaves mid-response", 20, soakGood, func(ctx context.Context) error {
			return soakGetPartial(ctx, c.churn)
		}},
		{"h2c client resets mid-response", 10, soakGood, func(ctx context.Context) error {
			return soakGetPartial(ctx, c.h2c)
		}},
		{"backend resets after the head", 20, soakBad, func(ctx context.Context) error {
			return soakGet(ctx, c.http1, "/reset", -1)
		}},
		{"backend resets mid-response", 20, soakBad, func(ctx context.Context) error {
			return soakGet(ctx, c.http1, "/reset-mid", 64<<10)
		}},
		{"http1 backend hangs", 10, soakBad, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, soakHangTimeout)
			defer cancel()
			return soakGet(ctx, c.http1, "/hang", -1)
		}},
		{"h2c backend hangs", 10, soakBad, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, soakHangTimeout)
			defer cancel()
			return soakGet(ctx, c.h2c, "/hang", -1)
		}},
	}
}

// soakEcho writes b, half-closes and expects b back, then the echo's end.
func soakEcho(conn *net.TCPConn, b []byte) error {
	if _, err := conn.Write(b); err != nil {
		return err
	}
	if err := conn.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, b) {
		return fmt.Errorf("echo of %d bytes, want %d", len(got), len(b))
	}
	return nil
}

// soakOrder spreads the scenarios over a cycle of sum(weights) slots by
// smooth weighted round robin, so every second of load has the same mix.
func soakOrder(scs []soakScenario) []int {
	total := 0
	for _, s := range scs {
		total += s.weight
	}
	current := make([]int, len(scs))
	order := make([]int, 0, total)
	for range total {
		best := -1
		for i, s := range scs {
			current[i] += s.weight
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		order = append(order, best)
	}
	return order
}

// soakTally is what the clients saw of one scenario.
type soakTally struct {
	sent, ok, shed int
	failures       map[string]int    // by class
	examples       map[string]string // one error per class
	latency        soakLatency
}

// soakLatency keeps request times in 1 ms buckets up to 10 s.
type soakLatency struct {
	buckets [10001]int
	n       int
}

func (l *soakLatency) add(d time.Duration) {
	l.buckets[min(int(d/time.Millisecond), len(l.buckets)-1)]++
	l.n++
}

// quantile is the bucket (in ms) holding the q-th request time.
func (l *soakLatency) quantile(q float64) int {
	if l.n == 0 {
		return 0
	}
	rank := int(q * float64(l.n-1))
	seen := 0
	for ms, c := range l.buckets {
		seen += c
		if seen > rank {
			return ms
		}
	}
	return len(l.buckets) - 1
}

// soakOutcomes are the tallies of all scenarios.
type soakOutcomes struct {
	mu       sync.Mutex
	scs      []soakScenario
	tally    []soakTally
	maxIn    int // most requests in flight at once
	inFlight int
}

func newSoakOutcomes(scs []soakScenario) *soakOutcomes {
	o := &soakOutcomes{scs: scs, tally: make([]soakTally, len(scs))}
	for i := range o.tally {
		o.tally[i].failures = map[string]int{}
		o.tally[i].examples = map[string]string{}
	}
	return o
}

func (o *soakOutcomes) record(i int, took time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := &o.tally[i]
	t.sent++
	t.latency.add(took)
	good := o.scs[i].kind == soakGood
	switch {
	case err == nil && good:
		t.ok++
	case err == nil:
		t.failures["succeeded"]++
	default:
		class := soakClass(err)
		t.failures[class]++
		if _, ok := t.examples[class]; !ok {
			t.examples[class] = err.Error()
		}
	}
}

func (o *soakOutcomes) shed(i int) {
	o.mu.Lock()
	o.tally[i].shed++
	o.mu.Unlock()
}

// soakClass names how a request failed, coarsely.
func soakClass(err error) string {
	var se soakStatusError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "eof"
	}
	if st, ok := status.FromError(err); ok {
		return "grpc " + st.Code().String()
	}
	// net/http wraps some errors as text only.
	msg := err.Error()
	for _, k := range []struct{ sub, class string }{
		{"connection reset", "reset"}, {"unexpected EOF", "eof"}, {"EOF", "eof"},
		{"stream error", "h2 stream error"}, {"timeout", "timeout"},
	} {
		if strings.Contains(msg, k.sub) {
			return k.class
		}
	}
	return "other"
}

// goodRate is the requests that should have succeeded and failed, of
// those sent.
func (o *soakOutcomes) goodRate() (failed, sent int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, t := range o.tally {
		if o.scs[i].kind != soakGood {
			continue
		}
		sent += t.sent
		failed += t.sent - t.ok
	}
	return failed, sent
}

// shedRate is the requests shed (never sent: too many in flight), of all
// that were due.
func (o *soakOutcomes) shedRate() (shed, due int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.tally {
		shed += t.shed
		due += t.sent + t.shed
	}
	return shed, due
}

// unexpectedSuccesses counts requests to a resetting or hanging backend
// that succeeded, which no proxy should make happen.
func (o *soakOutcomes) unexpectedSuccesses() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, t := range o.tally {
		n += t.failures["succeeded"]
	}
	return n
}

// write prints one line per scenario: kind, sent, ok, shed, failures by
// class with an example each.
func (o *soakOutcomes) write(w io.Writer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(w, "%-40s %-4s %8s %8s %6s %17s  %s\n", "scenario", "kind", "sent", "ok", "shed", "ms p50/p99/max", "failures")
	for i, t := range o.tally {
		sc := o.scs[i]
		classes := make([]string, 0, len(t.failures))
		for c := range t.failures {
			classes = append(classes, c)
		}
		sort.Strings(classes)
		var parts []string
		for _, c := range classes {
			parts = append(parts, fmt.Sprintf("%s=%d", c, t.failures[c]))
		}
		ok := fmt.Sprint(t.ok)
		if sc.kind == soakBad {
			ok = "-"
		}
		lat := fmt.Sprintf("%d/%d/%d", t.latency.quantile(0.5), t.latency.quantile(0.99), t.latency.quantile(1))
		fmt.Fprintf(w, "%-40s %-4s %8d %8s %6d %17s  %s\n", sc.name, sc.kind, t.sent, ok, t.shed, lat, strings.Join(parts, " "))
		for _, c := range classes {
			if ex, found := t.examples[c]; found && (sc.kind == soakGood || c == "other") {
				fmt.Fprintf(w, "%40s   e.g. %s: %s\n", "", c, ex)
			}
		}
	}
	fmt.Fprintf(w, "most requests in flight at once: %d\n", o.maxIn)
}

// soakMaxInFlight bounds the requests in flight: a slot that finds the
// bound reached is shed (counted, not sent), so a stuck path cannot make
// the load generator grow without limit.
const soakMaxInFlight = 1024

// soakDrive sends qps requests a second for duration, in the scenarios'
// order, and returns once every request has ended.
func soakDrive(ctx context.Context, scs []soakScenario, o *soakOutcomes, qps int, duration time.Duration) {
	order := soakOrder(scs)
	interval := time.Second / time.Duration(qps)
	total := int(duration / interval)
	sem := make(chan struct{}, soakMaxInFlight)
	var wg sync.WaitGroup
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	sent := 0
	for sent < total {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
		due := min(total, int(time.Since(start)/interval)+1)
		for ; sent < due; sent++ {
			i := order[sent%len(order)]
			select {
			case sem <- struct{}{}:
			default:
				o.shed(i)
				continue
			}
			o.mu.Lock()
			o.inFlight++
			o.maxIn = max(o.maxIn, o.inFlight)
			o.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(ctx, soakGoodTimeout)
				began := time.Now()
				err := scs[i].run(rctx)
				took := time.Since(began)
				cancel()
				o.record(i, took, err)
				o.mu.Lock()
				o.inFlight--
				o.mu.Unlock()
				<-sem
			}()
		}
	}
	wg.Wait()
}
