package generator

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/version"
)

// File is one rendered file, its path relative to the output directory.
type File struct {
	Path string
	Data []byte
}

// Names of the rendered objects that overlays and docs refer to.
const (
	PrometheusName       = contract.PrometheusServiceName
	PrometheusConfigName = "conduit-prometheus-config"
	MeshstatRoleName     = contract.MeshstatRoleName
	MeshstatBindingName  = contract.MeshstatBindingName
	InjectorConfigName   = "conduit-inject"
	// InjectorDir holds the ProxyInjector functionConfig in its own
	// kustomization: a transformer config, not an object to apply. Use it
	// with `transformers: [<path to base>/injector]`.
	InjectorDir = "injector"
	// prometheusUID runs Prometheus as nobody.
	prometheusUID = 65534
)

// Render returns the control plane for c: one file per object, named
// <kind>-<name>.yaml, a kustomization.yaml listing them, and the
// ProxyInjector functionConfig under InjectorDir. The same config always
// gives the same bytes. c must be valid.
func Render(c Config) ([]File, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	objs, err := controlPlane(c)
	if err != nil {
		return nil, err
	}
	var files []File
	var resources []string
	for _, o := range objs {
		data, err := marshal(o)
		if err != nil {
			return nil, err
		}
		p := strings.ToLower(o.Kind) + "-" + o.Metadata.Name + ".yaml"
		files = append(files, File{Path: p, Data: data})
		resources = append(resources, p)
	}
	sort.Strings(resources)
	kust, err := kustomization(resources, "The Conduit control plane. Rendered by `make manifests` from generator/conduit.yaml: do not edit.")
	if err != nil {
		return nil, err
	}
	files = append(files, File{Path: "kustomization.yaml", Data: kust})

	inj, err := marshal(injectorConfig(c))
	if err != nil {
		return nil, err
	}
	files = append(files, File{Path: InjectorDir + "/proxy-injector.yaml", Data: inj})
	ikust, err := kustomization([]string{"proxy-injector.yaml"}, "The ProxyInjector functionConfig, for `transformers:` in overlays and examples.")
	if err != nil {
		return nil, err
	}
	files = append(files, File{Path: InjectorDir + "/kustomization.yaml", Data: ikust})
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func kustomization(resources []string, comment string) ([]byte, error) {
	data, err := marshal(struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Resources  []string `yaml:"resources"`
	}{"kustomize.config.k8s.io/v1beta1", "Kustomization", resources})
	if err != nil {
		return nil, err
	}
	return append([]byte("# "+comment+"\n"), data...), nil
}

func labels(component string) map[string]string {
	l := map[string]string{
		"app.kubernetes.io/part-of": "conduit",
		"app.kubernetes.io/version": version.Version,
	}
	if component != "" {
		l["app.kubernetes.io/component"] = component
	}
	return l
}

func controlPlane(c Config) ([]object, error) {
	prom, err := prometheus(c)
	if err != nil {
		return nil, err
	}
	return append(append([]object{namespace(c)}, prom...), meshstat(c)...), nil
}

func namespace(c Config) object {
	l := labels("")
	// Every pod in the namespace must pass the restricted profile.
	for _, mode := range []string{"enforce", "audit", "warn"} {
		l["pod-security.kubernetes.io/"+mode] = "restricted"
		l["pod-security.kubernetes.io/"+mode+"-version"] = "latest"
	}
	return object{
		typeMeta: typeMeta{"v1", "Namespace"},
		Metadata: objectMeta{
			Name:   c.Namespace,
			Labels: l,
			// The control plane itself is never meshed.
			Annotations: map[string]string{contract.AnnotationInject: contract.InjectDisabled},
		},
	}
}

