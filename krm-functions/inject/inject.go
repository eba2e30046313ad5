// Package inject adds the Conduit proxy and its init step to Kubernetes
// workloads. It is a pure function over kyaml resource nodes shared by every
// front end of conduit-inject: (resources, config) → (resources, results).
//
// Injection is "remove ours, then add", so injecting an injected resource
// gives the same bytes, and a changed annotation updates the injected spec.
package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/kustomize/kyaml/fn/framework"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
)

// Injector injects workloads with one configuration. It holds no state
// between calls and is safe for concurrent use.
type Injector struct {
	cfg Config
}

// New returns an Injector, or the first invalid setting in cfg.
func New(cfg Config) (*Injector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Injector{cfg: cfg}, nil
}

// otherMeshSidecars are containers of other meshes; a pod with one is left
// alone, since two proxies would fight over the same traffic.
var otherMeshSidecars = []string{"istio-proxy", "linkerd-proxy"}

// Inject returns the resources with every workload injected, and a result
// for each resource skipped, warned about or in error. When any result is
// an error it returns the input unchanged: nothing is half-written.
// Resources other than workloads, and Lists' items that are not workloads,
// pass through untouched.
func (in *Injector) Inject(nodes []*yaml.RNode) ([]*yaml.RNode, framework.Results) {
	var results framework.Results
	nsModes := namespaceModes(nodes, &results)
	out := make([]*yaml.RNode, len(nodes))
	for i, n := range nodes {
		out[i] = in.injectResource(n, nsModes, &results)
	}
	if HasErrors(results) {
		return nodes, results
	}
	return out, results
}

// HasErrors reports whether any result is an error.
func HasErrors(rs framework.Results) bool {
	return slices.ContainsFunc(rs, func(r *framework.Result) bool {
		return r.Severity == framework.Error
	})
}

// injectResource returns n, or an injected copy of it.
func (in *Injector) injectResource(n *yaml.RNode, nsModes map[string]string, results *framework.Results) *yaml.RNode {
	meta, err := n.GetMeta()
	if err != nil {
		*results = append(*results, &framework.Result{
			Severity: framework.Error,
			Message:  fmt.Sprintf("a document is not a Kubernetes resource: %v", err),
		})
		return n
	}
	if meta.Kind == "List" && meta.APIVersion == "v1" {
		return in.injectList(n, nsModes, results)
	}
	w, ok := workloadOf(meta)
	if !ok {
		return n
	}
	injected := n.Copy()
	p := &pod{meta: meta, kind: w, workload: injected, results: results}
	if err := in.injectPod(p, nsModes); err != nil {
		p.add(framework.Error, err)
		return n
	}
	return injected
}

func (in *Injector) injectList(n *yaml.RNode, nsModes map[string]string, results *framework.Results) *yaml.RNode {
	items := n.Field("items")
	if items == nil || items.Value.YNode().Kind != yaml.SequenceNode {
		return n
	}
	list := n.Copy()
	elems := list.Field("items").Value.YNode().Content
	for i, e := range elems {
		elems[i] = in.injectResource(yaml.NewRNode(e), nsModes, results).YNode()
	}
	return list
}

// pod is one workload being injected.
type pod struct {
	meta     yaml.ResourceMeta
	kind     workloadKind
	workload *yaml.RNode // the copy being changed
	template *yaml.RNode // the pod template (the workload itself for a Pod)
	results  *framework.Results
}

func (p *pod) ref() *yaml.ResourceIdentifier {
	return &yaml.ResourceIdentifier{
		TypeMeta: yaml.TypeMeta{APIVersion: p.meta.APIVersion, Kind: p.meta.Kind},
		NameMeta: yaml.NameMeta{Name: p.meta.Name, Namespace: p.meta.Namespace},
	}
}

// add records a result about this workload. A *FieldError also fills in
// the result's field.
func (p *pod) add(sev framework.Severity, err error) {
	r := &framework.Result{Severity: sev, Message: err.Error(), ResourceRef: p.ref()}
	if fe, ok := err.(*FieldError); ok {
		r.Field = &framework.Field{Path: fe.Field, CurrentValue: fe.Value}
	}
	*p.results = append(*p.results, r)
}

