// Package promql builds the PromQL that meshstat runs: golden signals of
// the proxies' metrics for a set of resources, grouped per resource.
//
// Every metric and label name comes from package contract.
package promql

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// Scope is which series a query reads and how it groups them. It is a
// value; build one with a literal.
type Scope struct {
	// Direction is contract.DirectionInbound (traffic the resources
	// received) or contract.DirectionOutbound (traffic they sent).
	Direction string
	// NameLabel is the label holding the resource's name (a workload kind
	// such as "deployment", or "pod", or "namespace").
	NameLabel string
	// Names restricts NameLabel to these values; empty means any value.
	Names []string
	// Namespaces restricts the namespace label; empty means any.
	Namespaces []string
	// Authority, when set, is a regular expression the authority label
	// must match in full.
	Authority string
	// GroupBy are the labels that identify one row; empty sums everything
	// into one.
	GroupBy []string
	// Window is the range for rate, a Prometheus duration like "1m".
	Window string
}

// Selector renders the label matchers, sorted by label name so the query
// text is stable.
func (s Scope) Selector() string {
	m := map[string]string{}
	if s.Direction != "" {
		m[contract.LabelDirection] = "=" + strconv.Quote(s.Direction)
	}
	switch {
	case s.NameLabel == contract.LabelNamespace && len(s.Names) == 0:
		m[contract.LabelNamespace] = oneOf(s.Namespaces)
	case s.NameLabel == contract.LabelNamespace:
		m[contract.LabelNamespace] = oneOf(s.Names)
	default:
		if s.NameLabel != "" {
			m[s.NameLabel] = oneOf(s.Names)
		}
		if len(s.Namespaces) > 0 {
			m[contract.LabelNamespace] = oneOf(s.Namespaces)
		}
	}
	if s.Authority != "" {
		m[contract.LabelAuthority] = "=~" + strconv.Quote(s.Authority)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + m[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// oneOf matches any of values exactly, or any non-empty value when there
// are none.
func oneOf(values []string) string {
	switch len(values) {
	case 0:
		return `!=""`
	case 1:
		return "=" + strconv.Quote(values[0])
	}
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = regexp.QuoteMeta(v)
	}
	sort.Strings(q)
	return "=~" + strconv.Quote(strings.Join(q, "|"))
}

func (s Scope) by(extra ...string) string {
	l := append(append([]string(nil), s.GroupBy...), extra...)
	return "sum by (" + strings.Join(l, ", ") + ")"
}

func (s Scope) rate(metric string) string {
	return fmt.Sprintf("rate(%s%s[%s])", metric, s.Selector(), s.Window)
}

// Responses is the response rate per row and classification, from which
// follow the success rate (success / all) and RPS (all).
func (s Scope) Responses() string {
	return s.by(contract.LabelClassification) + "(" + s.rate(contract.MetricResponseTotal) + ")"
}

// LatencyQuantile is the q-quantile (0.5 for p50) of response latency in
// milliseconds per row.
func (s Scope) LatencyQuantile(q float64) string {
	return fmt.Sprintf("histogram_quantile(%s, %s(%s))",
		strconv.FormatFloat(q, 'f', -1, 64), s.by("le"), s.rate(contract.MetricResponseLatencyMs+"_bucket"))
}

// The TCP metrics carry no authority label: leave Authority empty for them.

// TCPConnections is the number of open TCP connections per row (a gauge:
// its current value, no rate).
func (s Scope) TCPConnections() string {
	return s.by() + "(" + contract.MetricTCPOpenConnections + s.Selector() + ")"
}

// TCPReadBytes is the rate of bytes read from accepted connections per row.
func (s Scope) TCPReadBytes() string {
	return s.by() + "(" + s.rate(contract.MetricTCPReadBytesTotal) + ")"
}

// TCPWriteBytes is the rate of bytes written to accepted connections per row.
func (s Scope) TCPWriteBytes() string {
	return s.by() + "(" + s.rate(contract.MetricTCPWriteBytesTotal) + ")"
}
