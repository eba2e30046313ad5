package meshtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// Metrics is one scrape of a proxy's /metrics, by family name.
type Metrics map[string]*dto.MetricFamily

// Scrape reads the admin port's /metrics from inside the proxy's namespace.
func (p *Proxy) Scrape(ctx context.Context) (Metrics, error) {
	return ScrapeURL(ctx, p.NS.HTTPClient(5*time.Second),
		fmt.Sprintf("http://127.0.0.1:%d%s", contract.ProxyAdminPort, contract.AdminMetricsPath))
}

// ScrapeURL fetches and parses a Prometheus text exposition.
func ScrapeURL(ctx context.Context, c *http.Client, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	return Parse(resp.Body)
}

// Parse reads the Prometheus text format.
func Parse(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return Metrics(fams), nil
}

// Labels selects series: every listed label must have the value.
type Labels map[string]string

func (l Labels) matches(m *dto.Metric) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for k, v := range l {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (l Labels) String() string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// Sum adds the values of the family's series matching sel: counters and
// gauges by value, histograms by sample count, summaries by count. A
// missing family sums to 0.
func (m Metrics) Sum(name string, sel Labels) float64 {
	fam, ok := m[name]
	if !ok {
		return 0
	}
	var total float64
	for _, s := range fam.GetMetric() {
		if !sel.matches(s) {
			continue
		}
		switch {
		case s.Counter != nil:
			total += s.GetCounter().GetValue()
		case s.Gauge != nil:
			total += s.GetGauge().GetValue()
		case s.Histogram != nil:
			total += float64(s.GetHistogram().GetSampleCount())
		case s.Summary != nil:
			total += float64(s.GetSummary().GetSampleCount())
		case s.Untyped != nil:
			total += s.GetUntyped().GetValue()
		}
	}
	return total
}

// Series lists the label sets of the family's series matching sel, for
// failure messages.
func (m Metrics) Series(name string, sel Labels) []Labels {
	fam, ok := m[name]
	if !ok {
		return nil
	}
	var out []Labels
	for _, s := range fam.GetMetric() {
		if !sel.matches(s) {
			continue
		}
		l := Labels{}
		for _, lp := range s.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		out = append(out, l)
	}
	return out
}

// Delta is after's sum minus before's, for counters that other traffic
// (readiness probes, earlier subtests) may already have moved.
func Delta(before, after Metrics, name string, sel Labels) float64 {
	return after.Sum(name, sel) - before.Sum(name, sel)
}