// prometheus is the bundled Prometheus with conduit-discovery beside it:
// discovery lists pods cluster-wide (the only permission the pod has) and
// Prometheus scrapes the proxies' admin ports it names.
func prometheus(c Config) ([]object, error) {
	ns := c.Namespace
	l := labels("metrics")
	selector := map[string]string{"app.kubernetes.io/name": PrometheusName}
	podLabels := labels("metrics")
	podLabels["app.kubernetes.io/name"] = PrometheusName

	promConfig, err := PrometheusScrapeConfig(c)
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(contract.PrometheusPort)
	sa := object{
		typeMeta: typeMeta{"v1", "ServiceAccount"},
		Metadata: objectMeta{Name: PrometheusName, Namespace: ns, Labels: l},
		// The token is mounted only into the Prometheus pod, which needs it
		// for pod discovery.
		AutomountServiceAccountToken: ptr(false),
	}
	role := object{
		typeMeta: typeMeta{"rbac.authorization.k8s.io/v1", "ClusterRole"},
		Metadata: objectMeta{Name: PrometheusName, Labels: l},
		Rules: []policyRule{
			// conduit-discovery lists running pods; nothing else.
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		},
	}
	binding := object{
		typeMeta: typeMeta{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding"},
		Metadata: objectMeta{Name: PrometheusName, Labels: l},
		RoleRef:  &roleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: PrometheusName},
		Subjects: []subject{{Kind: "ServiceAccount", Name: PrometheusName, Namespace: ns}},
	}
	cm := object{
		typeMeta: typeMeta{"v1", "ConfigMap"},
		Metadata: objectMeta{Name: PrometheusConfigName, Namespace: ns, Labels: l},
		Data:     map[string]string{"prometheus.yml": string(promConfig)},
	}
	svc := object{
		typeMeta: typeMeta{"v1", "Service"},
		Metadata: objectMeta{Name: PrometheusName, Namespace: ns, Labels: l},
		Spec: serviceSpec{
			Type:     "ClusterIP",
			Selector: selector,
			Ports: []servicePort{{
				Name: contract.PrometheusPortName, Port: contract.PrometheusPort,
				TargetPort: contract.PrometheusPortName, Protocol: "TCP",
			}},
		},
	}
	r := c.Prometheus
	deploy := object{
		typeMeta: typeMeta{"apps/v1", "Deployment"},
		Metadata: objectMeta{Name: PrometheusName, Namespace: ns, Labels: l},
		Spec: deploymentSpec{
			Replicas:             1,
			RevisionHistoryLimit: 3,
			Selector:             labelSelector{MatchLabels: selector},
			Template: podTemplateSpec{
				Metadata: objectMeta{
					Name:        PrometheusName,
					Labels:      podLabels,
					Annotations: map[string]string{contract.AnnotationInject: contract.InjectDisabled},
				},
				Spec: podSpec{
					ServiceAccountName:           PrometheusName,
					AutomountServiceAccountToken: ptr(true),
					EnableServiceLinks:           ptr(false),
					SecurityContext: podSecurityContext{
						RunAsNonRoot: true, RunAsUser: prometheusUID, RunAsGroup: prometheusUID, FSGroup: prometheusUID,
						SeccompProfile: seccompProfile{Type: "RuntimeDefault"},
					},
					TerminationGracePeriodSeconds: 30,
					Containers: []container{{
						Name:  "prometheus",
						Image: r.Image,
						// No namespace in args: overlays may move the
						// control plane.
						Args: []string{
							"--config.file=/etc/prometheus/prometheus.yml",
							"--storage.tsdb.path=/prometheus",
							"--storage.tsdb.retention.time=" + r.RetentionTime,
							"--storage.tsdb.retention.size=" + r.RetentionSize,
							"--web.listen-address=:" + port,
						},
						Ports: []containerPort{{Name: contract.PrometheusPortName, ContainerPort: contract.PrometheusPort, Protocol: "TCP"}},
						ReadinessProbe: &probe{
							HTTPGet:       httpGet{Path: "/-/ready", Port: contract.PrometheusPortName},
							PeriodSeconds: 5, TimeoutSeconds: 3, FailureThreshold: 3,
						},
						LivenessProbe: &probe{
							HTTPGet:             httpGet{Path: "/-/healthy", Port: contract.PrometheusPortName},
							InitialDelaySeconds: 30, PeriodSeconds: 15, TimeoutSeconds: 5, FailureThreshold: 4,
						},
						Resources:       resources(r.Resources),
						SecurityContext: restrictedContainer(),
						VolumeMounts: []volumeMount{
							{Name: "config", MountPath: "/etc/prometheus", ReadOnly: true},
							{Name: "data", MountPath: "/prometheus"},
						},
					}, {
						Name:  "discovery",
						Image: c.Proxy.Image,
						// Flag defaults match the scrape config: loopback,
						// contract.DiscoveryPort, the in-cluster API server.
						Command:         []string{contract.DiscoveryBinaryPath},
						Resources:       resources(Resources{CPURequest: "10m", CPULimit: "200m", MemoryRequest: "32Mi", MemoryLimit: "128Mi"}),
						SecurityContext: restrictedContainer(),
					}},
					Volumes: []volume{
						{Name: "config", ConfigMap: &configMapVolume{Name: PrometheusConfigName}},
						{Name: "data", EmptyDir: &emptyDirVolume{SizeLimit: r.StorageLimit}},
					},
				},
			},
		},
	}
	return []object{sa, role, binding, cm, svc, deploy}, nil
}

func restrictedContainer() containerSecurityContext {
	return containerSecurityContext{
		AllowPrivilegeEscalation: false,
		Capabilities:             capabilities{Drop: []string{"ALL"}},
		Privileged:               false,
		ReadOnlyRootFilesystem:   true,
		RunAsNonRoot:             true,
		SeccompProfile:           seccompProfile{Type: "RuntimeDefault"},
	}
}

func resources(r Resources) resourceRequirements {
	var out resourceRequirements
	set := func(m *map[string]string, k, v string) {
		if v == "" {
			return
		}
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[k] = v
	}
	set(&out.Requests, "cpu", r.CPURequest)
	set(&out.Requests, "memory", r.MemoryRequest)
	set(&out.Limits, "cpu", r.CPULimit)
	set(&out.Limits, "memory", r.MemoryLimit)
	return out
}

