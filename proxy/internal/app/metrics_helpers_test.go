package app

import (
	"strconv"

	dto "github.com/prometheus/client_model/go"

	"github.com/conduitmesh/conduit/proxy/internal/metrics/metricstest"
)

type metricFamily = dto.MetricFamily

func formatF(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// value finds the sample of family name whose labels include want, and
// returns its counter, gauge or (for histograms) sample count value.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.Metric {
		if metricstest.HasLabels(m, want) {
			return metricstest.Value(m), true
		}
	}
	return 0, false
}