func (p *pod) skip(reason string) {
	p.add(framework.Info, fmt.Errorf("%s: not injected: %s", describe(p.meta), reason))
}

func (p *pod) fieldError(field, value, reason string) *FieldError {
	return &FieldError{Resource: describe(p.meta), Field: field, Value: value, Reason: reason}
}

func (in *Injector) injectPod(p *pod, nsModes map[string]string) error {
	tp := p.kind.templatePath()
	p.template = p.workload
	if len(p.kind.path) > 0 {
		t, err := p.workload.Pipe(yaml.Lookup(p.kind.path...))
		if err != nil {
			t = nil
		}
		p.template = t
	}
	if p.template == nil || p.template.YNode().Kind != yaml.MappingNode {
		return p.fieldError(strings.TrimSuffix(tp, "."), "", "missing: a "+p.meta.Kind+" needs a pod template")
	}
	spec := p.template.Field("spec")
	if spec == nil || spec.Value.YNode().Kind != yaml.MappingNode {
		return p.fieldError(tp+"spec", "", "missing: a pod template needs a spec")
	}

	for _, field := range []string{"initContainers", "containers"} {
		if list := spec.Value.Field(field); list != nil && !list.Value.IsNil() && list.Value.YNode().Kind != yaml.SequenceNode {
			return p.fieldError(tp+"spec."+field, list.Value.YNode().Value, "must be a list of containers")
		}
	}
	mode, source, err := in.injectMode(p, nsModes)
	if err != nil {
		return err
	}
	if mode == contract.InjectDisabled {
		p.skip("disabled by " + source)
		return nil
	}
	if hostNetwork := spec.Value.Field("hostNetwork"); hostNetwork != nil && hostNetwork.Value.YNode().Value == "true" {
		p.skip("hostNetwork pods share the node's network namespace, which the proxy must not redirect")
		return nil
	}
	names := containerNames(spec.Value)
	for _, other := range otherMeshSidecars {
		if slices.Contains(names, other) {
			p.skip("it already has another mesh's sidecar " + other)
			return nil
		}
	}

	s, err := in.settings(p)
	if err != nil {
		return err
	}
	removeOurs(p.template, spec.Value)
	return addOurs(p.template, spec.Value, s)
}

// injectMode decides enabled or disabled: the pod template's annotation,
// else the workload's, else its Namespace object's, else the default. It
// also says which of them decided.
func (in *Injector) injectMode(p *pod, nsModes map[string]string) (mode, source string, err error) {
	tp := p.kind.templatePath()
	for _, src := range []struct {
		node *yaml.RNode
		path string
	}{
		{p.template, tp + "metadata.annotations"},
		{p.workload, "metadata.annotations"},
	} {
		v, ok := annotation(src.node, contract.AnnotationInject)
		if !ok {
			continue
		}
		field := src.path + "[" + contract.AnnotationInject + "]"
		if v != contract.InjectEnabled && v != contract.InjectDisabled {
			return "", "", p.fieldError(field, v, "must be enabled or disabled")
		}
		return v, field, nil
	}
	if v, ok := nsModes[p.meta.Namespace]; ok {
		return v, fmt.Sprintf("the annotation %s of Namespace/%s", contract.AnnotationInject, p.meta.Namespace), nil
	}
	return in.cfg.DefaultInject, "the injector's default (defaultInject)", nil
}

