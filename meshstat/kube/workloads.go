package kube

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/conduitmesh/conduit/pkg/contract"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Workload is one resource meshstat reports on and the pods it selects.
type Workload struct {
	Kind      Kind
	Namespace string
	Name      string
	// selector picks the workload's pods in its namespace; nil for a pod
	// (matched by name) and a namespace (every pod in it).
	selector labels.Selector
}

// Selects reports whether p belongs to w.
func (w Workload) Selects(p *corev1.Pod) bool {
	switch w.Kind {
	case Namespace:
		return p.Namespace == w.Name
	case Pod:
		return p.Namespace == w.Namespace && p.Name == w.Name
	}
	return p.Namespace == w.Namespace && w.selector != nil && w.selector.Matches(labels.Set(p.Labels))
}

// PodSelector is the label selector of the workload's pods, for a pod
// watch: "" for a namespace (all pods) and a pod (use its name).
func (w Workload) PodSelector() string {
	if w.selector == nil {
		return ""
	}
	return w.selector.String()
}

// Key is "namespace/name" (for a namespace, its name).
func (w Workload) Key() string {
	if w.Kind == Namespace {
		return w.Name
	}
	return w.Namespace + "/" + w.Name
}

// Client reads the cluster. It only ever gets, lists and watches.
type Client struct {
	CS   kubernetes.Interface
	Host string // the API server, for messages
}

// Workloads lists the resources of kind in namespace ("" for all), only
// the one called name when name is set, only those matching labelSelector
// when it is set. An unknown name is an error; so is an empty result.
func (c Client) Workloads(ctx context.Context, kind Kind, namespace, name, labelSelector string) ([]Workload, error) {
	if kind == Namespace {
		return c.namespaces(ctx, namespace, name, labelSelector)
	}
	opts := metav1.ListOptions{LabelSelector: labelSelector}
	if name != "" {
		opts.FieldSelector = "metadata.name=" + name
	}
	var ws []Workload
	add := func(m metav1.ObjectMeta, sel *metav1.LabelSelector) error {
		w := Workload{Kind: kind, Namespace: m.Namespace, Name: m.Name}
		if sel != nil {
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil {
				return fmt.Errorf("%s %s/%s: bad selector: %w", kind, m.Namespace, m.Name, err)
			}
			w.selector = s
		}
		ws = append(ws, w)
		return nil
	}
	var err error
	switch kind {
	case Deployment:
		l, e := c.CS.AppsV1().Deployments(namespace).List(ctx, opts)
		err = e
		for i := 0; e == nil && i < len(l.Items); i++ {
			err = add(l.Items[i].ObjectMeta, l.Items[i].Spec.Selector)
		}
	case StatefulSet:
		l, e := c.CS.AppsV1().StatefulSets(namespace).List(ctx, opts)
		err = e
		for i := 0; e == nil && i < len(l.Items); i++ {
			err = add(l.Items[i].ObjectMeta, l.Items[i].Spec.Selector)
		}
	case DaemonSet:
		l, e := c.CS.AppsV1().DaemonSets(namespace).List(ctx, opts)
		err = e
		for i := 0; e == nil && i < len(l.Items); i++ {
			err = add(l.Items[i].ObjectMeta, l.Items[i].Spec.Selector)
		}
	case Job:
		l, e := c.CS.BatchV1().Jobs(namespace).List(ctx, opts)
		err = e
		for i := 0; e == nil && i < len(l.Items); i++ {
			err = add(l.Items[i].ObjectMeta, l.Items[i].Spec.Selector)
		}
	case Pod:
		l, e := c.CS.CoreV1().Pods(namespace).List(ctx, opts)
		err = e
		for i := 0; e == nil && i < len(l.Items); i++ {
			err = add(l.Items[i].ObjectMeta, nil)
		}
	default:
		return nil, fmt.Errorf("unknown kind %q: use one of %s", kind.Name, KindNames())
	}
	if err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || IsUnreachable(err) {
			return nil, Explain(err, c.Host, "list", kind.Resource, namespace)
		}
		return nil, err
	}
	// The fake clientset ignores field selectors; filter here as well.
	if name != "" {
		ws = filter(ws, func(w Workload) bool { return w.Name == name })
	}
	if len(ws) == 0 {
		return nil, notFound(kind, namespace, name, labelSelector)
	}
	sortWorkloads(ws)
	return ws, nil
}

