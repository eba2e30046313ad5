package stat

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/conduitmesh/conduit/meshstat/kube"
	"github.com/conduitmesh/conduit/meshstat/promql"
	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
)

// Querier runs an instant PromQL query.
type Querier interface {
	Query(ctx context.Context, query string) (model.Vector, error)
}

// Row is one resource's line of output; nil figures print as "-".
type Row struct {
	Namespace        string   `json:"namespace"`
	Kind             string   `json:"kind"`
	Name             string   `json:"name"`
	MeshedPods       int      `json:"meshed_pods"`
	RunningPods      int      `json:"running_pods"`
	SuccessRate      *float64 `json:"success_rate"` // 0..1
	RPS              *float64 `json:"rps"`
	LatencyMsP50     *float64 `json:"latency_ms_p50"`
	LatencyMsP95     *float64 `json:"latency_ms_p95"`
	LatencyMsP99     *float64 `json:"latency_ms_p99"`
	TCPConnections   *float64 `json:"tcp_connections"`
	ReadBytesPerSec  *float64 `json:"read_bytes_per_sec"`
	WriteBytesPerSec *float64 `json:"write_bytes_per_sec"`
}

// maxConcurrentQueries bounds the queries in flight at once.
const maxConcurrentQueries = 8

// Run lists the resources, counts their meshed pods, queries Prometheus
// and writes the result to out. o must be validated and, unless
// AllNamespaces, have its Namespace filled.
func Run(ctx context.Context, o Options, kc kube.Client, q Querier, out io.Writer) error {
	rows, err := Rows(ctx, o, kc, q)
	if err != nil {
		return err
	}
	// A namespace's row needs no NAMESPACE column beside its NAME.
	kind, _ := kube.ParseKind(o.Kind)
	return Write(out, rows, o.Output, o.AllNamespaces && kind != kube.Namespace)
}

// Rows computes the rows Run prints.
func Rows(ctx context.Context, o Options, kc kube.Client, q Querier) ([]Row, error) {
	kind, err := kube.ParseKind(o.Kind)
	if err != nil {
		return nil, err
	}
	ns := o.Namespace
	if o.AllNamespaces {
		ns = ""
	}
	workloads, err := kc.Workloads(ctx, kind, ns, o.Name, o.LabelSelector)
	if err != nil {
		return nil, err
	}
	podNS := ns
	if kind == kube.Namespace && len(workloads) == 1 {
		podNS = workloads[0].Name
	}
	pods, err := kc.Pods(ctx, podNS)
	if err != nil {
		return nil, err
	}

	rows := make([]Row, len(workloads))
	index := map[string]*Row{}
	for i, w := range workloads {
		meshed, running := kube.Meshed(w, pods)
		rows[i] = Row{Namespace: w.Namespace, Kind: kind.Name, Name: w.Name, MeshedPods: meshed, RunningPods: running}
		index[w.Key()] = &rows[i]
	}

	plans, err := plan(ctx, o, kind, workloads, pods, kc, index)
	if err != nil {
		return nil, err
	}
	if err := runPlans(ctx, q, plans); err != nil {
		return nil, err
	}
	for i := range rows {
		blankIfIdle(&rows[i])
	}
	return rows, nil
}

// blankIfIdle clears the TCP figures of a row with no traffic at all (no
// responses, no open connections, no bytes), so it prints "-" throughout
// like the seed's idle vote-bot; a TCP-only workload keeps its figures.
func blankIfIdle(r *Row) {
	zero := func(v *float64) bool { return v == nil || *v == 0 }
	if r.RPS == nil && zero(r.TCPConnections) && zero(r.ReadBytesPerSec) && zero(r.WriteBytesPerSec) {
		r.TCPConnections, r.ReadBytesPerSec, r.WriteBytesPerSec = nil, nil, nil
	}
}

// rowSignals gathers one row's raw figures while queries complete.
type rowSignals struct {
	success, total float64
	responses      bool
}

// query is one PromQL query and where each of its samples goes.
type query struct {
	promql string
	// rowOf maps a sample to its row; nil drops it.
	rowOf func(model.Metric) *Row
	// set records the sample's value.
	set func(r *Row, m model.Metric, v float64)
}

