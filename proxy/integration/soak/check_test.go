package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The parts of the soak that decide pass or fail, checked without root.

func TestSoakGoroutineTotal(t *testing.T) {
	n, err := soakGoroutineTotal(strings.NewReader("goroutine profile: total 17\n5 @ 0x43e\n"))
	if err != nil || n != 17 {
		t.Fatalf("got %d, %v; want 17", n, err)
	}
	for _, bad := range []string{"", "heap profile: 1\n", "goroutine profile: total x\n"} {
		if n, err := soakGoroutineTotal(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: got %d, want an error", bad, n)
		}
	}
}

func TestSoakProblems(t *testing.T) {
	lim := soakLimits{FDSlack: 2, GoroutineSlack: 3, RSS: 20 << 20}
	base := soakSample{FDs: 12, Goroutines: 12, TCPOpen: 0, RSS: 7 << 20}
	for _, c := range []struct {
		name   string
		after  soakSample
		maxRSS int64
		want   []string // substrings, one per problem
	}{
		{"back to baseline", base, 15 << 20, nil},
		{"within the slack", soakSample{FDs: 14, Goroutines: 15}, 15 << 20, nil},
		{"below the baseline", soakSample{FDs: 10, Goroutines: 9}, 15 << 20, nil},
		{"one fd too many", soakSample{FDs: 15, Goroutines: 12}, 15 << 20, []string{"15 fds"}},
		{"goroutines", soakSample{FDs: 12, Goroutines: 16}, 15 << 20, []string{"16 goroutines"}},
		{"one connection left", soakSample{FDs: 12, Goroutines: 12, TCPOpen: 1}, 15 << 20, []string{"1 tcp_open_connections"}},
		{"RSS at the limit", base, 20 << 20, []string{"RSS reached 20.0 MiB"}},
		{"everything", soakSample{FDs: 100, Goroutines: 100, TCPOpen: 40}, 30 << 20, []string{"fds", "goroutines", "tcp_open", "RSS"}},
	} {
		got := soakProblems(base, c.after, c.maxRSS, lim)
		if len(got) != len(c.want) {
			t.Errorf("%s: problems %q, want %d", c.name, got, len(c.want))
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: problem %q, want it to name %q", c.name, got[i], w)
			}
		}
	}
}

func TestSoakOrder(t *testing.T) {
	scs := (&soakClients{}).soakScenarios()
	order := soakOrder(scs)
	if len(order) != 1000 {
		t.Fatalf("the weights add up to %d, want 1000 (per mille)", len(order))
	}
	count := make([]int, len(scs))
	for _, i := range order {
		count[i]++
	}
	for i, s := range scs {
		if count[i] != s.weight {
			t.Errorf("%s: %d slots, want its weight %d", s.name, count[i], s.weight)
		}
	}
	// Spread: in every tenth of the cycle (100 ms at 1000 QPS) each
	// scenario has its tenth of the slots, give or take one.
	for part := range 10 {
		seen := make([]int, len(scs))
		for _, i := range order[part*100 : (part+1)*100] {
			seen[i]++
		}
		for i, s := range scs {
			if d := seen[i] - s.weight/10; d < -1 || d > 1 {
				t.Errorf("%s: %d slots in tenth %d, want about %d", s.name, seen[i], part, s.weight/10)
			}
		}
	}
}

