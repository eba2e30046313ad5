package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// soakSample is what one proxy holds at a moment.
type soakSample struct {
	FDs        int     // entries in /proc/PID/fd
	Goroutines int     // from /debug/pprof/goroutine?debug=1 (needs --pprof)
	TCPOpen    float64 // tcp_open_connections, all series
	RSS        int64   // VmRSS, bytes
	HWM        int64   // VmHWM, bytes
	CPU        time.Duration
}

// soakRead samples the proxy. The file descriptors are counted first,
// before the admin requests open a connection of their own.
func soakRead(ctx context.Context, p *meshtest.Proxy) (soakSample, error) {
	var s soakSample
	pid := p.PID()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(fds)
	st, err := meshtest.ReadProcStatus(pid)
	if err != nil {
		return s, err
	}
	s.RSS, s.HWM = st.VmRSS, st.VmHWM
	if s.CPU, err = meshtest.ReadCPUTime(pid); err != nil {
		return s, err
	}
	m, err := p.Scrape(ctx)
	if err != nil {
		return s, err
	}
	s.TCPOpen = m.Sum(contract.MetricTCPOpenConnections, nil)
	s.Goroutines, err = soakGoroutines(ctx, p)
	return s, err
}

// soakGoroutines reads the proxy's goroutine count from pprof's goroutine
// profile, whose debug=1 text starts "goroutine profile: total N".
func soakGoroutines(ctx context.Context, p *meshtest.Proxy) (int, error) {
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=1", contract.ProxyAdminPort)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.NS.HTTPClient(5 * time.Second).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s: %s (is --pprof on?)", url, resp.Status)
	}
	return soakGoroutineTotal(resp.Body)
}

func soakGoroutineTotal(r io.Reader) (int, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile starts %q", line)
	}
	return strconv.Atoi(rest)
}

// soakLimits is what "back to baseline" allows.
type soakLimits struct {
	FDSlack, GoroutineSlack int   // above the baseline
	RSS                     int64 // every sample must stay below
}

var soakDefaultLimits = soakLimits{FDSlack: 2, GoroutineSlack: 3, RSS: 20 << 20}

// soakProblems compares a proxy's state after the run with its baseline:
// descriptors and goroutines within the slack, no more open connections
// than before, and resident memory under the limit at every sample.
func soakProblems(before, after soakSample, maxRSS int64, lim soakLimits) []string {
	var out []string
	if after.FDs > before.FDs+lim.FDSlack {
		out = append(out, fmt.Sprintf("%d fds, baseline %d", after.FDs, before.FDs))
	}
	if after.Goroutines > before.Goroutines+lim.GoroutineSlack {
		out = append(out, fmt.Sprintf("%d goroutines, baseline %d", after.Goroutines, before.Goroutines))
	}
	if after.TCPOpen > before.TCPOpen {
		out = append(out, fmt.Sprintf("%v tcp_open_connections, baseline %v", after.TCPOpen, before.TCPOpen))
	}
	if maxRSS >= lim.RSS {
		out = append(out, fmt.Sprintf("RSS reached %.1f MiB, limit %.1f MiB", mib(maxRSS), mib(lim.RSS)))
	}
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// soakProxyState is one proxy's baseline, last sample and peak sampled
// RSS.
type soakProxyState struct {
	name          string
	proxy         *meshtest.Proxy
	before, after soakSample
	peak          soakSample // the largest value of each measure sampled
	samples       int
}

func (s *soakProxyState) observe(x soakSample) {
	s.after = x
	s.peak.FDs = max(s.peak.FDs, x.FDs)
	s.peak.Goroutines = max(s.peak.Goroutines, x.Goroutines)
	s.peak.TCPOpen = max(s.peak.TCPOpen, x.TCPOpen)
	s.peak.RSS = max(s.peak.RSS, x.RSS)
	s.peak.HWM = max(s.peak.HWM, x.HWM)
	s.samples++
}

// soakTable prints the proxies' before and after.
func soakTable(w io.Writer, states []*soakProxyState, lim soakLimits) {
	fmt.Fprintf(w, "%-8s %-22s %10s %10s %12s %10s\n", "proxy", "measure", "before", "after", "max sampled", "limit")
	for _, s := range states {
		rows := []struct {
			measure, before, after, peak, limit string
		}{
			{"fds", fmt.Sprint(s.before.FDs), fmt.Sprint(s.after.FDs), fmt.Sprint(s.peak.FDs), fmt.Sprintf("+%d", lim.FDSlack)},
			{"goroutines", fmt.Sprint(s.before.Goroutines), fmt.Sprint(s.after.Goroutines), fmt.Sprint(s.peak.Goroutines), fmt.Sprintf("+%d", lim.GoroutineSlack)},
			{"tcp_open_connections", fmt.Sprint(s.before.TCPOpen), fmt.Sprint(s.after.TCPOpen), fmt.Sprint(s.peak.TCPOpen), "+0"},
			{"RSS MiB", fmt.Sprintf("%.1f", mib(s.before.RSS)), fmt.Sprintf("%.1f", mib(s.after.RSS)),
				fmt.Sprintf("%.1f", mib(s.peak.RSS)), fmt.Sprintf("<%.0f", mib(lim.RSS))},
			{"VmHWM MiB (peak)", fmt.Sprintf("%.1f", mib(s.before.HWM)), fmt.Sprintf("%.1f", mib(s.after.HWM)), "", ""},
			{"CPU seconds", fmt.Sprintf("%.1f", s.before.CPU.Seconds()), fmt.Sprintf("%.1f", s.after.CPU.Seconds()), "", ""},
		}
		for _, r := range rows {
			fmt.Fprintf(w, "%-8s %-22s %10s %10s %12s %10s\n", s.name, r.measure, r.before, r.after, r.peak, r.limit)
		}
	}
}