// settings refines the configuration with the workload's annotations; the
// pod template's win over the workload's.
func (in *Injector) settings(p *pod) (podSettings, error) {
	s := podSettings{Config: in.cfg, workloadKind: strings.ToLower(p.meta.Kind), workloadName: p.meta.Name}
	if len(s.workloadName) > 63 {
		return s, p.fieldError("metadata.name", p.meta.Name,
			"longer than 63 characters, the limit of the label value "+contract.WorkloadLabel(p.meta.Kind))
	}
	type source struct {
		node *yaml.RNode
		path string
	}
	sources := []source{{p.workload, "metadata.annotations"}}
	if len(p.kind.path) > 0 {
		sources = append(sources, source{p.template, p.kind.templatePath() + "metadata.annotations"})
	}
	for _, src := range sources {
		lookup := func(key string) (string, string, bool) {
			v, ok := annotation(src.node, key)
			return v, src.path + "[" + key + "]", ok
		}
		for key, dst := range map[string]*ports.List{
			contract.AnnotationSkipInboundPorts:  &s.SkipInboundPorts,
			contract.AnnotationSkipOutboundPorts: &s.SkipOutboundPorts,
			contract.AnnotationOpaquePorts:       &s.OpaquePorts,
		} {
			if v, field, ok := lookup(key); ok {
				l, err := ports.Parse(v)
				if err != nil {
					return s, p.fieldError(field, v, err.Error())
				}
				*dst = l
			}
		}
		if v, field, ok := lookup(contract.AnnotationProxyLogLevel); ok {
			if reason := invalid(fieldLogLevel, v); reason != "" {
				return s, p.fieldError(field, v, reason)
			}
			s.LogLevel = v
		}
		for _, a := range proxyEnvAnnotations {
			v, field, ok := lookup(a.annotation)
			if !ok {
				continue
			}
			if reason := a.invalid(v); reason != "" {
				return s, p.fieldError(field, v, reason)
			}
			if s.proxyEnv == nil {
				s.proxyEnv = map[string]string{}
			}
			s.proxyEnv[a.env] = a.value(v)
		}
		for key, setting := range map[string]string{
			contract.AnnotationProxyCPURequest: fieldCPURequest,
			contract.AnnotationProxyCPULimit:   fieldCPULimit,
			contract.AnnotationProxyMemRequest: fieldMemoryRequest,
			contract.AnnotationProxyMemLimit:   fieldMemoryLimit,
		} {
			if v, field, ok := lookup(key); ok {
				if err := setResource(&s.Resources, setting, describe(p.meta), field, v); err != nil {
					return s, err
				}
			}
		}
	}
	appPorts, err := appPorts(p)
	if err != nil {
		return s, err
	}
	s.appPorts = appPorts
	warnDrainOverGrace(p, s)
	return s, nil
}

// proxyEnvAnnotation is an annotation passed to the proxy as an
// environment variable, only when set.
type proxyEnvAnnotation struct {
	annotation, env string
	invalid         func(string) string // why the value is wrong, or ""
	value           func(string) string // the variable's value
}

// proxyEnvAnnotations, in the order their variables follow the others in
// the proxy container's env.
var proxyEnvAnnotations = []proxyEnvAnnotation{
	{contract.AnnotationProxyHeadReadTimeout, contract.EnvProxyHeadReadTimeout, positiveDuration, strings.TrimSpace},
	{contract.AnnotationProxyKeepAliveTimeout, contract.EnvProxyKeepAliveTimeout, positiveDuration, strings.TrimSpace},
	{contract.AnnotationProxyStreamIdleTimeout, contract.EnvProxyStreamIdleTimeout, positiveDuration, strings.TrimSpace},
	{contract.AnnotationProxyOpaqueIdleTimeout, contract.EnvProxyOpaqueIdleTimeout, positiveDuration, strings.TrimSpace},
	{contract.AnnotationProxyDrainTimeout, contract.EnvProxyDrainTimeout, nonNegativeDuration, strings.TrimSpace},
	{contract.AnnotationInboundLoopbackPorts, contract.EnvProxyInboundLoopbackPorts, portList, func(v string) string {
		return ports.MustParse(v).String()
	}},
}

func positiveDuration(v string) string {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		return "must be a positive Go duration (for example 30s, 5m, 1h)"
	}
	return ""
}

func nonNegativeDuration(v string) string {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return "must be a Go duration (for example 20s, 1m), 0 or more"
	}
	return ""
}

func portList(v string) string {
	if _, err := ports.Parse(v); err != nil {
		return err.Error()
	}
	return ""
}