func TestSoakOutcomes(t *testing.T) {
	scs := []soakScenario{{name: "good", weight: 1, kind: soakGood}, {name: "bad", weight: 1, kind: soakBad}}
	o := newSoakOutcomes(scs)
	for range 998 {
		o.record(0, time.Millisecond, nil)
	}
	o.record(0, time.Second, soakStatusError{502})
	o.record(0, time.Second, fmt.Errorf("read: %w", syscall.ECONNRESET))
	o.shed(0)
	o.record(1, time.Second, context.DeadlineExceeded)
	o.record(1, time.Millisecond, nil)
	if failed, sent := o.goodRate(); failed != 2 || sent != 1000 {
		t.Errorf("good requests: %d failed of %d, want 2 of 1000", failed, sent)
	}
	if shed, due := o.shedRate(); shed != 1 || due != 1003 {
		t.Errorf("shed %d of %d, want 1 of 1003", shed, due)
	}
	if n := o.unexpectedSuccesses(); n != 1 {
		t.Errorf("%d unexpected successes, want the bad scenario's one", n)
	}
	var b strings.Builder
	o.write(&b)
	for _, want := range []string{"status 502=1", "reset=1", "timeout=1", "succeeded=1", "1/1/1000"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestSoakClass(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{soakStatusError{504}, "status 504"},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), "reset"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "refused"},
		{io.ErrUnexpectedEOF, "eof"},
		{errors.New("net/http: HTTP/1.x transport connection broken: unexpected EOF"), "eof"},
		{errors.New("something else"), "other"},
	} {
		if got := soakClass(c.err); got != c.want {
			t.Errorf("soakClass(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestSoakConfigFromEnv(t *testing.T) {
	t.Setenv("SOAK_DURATION", "")
	t.Setenv("SOAK_QPS", "")
	t.Setenv("SOAK_SETTLE", "")
	t.Setenv("SOAK_PROXY_TIMEOUTS", "")
	t.Setenv("SOAK_PROXY_ARGS", "")
	t.Setenv("SOAK_SKIP", "")
	c, err := soakConfigFromEnv()
	if err != nil || c.duration != time.Minute || c.qps != 1000 || c.settle != 200*time.Second || len(c.proxyArgs) != 0 || c.skip != nil {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	t.Setenv("SOAK_DURATION", "10m")
	t.Setenv("SOAK_PROXY_TIMEOUTS", "1")
	t.Setenv("SOAK_PROXY_ARGS", "--log-level=debug  --detect-timeout=1s")
	c, err = soakConfigFromEnv()
	if err != nil || c.duration != 10*time.Minute {
		t.Fatalf("SOAK_DURATION=10m: %+v, %v", c, err)
	}
	want := append(append([]string{}, soakTimeoutFlags...), "--log-level=debug", "--detect-timeout=1s")
	if fmt.Sprint(c.proxyArgs) != fmt.Sprint(want) {
		t.Errorf("proxy args %q, want %q", c.proxyArgs, want)
	}
	for key, bad := range map[string]string{"SOAK_DURATION": "-1s", "SOAK_QPS": "0", "SOAK_SETTLE": "soon", "SOAK_PROXY_TIMEOUTS": "yes", "SOAK_SKIP": "("} {
		t.Run(key, func(t *testing.T) {
			t.Setenv(key, bad)
			if _, err := soakConfigFromEnv(); err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("%s=%q: error %v, want one naming it", key, bad, err)
			}
		})
	}
}

func TestSoakGroupSockets(t *testing.T) {
	ss := `ESTAB 0 0 10.254.0.1:4140 10.254.0.1:45678 users:(("conduit-proxy",pid=123,fd=9))
ESTAB 0 0 10.254.0.1:4140 10.254.0.1:1249 users:(("conduit-proxy",pid=123,fd=10))
CLOSE-WAIT 1 0 [::ffff:127.0.0.1]:50000 [::ffff:127.0.0.1]:8080 users:(("conduit-proxy",pid=123,fd=11))
LISTEN 0 4096 *:4143 *:* users:(("conduit-proxy",pid=123,fd=3))
LISTEN 0 4096 127.0.0.1:4140 0.0.0.0:* users:(("conduit-proxy",pid=123,fd=4))
ESTAB 0 0 10.254.0.1:45678 10.254.0.2:8080 users:(("soak.test",pid=1234,fd=7))
`
	got := soakGroupSockets(ss, 123)
	want := map[string]int{
		"ESTAB      10.254.0.1:4140 -> 10.254.0.1:*":                 2,
		"CLOSE-WAIT [::ffff:127.0.0.1]:* -> [::ffff:127.0.0.1]:8080": 1,
		"LISTEN     *:4143 -> *:*":                                   1,
		"LISTEN     127.0.0.1:4140 -> 0.0.0.0:*":                     1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestSoakDrivePaces(t *testing.T) {
	var mu sync.Mutex
	runs := map[string]int{}
	count := func(name string) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			runs[name]++
			mu.Unlock()
			return nil
		}
	}
	scs := []soakScenario{{"a", 3, soakGood, count("a")}, {"b", 1, soakGood, count("b")}}
	o := newSoakOutcomes(scs)
	start := time.Now()
	soakDrive(context.Background(), scs, o, 400, 500*time.Millisecond)
	took := time.Since(start)
	if runs["a"] != 150 || runs["b"] != 50 {
		t.Errorf("ran %v, want a 150 and b 50 times (200 at 400 QPS for 500 ms, 3:1)", runs)
	}
	if took < 450*time.Millisecond {
		t.Errorf("200 requests at 400 QPS took %v, want about 500 ms", took)
	}
	if failed, sent := o.goodRate(); failed != 0 || sent != 200 {
		t.Errorf("%d failed of %d sent, want 0 of 200", failed, sent)
	}
}

func TestSoakDriveShedsOverTheInFlightBound(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, soakMaxInFlight)
	block := func(context.Context) error {
		started <- struct{}{}
		<-release
		return nil
	}
	scs := []soakScenario{{"stuck", 1, soakGood, block}}
	o := newSoakOutcomes(scs)
	done := make(chan struct{})
	go func() {
		soakDrive(context.Background(), scs, o, 20000, 100*time.Millisecond)
		close(done)
	}()
	for range soakMaxInFlight {
		<-started
	}
	// Every slot is taken: the driver sheds the rest of the 2000 due and
	// then waits for those in flight.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if shed, _ := o.shedRate(); shed == 2000-soakMaxInFlight {
			break
		}
		if time.Now().After(deadline) {
			shed, due := o.shedRate()
			t.Fatalf("shed %d of %d, want %d", shed, due, 2000-soakMaxInFlight)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("the driver returned with requests in flight")
	default:
	}
	close(release)
	<-done
	if failed, sent := o.goodRate(); failed != 0 || sent != soakMaxInFlight {
		t.Errorf("%d failed of %d sent, want 0 of %d", failed, sent, soakMaxInFlight)
	}
	if o.maxIn != soakMaxInFlight {
		t.Errorf("at most %d in flight, want %d", o.maxIn, soakMaxInFlight)
	}
}