// plan builds the queries: one set grouped by resource, or with --from
// one set per row (each row has its own authorities).
func plan(ctx context.Context, o Options, kind kube.Kind, ws []kube.Workload, pods []corev1.Pod, kc kube.Client, index map[string]*Row) ([]query, error) {
	base := promql.Scope{
		Direction: contract.DirectionInbound,
		NameLabel: kind.MetricLabel(),
		Window:    o.Window,
		GroupBy:   groupBy(kind),
	}
	if !o.AllNamespaces && kind != kube.Namespace {
		base.Namespaces = []string{o.Namespace}
	}
	// Name the resources when the API narrowed them down. Jobs always: the
	// series of every other kind carry Prometheus's own job label too.
	if o.Name != "" || o.LabelSelector != "" || kind == kube.Job || (kind == kube.Namespace && !o.AllNamespaces) {
		for _, w := range ws {
			base.Names = append(base.Names, w.Name)
		}
	}
	keyOf := func(m model.Metric) string {
		if kind == kube.Namespace {
			return string(m[contract.LabelNamespace])
		}
		return string(m[contract.LabelNamespace]) + "/" + string(m[model.LabelName(kind.MetricLabel())])
	}
	rowOf := func(m model.Metric) *Row { return index[keyOf(m)] }

	switch {
	case o.To != "":
		ref, _ := ParseRes(o.To)
		auth, err := authorities(ctx, kc, ref, o.Namespace, pods)
		if err != nil {
			return nil, fmt.Errorf("--to %s: %w", o.To, err)
		}
		s := base
		s.Direction = contract.DirectionOutbound
		s.Authority = auth
		return httpQueries(s, rowOf), nil
	case o.From != "":
		ref, _ := ParseRes(o.From)
		if ref.Kind == serviceKind {
			return nil, fmt.Errorf("--from %s: a Service sends no traffic; name the workload or pod behind it", o.From)
		}
		var qs []query
		for _, w := range ws {
			svcs, err := kc.Services(ctx, w, pods)
			if err != nil {
				return nil, err
			}
			if len(svcs) == 0 {
				continue // nothing addresses it by name: no traffic to show
			}
			row := index[w.Key()]
			s := promql.Scope{
				Direction:  contract.DirectionOutbound,
				NameLabel:  ref.Kind.MetricLabel(),
				Names:      []string{ref.Name},
				Namespaces: []string{o.Namespace},
				Authority:  kube.AuthorityRegexp(w.Namespace, svcs),
				Window:     o.Window,
			}
			qs = append(qs, httpQueries(s, func(model.Metric) *Row { return row })...)
		}
		return qs, nil
	}
	return append(httpQueries(base, rowOf), tcpQueries(base, rowOf)...), nil
}

func groupBy(kind kube.Kind) []string {
	if kind == kube.Namespace {
		return []string{contract.LabelNamespace}
	}
	return []string{contract.LabelNamespace, kind.MetricLabel()}
}

// authorities is the authority regexp of requests addressed to ref.
func authorities(ctx context.Context, kc kube.Client, ref Ref, namespace string, pods []corev1.Pod) (string, error) {
	if ref.Kind == serviceKind {
		return kube.AuthorityRegexp(namespace, []string{ref.Name}), nil
	}
	ws, err := kc.Workloads(ctx, ref.Kind, namespace, ref.Name, "")
	if err != nil {
		return "", err
	}
	if len(pods) == 0 || pods[0].Namespace != namespace {
		if pods, err = kc.Pods(ctx, namespace); err != nil {
			return "", err
		}
	}
	svcs, err := kc.Services(ctx, ws[0], pods)
	if err != nil {
		return "", err
	}
	if len(svcs) == 0 {
		return "", fmt.Errorf("no Service in namespace %q selects the pods of %s %q, so no request names it: use svc/NAME", namespace, ref.Kind, ref.Name)
	}
	return kube.AuthorityRegexp(namespace, svcs), nil
}

// httpQueries are the responses and latency queries of s.
func httpQueries(s promql.Scope, rowOf func(model.Metric) *Row) []query {
	mu := &sync.Mutex{}
	sig := map[*Row]*rowSignals{}
	qs := []query{{
		promql: s.Responses(),
		rowOf:  rowOf,
		set: func(r *Row, m model.Metric, v float64) {
			mu.Lock()
			defer mu.Unlock()
			rs := sig[r]
			if rs == nil {
				rs = &rowSignals{}
				sig[r] = rs
			}
			rs.responses = true
			rs.total += v
			if m[contract.LabelClassification] == contract.ClassificationSuccess {
				rs.success += v
			}
			if rs.total > 0 {
				r.SuccessRate = ptr(rs.success / rs.total)
				r.RPS = ptr(rs.total)
			}
		},
	}}
	for _, p := range []struct {
		q     float64
		field func(*Row) **float64
	}{
		{0.5, func(r *Row) **float64 { return &r.LatencyMsP50 }},
		{0.95, func(r *Row) **float64 { return &r.LatencyMsP95 }},
		{0.99, func(r *Row) **float64 { return &r.LatencyMsP99 }},
	} {
		qs = append(qs, query{promql: s.LatencyQuantile(p.q), rowOf: rowOf, set: func(r *Row, _ model.Metric, v float64) {
			*p.field(r) = ptr(v)
		}})
	}
	return qs
}

// tcpQueries are the TCP connection and byte-rate queries of s.
func tcpQueries(s promql.Scope, rowOf func(model.Metric) *Row) []query {
	return []query{
		{promql: s.TCPConnections(), rowOf: rowOf, set: func(r *Row, _ model.Metric, v float64) { r.TCPConnections = ptr(v) }},
		{promql: s.TCPReadBytes(), rowOf: rowOf, set: func(r *Row, _ model.Metric, v float64) { r.ReadBytesPerSec = ptr(v) }},
		{promql: s.TCPWriteBytes(), rowOf: rowOf, set: func(r *Row, _ model.Metric, v float64) { r.WriteBytesPerSec = ptr(v) }},
	}
}

// runPlans runs the queries concurrently and records their samples. Each
// query writes distinct fields of a row except the responses query, whose
// setter locks; NaN (a quantile of no requests) is left unset.
func runPlans(ctx context.Context, q Querier, qs []query) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(maxConcurrentQueries)
	for _, qu := range qs {
		g.Go(func() error {
			vec, err := q.Query(ctx, qu.promql)
			if err != nil {
				return err
			}
			for _, s := range vec {
				v := float64(s.Value)
				if math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
				if r := qu.rowOf(s.Metric); r != nil {
					qu.set(r, s.Metric, v)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

func ptr(v float64) *float64 { return &v }
