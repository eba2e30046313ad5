package metrics

import (
	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/prometheus/client_golang/prometheus"
)

func (m *Metrics) registerShed(constLabels prometheus.Labels) {
	m.shed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        contract.MetricTCPShedTotal,
		Help:        "Connections closed at accept because the proxy was near its file descriptor limit.",
		ConstLabels: constLabels,
	}, []string{contract.LabelDirection})
	m.reg.MustRegister(m.shed)
}

// Shed is the counter of connections of a direction closed at accept for
// lack of file descriptors (contract.MetricTCPShedTotal).
func (m *Metrics) Shed(direction string) prometheus.Counter {
	return m.shed.WithLabelValues(direction)
}