// PrometheusScrapeConfig is prometheus.yml: one job that takes its targets
// from conduit-discovery in the same pod (the meshed pods' admin ports,
// labelled with namespace, pod and workload) and keeps the labels the proxies
// put on their metrics (honor_labels).
func PrometheusScrapeConfig(c Config) ([]byte, error) {
	type httpSD struct {
		URL             string `yaml:"url"`
		RefreshInterval string `yaml:"refresh_interval"`
	}
	type scrapeConfig struct {
		JobName       string   `yaml:"job_name"`
		HonorLabels   bool     `yaml:"honor_labels"`
		MetricsPath   string   `yaml:"metrics_path"`
		HTTPSDConfigs []httpSD `yaml:"http_sd_configs"`
	}
	cfg := struct {
		Global        map[string]string `yaml:"global"`
		ScrapeConfigs []scrapeConfig    `yaml:"scrape_configs"`
	}{
		Global: map[string]string{
			"scrape_interval":     c.Prometheus.ScrapeInterval,
			"scrape_timeout":      c.Prometheus.ScrapeInterval,
			"evaluation_interval": c.Prometheus.ScrapeInterval,
		},
		ScrapeConfigs: []scrapeConfig{{
			JobName:     "conduit-proxy",
			HonorLabels: true,
			MetricsPath: contract.AdminMetricsPath,
			HTTPSDConfigs: []httpSD{{
				URL:             "http://127.0.0.1:" + strconv.Itoa(contract.DiscoveryPort) + contract.DiscoveryPath,
				RefreshInterval: c.Prometheus.ScrapeInterval,
			}},
		}},
	}
	out, err := marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("prometheus.yml: %w", err)
	}
	return out, nil
}

func meshstat(c Config) []object {
	l := labels("meshstat")
	read := []string{"get", "list", "watch"}
	svc := contract.PrometheusServiceName
	port := strconv.Itoa(contract.PrometheusPort)
	role := object{
		typeMeta: typeMeta{"rbac.authorization.k8s.io/v1", "ClusterRole"},
		Metadata: objectMeta{Name: MeshstatRoleName, Labels: l},
		Rules: []policyRule{
			// The kinds meshstat reports on (deploy, sts, ds, job, pod).
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
			{APIGroups: []string{"apps"}, Resources: []string{"daemonsets", "deployments", "statefulsets"}, Verbs: read},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: read},
			// The proxies' tap and admin ports, through the API server.
			{APIGroups: []string{""}, Resources: []string{"pods/proxy"}, Verbs: []string{"get"}},
			// Prometheus's HTTP API, through the API server; only the
			// bundled Prometheus Service, under each name a proxy URL may
			// use for it.
			{
				APIGroups: []string{""}, Resources: []string{"services/proxy"},
				ResourceNames: []string{svc, svc + ":" + contract.PrometheusPortName, svc + ":" + port},
				Verbs:         []string{"get"},
			},
		},
	}
	binding := object{
		typeMeta: typeMeta{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding"},
		Metadata: objectMeta{
			Name:   MeshstatBindingName,
			Labels: l,
			Annotations: map[string]string{
				contract.AnnotationDescription: "Example: members of this group may run meshstat. Bind other users or groups the same way.",
			},
		},
		RoleRef:  &roleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: MeshstatRoleName},
		Subjects: []subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: c.Meshstat.ViewersGroup}},
	}
	return []object{role, binding}
}

// injectorConfig is the ProxyInjector functionConfig: kustomize runs
// conduit-inject (found on PATH) as an exec KRM function with it.
func injectorConfig(c Config) any {
	type spec struct {
		Image                 string    `yaml:"image"`
		ControlPlaneNamespace string    `yaml:"controlPlaneNamespace"`
		SkipInboundPorts      string    `yaml:"skipInboundPorts,omitempty"`
		SkipOutboundPorts     string    `yaml:"skipOutboundPorts,omitempty"`
		OpaquePorts           string    `yaml:"opaquePorts"`
		LogLevel              string    `yaml:"logLevel"`
		Resources             Resources `yaml:"resources"`
		NativeSidecar         bool      `yaml:"nativeSidecar"`
	}
	p := c.Proxy
	return struct {
		typeMeta `yaml:",inline"`
		Metadata objectMeta `yaml:"metadata"`
		Spec     spec       `yaml:"spec"`
	}{
		typeMeta: typeMeta{contract.ProxyInjectorAPIVersion, contract.ProxyInjectorKind},
		Metadata: objectMeta{
			Name:        InjectorConfigName,
			Annotations: map[string]string{"config.kubernetes.io/function": "exec:\n  path: " + contract.InjectorExecutable + "\n"},
		},
		Spec: spec{
			Image:                 p.Image,
			ControlPlaneNamespace: c.Namespace,
			SkipInboundPorts:      p.SkipInboundPorts,
			SkipOutboundPorts:     p.SkipOutboundPorts,
			OpaquePorts:           p.OpaquePorts,
			LogLevel:              p.LogLevel,
			Resources:             p.Resources,
			NativeSidecar:         p.NativeSidecar,
		},
	}
}
