package main

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseResultHTTP(t *testing.T) {
	f, err := os.Open("testdata/fortio-http1.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := ParseResult(f)
	if err != nil {
		t.Fatal(err)
	}
	if res.RunType != "HTTP" || res.Calls != 51153 || res.OK != 51153 {
		t.Errorf("got run %q with %d calls, %d ok; want HTTP, 51153, 51153", res.RunType, res.Calls, res.OK)
	}
	if int(res.ActualQPS) != 51150 || res.ActualDuration != 1000051128 {
		t.Errorf("qps %v over %v, want 51150 over 1.000051128s", res.ActualQPS, res.ActualDuration)
	}
	// 4.335424595623216e-05 s
	if got := res.Percentiles[50]; got != 43354*time.Nanosecond {
		t.Errorf("p50 = %v, want 43.354µs", got)
	}
	if got := res.Percentiles[99.9]; got.Round(time.Microsecond) != 3553*time.Microsecond {
		t.Errorf("p99.9 = %v, want 3.553ms", got)
	}
}

func TestParseResultGRPC(t *testing.T) {
	f, err := os.Open("testdata/fortio-grpc.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := ParseResult(f)
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls != 8034 || res.OK != 8034 {
		t.Errorf("%d calls, %d ok; want 8034 SERVING", res.Calls, res.OK)
	}
	if _, ok := res.Percentiles[99]; !ok {
		t.Errorf("no p99 in %v", res.Percentiles)
	}
}

func TestParseResultErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json": "Code 200 : 5",
		"no calls": `{"RunType":"HTTP","DurationHistogram":{"Count":0}}`,
	} {
		if _, err := ParseResult(strings.NewReader(in)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
	res, err := ParseResult(strings.NewReader(`{"RunType":"HTTP","DurationHistogram":{"Count":10},"RetCodes":{"200":7,"502":2,"-1":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 7 {
		t.Errorf("ok = %d, want 7 of 10 (502 and socket errors are failures)", res.OK)
	}
}

func row(target, load string, qps float64, p50, p99 time.Duration, cpu time.Duration, calls int64) Row {
	return Row{
		Target: target, Protocol: "http1", Load: load, HasProxy: target != "direct",
		Result: Result{ActualQPS: qps, Calls: calls, OK: calls,
			Percentiles: map[float64]time.Duration{50: p50, 99: p99, 99.9: 2 * p99}},
		ProxyCPU: cpu, RSSIdle: 8 << 20, RSSMax: 12 << 20,
	}
}

func TestTableAndTargets(t *testing.T) {
	us := time.Microsecond
	rows := []Row{
		row("direct", "1000", 1000, 100*us, 300*us, 0, 15000),
		row("direct", "max", 30000, 200*us, 900*us, 0, 450000),
		row("conduit", "1000", 1000, 120*us, 350*us, 300*time.Millisecond, 15000),
		row("conduit", "max", 21000, 250*us, 1000*us, 9*time.Second, 315000),
		row("nginx", "1000", 1000, 124*us, 330*us, 375*time.Millisecond, 15000),
		row("nginx", "max", 20000, 260*us, 1100*us, 8*time.Second, 300000),
	}
	if got := rows[2].CPUPer1k(); math.Abs(got-0.02) > 1e-12 {
		t.Errorf("cpu per 1k = %v, want 0.3 s / 15000 requests * 1000 = 0.02", got)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 1+len(rows) {
		t.Fatalf("table has %d lines, want header + %d:\n%s", len(lines), len(rows), b.String())
	}
	conduitMax := strings.Fields(lines[4])
	// target proto load qps p50 p99 p99.9 +p50 +p99 ratio cpu idle max errors
	want := []string{"conduit", "http1", "max", "21000", "250", "1000", "2000", "+50", "+100", "0.70x", "0.0286", "8.0", "12.0", "0"}
	if strings.Join(conduitMax, " ") != strings.Join(want, " ") {
		t.Errorf("conduit max row = %v, want %v", conduitMax, want)
	}
	if direct := strings.Fields(lines[1]); direct[7] != "-" || direct[10] != "-" {
		t.Errorf("direct row has added latency or cpu: %v", direct)
	}

	b.Reset()
	WriteTargets(&b, rows, "1000")
	for _, s := range []string{
		"added p50 +20 µs <= nginx's +24 µs: met",
		"cpu 0.0200 s per 1k requests at the fixed load <= 0.03: met",
		"max qps 0.70x direct >= 0.6x: met",
		"idle rss 8.0 MB <= 10 MB: met",
		"rss at 1000 qps 12.0 MB <= 15 MB: met",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("targets lack %q:\n%s", s, b.String())
		}
	}
	rows[2].Result.Percentiles[50] = 130 * us
	b.Reset()
	WriteTargets(&b, rows, "1000")
	if !strings.Contains(b.String(), "added p50 +30 µs <= nginx's +24 µs: MISSED") {
		t.Errorf("a slower proxy was not reported as missing the target:\n%s", b.String())
	}

	// Each protocol measured in full is checked on its own.
	for _, r := range rows[:6] {
		r.Protocol = "grpc"
		rows = append(rows, r)
	}
	b.Reset()
	WriteTargets(&b, rows, "1000")
	if !strings.Contains(b.String(), "(one hop, http1)") || !strings.Contains(b.String(), "(one hop, grpc)") {
		t.Errorf("targets not checked per protocol:\n%s", b.String())
	}
	b.Reset()
	WriteTargets(&b, rows[:2], "1000")
	if !strings.Contains(b.String(), "targets: not checked") {
		t.Errorf("targets checked without conduit and nginx rows:\n%s", b.String())
	}
}

func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--targets=direct,envoy"}, nil, `unknown target "envoy"`},
		{[]string{"--protocols=http3"}, nil, `unknown protocol "http3"`},
		{[]string{"--targets=nginx"}, nil, "must include direct"},
		{[]string{"--duration=0s"}, nil, "duration 0s must be positive"},
		{nil, map[string]string{"BENCH_DURATION": "fifteen"}, `BENCH_DURATION="fifteen"`},
		{nil, map[string]string{"BENCH_QPS": "lots"}, `BENCH_QPS="lots"`},
		{[]string{"--cpu=0-1"}, nil, `cpu "0-1" must be one core number`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	us := time.Microsecond
	rounds := []Row{
		row("direct", "max", 30000, 200*us, 900*us, 0, 450000),
		row("conduit", "max", 20000, 300*us, 1000*us, 9*time.Second, 300000),
		row("direct", "max", 10000, 900*us, 5000*us, 0, 150000), // a noisy round
		row("conduit", "max", 21000, 250*us, 1100*us, 6*time.Second, 300000),
		row("direct", "max", 31000, 190*us, 800*us, 0, 465000),
		row("conduit", "max", 5000, 2000*us, 9000*us, 3*time.Second, 75000),
	}
	rounds[3].RSSMax = 14 << 20
	got := Median(rounds)
	if len(got) != 2 || got[0].Target != "direct" || got[1].Target != "conduit" {
		t.Fatalf("Median gave %d rows %v, want direct then conduit", len(got), got)
	}
	d, c := got[0], got[1]
	if d.Result.ActualQPS != 30000 || d.Result.Percentiles[50] != 200*us || d.Result.Percentiles[99] != 900*us {
		t.Errorf("direct median = %v qps, p50 %v, p99 %v; want 30000, 200µs, 900µs", d.Result.ActualQPS, d.Result.Percentiles[50], d.Result.Percentiles[99])
	}
	if d.Result.Calls != 1065000 {
		t.Errorf("calls = %d, want the sum 1065000", d.Result.Calls)
	}
	// Per-call CPU of the rounds: 30µs, 20µs, 40µs: median 30µs.
	if got := c.CPUPer1k(); math.Abs(got-0.03) > 1e-9 {
		t.Errorf("conduit cpu per 1k = %v, want the median 0.03", got)
	}
	if c.RSSMax != 14<<20 {
		t.Errorf("rss max = %d, want the largest, 14 MiB", c.RSSMax)
	}
	if c.Result.ActualQPS != 20000 {
		t.Errorf("conduit qps = %v, want the median 20000", c.Result.ActualQPS)
	}
}