// warnDrainOverGrace warns when the proxy's drain timeout, as annotated,
// is longer than the pod's termination grace period (30s when unset): the
// kubelet kills the proxy before the drain ends.
func warnDrainOverGrace(p *pod, s podSettings) {
	v, ok := s.proxyEnv[contract.EnvProxyDrainTimeout]
	if !ok {
		return
	}
	drain, _ := time.ParseDuration(v)
	grace := 30 * time.Second
	field := p.kind.templatePath() + "spec.terminationGracePeriodSeconds"
	if g := p.template.Field("spec").Value.Field("terminationGracePeriodSeconds"); g != nil {
		secs, err := strconv.ParseInt(g.Value.YNode().Value, 10, 64)
		if err != nil {
			return // not ours to judge; the API server will
		}
		grace = time.Duration(secs) * time.Second
	}
	if drain > grace {
		p.add(framework.Warning, fmt.Errorf("%s: the proxy's drain timeout %s (%s) is longer than %s (%s): the kubelet kills the proxy before it has drained",
			describe(p.meta), v, contract.AnnotationProxyDrainTimeout, field, grace))
	}
}

// appPorts lists the TCP container ports of the app's containers, warning
// about the others: the mesh proxies TCP only.
func appPorts(p *pod) (ports.List, error) {
	spec := p.template.Field("spec").Value
	var tcp []uint16
	for _, field := range []string{"initContainers", "containers"} {
		list := spec.Field(field)
		if list == nil {
			continue
		}
		for i, c := range list.Value.YNode().Content {
			cn := yaml.NewRNode(c)
			name := stringField(cn, "name")
			if isOurs(name) {
				continue
			}
			ps := cn.Field("ports")
			if ps == nil {
				continue
			}
			for j, pn := range ps.Value.YNode().Content {
				port := yaml.NewRNode(pn)
				path := fmt.Sprintf("%sspec.%s[%d].ports[%d]", p.kind.templatePath(), field, i, j)
				num := stringField(port, "containerPort")
				n, err := ports.Parse(num)
				if err != nil || n.Empty() || strings.ContainsAny(num, ",-") {
					return ports.List{}, p.fieldError(path+".containerPort", num, "not a port number in 1-65535")
				}
				proto := stringField(port, "protocol")
				if proto != "" && proto != "TCP" {
					p.add(framework.Warning, fmt.Errorf("%s: container %q port %s/%s is not proxied: the mesh proxies TCP only",
						describe(p.meta), name, num, proto))
					continue
				}
				tcp = append(tcp, n.Ranges()[0].First)
			}
		}
	}
	return ports.Of(tcp...), nil
}

// namespaceModes reads the inject annotation of the Namespace objects in
// the input.
func namespaceModes(nodes []*yaml.RNode, results *framework.Results) map[string]string {
	modes := map[string]string{}
	for _, n := range nodes {
		m, err := n.GetMeta()
		if err != nil || m.Kind != "Namespace" || m.APIVersion != "v1" {
			continue
		}
		v, ok := m.Annotations[contract.AnnotationInject]
		if !ok {
			continue
		}
		if v != contract.InjectEnabled && v != contract.InjectDisabled {
			*results = append(*results, &framework.Result{
				Severity:    framework.Error,
				Message:     (&FieldError{Resource: describe(m), Field: "metadata.annotations[" + contract.AnnotationInject + "]", Value: v, Reason: "must be enabled or disabled"}).Error(),
				ResourceRef: &yaml.ResourceIdentifier{TypeMeta: m.TypeMeta, NameMeta: m.ObjectMeta.NameMeta},
			})
			continue
		}
		modes[m.Name] = v
	}
	return modes
}

func annotation(n *yaml.RNode, key string) (string, bool) {
	v := child(child(child(n.YNode(), "metadata"), "annotations"), key)
	if v == nil {
		return "", false
	}
	return v.Value, true
}

// child returns the value of key in the mapping m, or nil. Direct node
// access: kyaml's path filters cost too much per annotation on large inputs.
func child(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func stringField(n *yaml.RNode, field string) string {
	f := n.Field(field)
	if f == nil {
		return ""
	}
	return f.Value.YNode().Value
}

func isOurs(container string) bool {
	return container == contract.ProxyContainerName || container == contract.InitContainerName
}

func containerNames(spec *yaml.RNode) []string {
	var names []string
	for _, field := range []string{"initContainers", "containers"} {
		if list := spec.Field(field); list != nil {
			for _, c := range list.Value.YNode().Content {
				names = append(names, stringField(yaml.NewRNode(c), "name"))
			}
		}
	}
	return names
}
