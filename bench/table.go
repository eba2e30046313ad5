package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"text/tabwriter"
	"time"
)

// Row is one measured run: a target, a protocol and a load.
type Row struct {
	Target   string
	Protocol string
	Load     string // "1000" or "max"
	Result   Result
	// ProxyCPU is the CPU time the proxy processes used during the run
	// (zero for direct).
	ProxyCPU time.Duration
	// RSSIdle and RSSMax are the largest proxy process's resident set when
	// idle and at its peak up to the end of this run, in bytes.
	RSSIdle, RSSMax int64
	HasProxy        bool
}

// CPUPer1k is proxy CPU-seconds per 1000 requests; at a fixed load of
// 1000 requests per second it is also the vCPUs the proxies use.
func (r Row) CPUPer1k() float64 {
	if r.Result.Calls == 0 {
		return math.NaN()
	}
	return r.ProxyCPU.Seconds() / float64(r.Result.Calls) * 1000
}

// Direct finds the direct row of the same protocol and load, the baseline.
func Direct(rows []Row, r Row) (Row, bool) {
	for _, d := range rows {
		if d.Target == "direct" && d.Protocol == r.Protocol && d.Load == r.Load {
			return d, true
		}
	}
	return Row{}, false
}

// WriteTable prints the rows as one table.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tproto\tload\tqps\tp50 µs\tp99 µs\tp99.9 µs\t+p50 µs\t+p99 µs\tqps/direct\tcpu s/1k req\trss idle MB\trss max MB\terrors\t")
	for _, r := range rows {
		d, hasDirect := Direct(rows, r)
		added, added99, ratio := "-", "-", "-"
		if hasDirect && r.Target != "direct" {
			added = signed(r.Result.Percentiles[50] - d.Result.Percentiles[50])
			added99 = signed(r.Result.Percentiles[99] - d.Result.Percentiles[99])
			if r.Load == "max" {
				ratio = fmt.Sprintf("%.2fx", r.Result.ActualQPS/d.Result.ActualQPS)
			}
		}
		cpu, idle, peak := "-", "-", "-"
		if r.HasProxy {
			cpu = fmt.Sprintf("%.4f", r.CPUPer1k())
			idle = fmt.Sprintf("%.1f", float64(r.RSSIdle)/(1<<20))
			peak = fmt.Sprintf("%.1f", float64(r.RSSMax)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n",
			r.Target, r.Protocol, r.Load, r.Result.ActualQPS,
			micros(r.Result.Percentiles[50]), micros(r.Result.Percentiles[99]), micros(r.Result.Percentiles[99.9]),
			added, added99, ratio, cpu, idle, peak, r.Result.Calls-r.Result.OK)
	}
	return tw.Flush()
}

func micros(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }

func signed(d time.Duration) string {
	return fmt.Sprintf("%+.0f", float64(d)/float64(time.Microsecond))
}

// WriteTargets checks one conduit hop against the goals from the proxy
// issue, for each protocol that was measured with direct, conduit and
// nginx at both loads.
func WriteTargets(w io.Writer, rows []Row, fixed string) {
	checked := 0
	for _, proto := range protocolsOf(rows) {
		if writeTargets(w, rows, proto, fixed) {
			checked++
		}
	}
	if checked == 0 {
		fmt.Fprintln(w, "targets: not checked (needs direct, conduit and nginx of one protocol at both loads)")
	}
}

func protocolsOf(rows []Row) []string {
	var out []string
	for _, r := range rows {
		if !slices.Contains(out, r.Protocol) {
			out = append(out, r.Protocol)
		}
	}
	return out
}

func writeTargets(w io.Writer, rows []Row, proto, fixed string) bool {
	find := func(target, load string) (Row, bool) {
		for _, r := range rows {
			if r.Target == target && r.Protocol == proto && r.Load == load {
				return r, true
			}
		}
		return Row{}, false
	}
	conduit, ok1 := find("conduit", fixed)
	conduitMax, ok2 := find("conduit", "max")
	nginx, ok3 := find("nginx", fixed)
	direct, ok4 := find("direct", fixed)
	directMax, ok5 := find("direct", "max")
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return false
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	addedConduit := conduit.Result.Percentiles[50] - direct.Result.Percentiles[50]
	addedNginx := nginx.Result.Percentiles[50] - direct.Result.Percentiles[50]
	ratio := conduitMax.Result.ActualQPS / directMax.Result.ActualQPS
	fmt.Fprintf(w, "targets for conduit-proxy (one hop, %s):\n", proto)
	fmt.Fprintf(w, "  added p50 %s µs <= nginx's %s µs: %s\n", signed(addedConduit), signed(addedNginx), verdict(addedConduit <= addedNginx))
	fmt.Fprintf(w, "  cpu %.4f s per 1k requests at the fixed load <= 0.03: %s\n", conduit.CPUPer1k(), verdict(conduit.CPUPer1k() <= 0.03))
	fmt.Fprintf(w, "  max qps %.2fx direct >= 0.6x: %s\n", ratio, verdict(ratio >= 0.6))
	fmt.Fprintf(w, "  idle rss %.1f MB <= 10 MB: %s\n", float64(conduit.RSSIdle)/(1<<20), verdict(conduit.RSSIdle <= 10<<20))
	fmt.Fprintf(w, "  rss at "+fixed+" qps %.1f MB <= 15 MB: %s\n", float64(conduit.RSSMax)/(1<<20), verdict(conduit.RSSMax <= 15<<20))
	return true
}

// Median merges rows of the same target, protocol and load (one per round)
// into one: the median of each latency, QPS and CPU figure, the largest
// RSS, and calls and successes added up. Order is that of first appearance.
func Median(rows []Row) []Row {
	type key struct{ target, proto, load string }
	var order []key
	groups := map[key][]Row{}
	for _, r := range rows {
		k := key{r.Target, r.Protocol, r.Load}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Row, 0, len(order))
	for _, k := range order {
		g := groups[k]
		if len(g) == 1 {
			out = append(out, g[0])
			continue
		}
		m := g[0]
		m.Result.Percentiles = map[float64]time.Duration{}
		for p := range g[0].Result.Percentiles {
			m.Result.Percentiles[p] = medianOf(g, func(r Row) float64 { return float64(r.Result.Percentiles[p]) }, func(f float64) time.Duration { return time.Duration(f) })
		}
		m.Result.ActualQPS = medianOf(g, func(r Row) float64 { return r.Result.ActualQPS }, func(f float64) float64 { return f })
		// CPU per request is what matters: take the median ratio and scale
		// it back to the summed calls.
		var calls, ok int64
		for _, r := range g {
			calls += r.Result.Calls
			ok += r.Result.OK
			m.RSSIdle = max(m.RSSIdle, r.RSSIdle)
			m.RSSMax = max(m.RSSMax, r.RSSMax)
		}
		perCall := medianOf(g, func(r Row) float64 { return r.ProxyCPU.Seconds() / float64(r.Result.Calls) }, func(f float64) float64 { return f })
		m.Result.Calls, m.Result.OK = calls, ok
		m.ProxyCPU = time.Duration(perCall * float64(calls) * float64(time.Second))
		out = append(out, m)
	}
	return out
}

func medianOf[V any](rows []Row, get func(Row) float64, conv func(float64) V) V {
	vs := make([]float64, len(rows))
	for i, r := range rows {
		vs[i] = get(r)
	}
	sort.Float64s(vs)
	n := len(vs)
	if n%2 == 1 {
		return conv(vs[n/2])
	}
	return conv((vs[n/2-1] + vs[n/2]) / 2)
}
