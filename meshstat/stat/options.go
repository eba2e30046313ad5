// Package stat computes and prints the golden signals of meshed resources:
// MESHED from the Kubernetes API, success rate, RPS, latency percentiles
// and TCP figures from the proxies' metrics in Prometheus.
package stat

import (
	"fmt"
	"strings"
	"time"

	"github.com/conduitmesh/conduit/meshstat/kube"
	"github.com/prometheus/common/model"
)

// Output formats.
const (
	OutputTable = "table"
	OutputWide  = "wide"
	OutputJSON  = "json"
)

// DefaultWindow is the rate window when -t is not given: six scrapes at
// the bundled Prometheus's 10 s interval.
const DefaultWindow = "1m"

// Options is one `meshstat stat` invocation.
type Options struct {
	Kind          string // as typed: deploy, sts, ds, job, pod, ns (or their long forms)
	Name          string // optional
	Namespace     string // "" until filled from the kubeconfig, unless AllNamespaces
	AllNamespaces bool
	Window        string
	From, To      string // RES: KIND/NAME or svc/NAME, in Namespace
	LabelSelector string
	Output        string
}

// Ref is a resource named by --from or --to: a workload, a pod, or a
// Service (Kind.Name "service").
type Ref struct {
	Kind kube.Kind
	Name string
}

// serviceKind stands for a Service in --to/--from; it is not a stat kind.
var serviceKind = kube.Kind{Name: "service", Resource: "services", Short: "svc"}

// ParseRes parses RES of --from/--to.
func ParseRes(s string) (Ref, error) {
	k, name, ok := strings.Cut(s, "/")
	switch strings.ToLower(k) {
	case "svc", "service", "services":
		if !ok || name == "" || strings.Contains(name, "/") {
			return Ref{}, fmt.Errorf("resource %q: want svc/NAME", s)
		}
		return Ref{Kind: serviceKind, Name: name}, nil
	}
	kind, n, err := kube.ParseRef(s)
	if err != nil {
		return Ref{}, fmt.Errorf("%w, or svc/NAME", err)
	}
	if kind == kube.Namespace {
		return Ref{}, fmt.Errorf("resource %q: a namespace cannot be a source or destination; name a workload, pod or svc", s)
	}
	return Ref{Kind: kind, Name: n}, nil
}

// Validate checks the options on their own, before any request.
func (o Options) Validate() error {
	kind, err := kube.ParseKind(o.Kind)
	if err != nil {
		return err
	}
	if o.AllNamespaces && o.Namespace != "" {
		return fmt.Errorf("-n %s and -A: use one of them", o.Namespace)
	}
	d, err := model.ParseDuration(o.Window)
	if err != nil {
		return fmt.Errorf("-t %q: want a Prometheus duration such as 30s, 1m or 1h", o.Window)
	}
	if time.Duration(d) < time.Second {
		return fmt.Errorf("-t %q: the window must be at least 1s (and span two scrapes to show a rate)", o.Window)
	}
	switch o.Output {
	case OutputTable, OutputWide, OutputJSON:
	default:
		return fmt.Errorf("-o %q: want table, wide or json", o.Output)
	}
	if o.From != "" && o.To != "" {
		return fmt.Errorf("--from and --to: use one of them")
	}
	for flag, res := range map[string]string{"--from": o.From, "--to": o.To} {
		if res == "" {
			continue
		}
		if o.AllNamespaces {
			return fmt.Errorf("%s names a resource in one namespace: use -n, not -A", flag)
		}
		if _, err := ParseRes(res); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}
	if o.From != "" && kind == kube.Namespace {
		return fmt.Errorf("--from is not supported for namespaces: stat a workload kind instead")
	}
	if o.LabelSelector != "" && kind == kube.Namespace {
		return fmt.Errorf("-l is not supported for namespaces")
	}
	if o.Name != "" && o.LabelSelector != "" {
		return fmt.Errorf("NAME %q and -l: use one of them", o.Name)
	}
	return nil
}
