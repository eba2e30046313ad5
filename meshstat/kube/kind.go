// Package kube is meshstat's read-only view of the cluster: the kinds it
// knows, the workloads and pods they select, which pods are meshed, and
// errors that say what failed and how to fix it.
package kube

import (
	"fmt"
	"strings"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// Kind is a resource kind meshstat can report on.
type Kind struct {
	// Name is the lower-case singular kind, e.g. "deployment".
	Name string
	// Resource is the plural API resource, e.g. "deployments".
	Resource string
	// Short is the abbreviation kubectl accepts, e.g. "deploy".
	Short string
}

// The kinds of `meshstat stat` and `meshstat tap`.
var (
	Deployment  = Kind{Name: "deployment", Resource: "deployments", Short: "deploy"}
	StatefulSet = Kind{Name: "statefulset", Resource: "statefulsets", Short: "sts"}
	DaemonSet   = Kind{Name: "daemonset", Resource: "daemonsets", Short: "ds"}
	Job         = Kind{Name: "job", Resource: "jobs", Short: "job"}
	Pod         = Kind{Name: "pod", Resource: "pods", Short: "po"}
	Namespace   = Kind{Name: "namespace", Resource: "namespaces", Short: "ns"}
)

// Kinds lists every kind in the order help text shows them.
var Kinds = []Kind{Deployment, StatefulSet, DaemonSet, Job, Pod, Namespace}

// KindNames is the short names, for messages: "deploy, sts, ds, job, pod, ns".
func KindNames() string {
	var s []string
	for _, k := range Kinds {
		if k == Pod {
			s = append(s, k.Name)
			continue
		}
		s = append(s, k.Short)
	}
	return strings.Join(s, ", ")
}

// ParseKind accepts a kind's short name, singular or plural, in any case.
func ParseKind(s string) (Kind, error) {
	l := strings.ToLower(s)
	for _, k := range Kinds {
		if l == k.Name || l == k.Resource || l == k.Short {
			return k, nil
		}
	}
	return Kind{}, fmt.Errorf("unknown kind %q: use one of %s", s, KindNames())
}

// ParseRef parses "kind/name", e.g. "deploy/web".
func ParseRef(s string) (Kind, string, error) {
	k, name, ok := strings.Cut(s, "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return Kind{}, "", fmt.Errorf("resource %q: want KIND/NAME, e.g. deploy/web (kinds: %s)", s, KindNames())
	}
	kind, err := ParseKind(k)
	if err != nil {
		return Kind{}, "", fmt.Errorf("resource %q: %w", s, err)
	}
	return kind, name, nil
}

// MetricLabel is the proxy metric label that carries the name of a
// resource of this kind: the workload kind itself (deployment="web"), or
// pod and namespace.
func (k Kind) MetricLabel() string {
	switch k {
	case Pod:
		return contract.LabelPod
	case Namespace:
		return contract.LabelNamespace
	}
	return k.Name
}

func (k Kind) String() string { return k.Name }