func notFound(kind Kind, namespace, name, labelSelector string) error {
	where := fmt.Sprintf("in namespace %q", namespace)
	if namespace == "" {
		where = "in any namespace"
	}
	if name != "" {
		return fmt.Errorf("%s %q not found %s: check the name, or the namespace with -n", kind, name, where)
	}
	if labelSelector != "" {
		return fmt.Errorf("no %s matching %q %s", kind.Resource, labelSelector, where)
	}
	return fmt.Errorf("no %s %s: pick another namespace with -n, or -A for all", kind.Resource, where)
}

// namespaces does not list Namespace objects (the read-only role does not
// grant it): the namespaces reported are those with pods.
func (c Client) namespaces(ctx context.Context, namespace, name, labelSelector string) ([]Workload, error) {
	if labelSelector != "" {
		return nil, fmt.Errorf("-l is not supported for namespaces")
	}
	if name != "" {
		return []Workload{{Kind: Namespace, Namespace: name, Name: name}}, nil
	}
	if namespace != "" {
		return []Workload{{Kind: Namespace, Namespace: namespace, Name: namespace}}, nil
	}
	pods, err := c.Pods(ctx, "")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var ws []Workload
	for _, p := range pods {
		if !seen[p.Namespace] {
			seen[p.Namespace] = true
			ws = append(ws, Workload{Kind: Namespace, Namespace: p.Namespace, Name: p.Namespace})
		}
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("no pods in any namespace")
	}
	sortWorkloads(ws)
	return ws, nil
}

// Pods lists the pods in namespace ("" for all).
func (c Client) Pods(ctx context.Context, namespace string) ([]corev1.Pod, error) {
	l, err := c.CS.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, Explain(err, c.Host, "list", "pods", namespace)
	}
	return l.Items, nil
}

// IsMeshed reports whether the pod carries the proxy, as a container or
// as a native sidecar (an init container that keeps running).
func IsMeshed(p *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == contract.ProxyContainerName {
				return true
			}
		}
	}
	return false
}

// IsRunning reports whether the pod is running and not being deleted.
func IsRunning(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil
}

// Meshed counts w's running pods, and those of them that are meshed.
func Meshed(w Workload, pods []corev1.Pod) (meshed, running int) {
	for i := range pods {
		p := &pods[i]
		if !w.Selects(p) || !IsRunning(p) {
			continue
		}
		running++
		if IsMeshed(p) {
			meshed++
		}
	}
	return meshed, running
}

// Services lists the names of the Services in w's namespace that select
// any of w's pods.
func (c Client) Services(ctx context.Context, w Workload, pods []corev1.Pod) ([]string, error) {
	l, err := c.CS.CoreV1().Services(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, Explain(err, c.Host, "list", "services", w.Namespace)
	}
	var names []string
	for _, s := range l.Items {
		if len(s.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(s.Spec.Selector)
		for i := range pods {
			if w.Selects(&pods[i]) && sel.Matches(labels.Set(pods[i].Labels)) {
				names = append(names, s.Name)
				break
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// AuthorityRegexp matches the :authority of requests addressed to any of
// the Services in namespace: "svc", "svc.ns", "svc.ns.svc",
// "svc.ns.svc.<cluster domain>", each with or without a port.
func AuthorityRegexp(namespace string, services []string) string {
	q := make([]string, len(services))
	for i, s := range services {
		q[i] = regexp.QuoteMeta(s)
	}
	return fmt.Sprintf(`(%s)(\.%s(\.svc(\.[a-z0-9.-]+)?)?)?(:[0-9]+)?`, strings.Join(q, "|"), regexp.QuoteMeta(namespace))
}

func filter(ws []Workload, keep func(Workload) bool) []Workload {
	var out []Workload
	for _, w := range ws {
		if keep(w) {
			out = append(out, w)
		}
	}
	return out
}

func sortWorkloads(ws []Workload) {
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].Namespace != ws[j].Namespace {
			return ws[i].Namespace < ws[j].Namespace
		}
		return ws[i].Name < ws[j].Name
	})
}
