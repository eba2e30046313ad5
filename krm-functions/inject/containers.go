package inject

import (
	"strconv"

	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
)

// The containers the injector adds, as the subset of the Kubernetes API
// they use. Field order here is the order in the output.
type container struct {
	Name            string          `yaml:"name"`
	Image           string          `yaml:"image"`
	Command         []string        `yaml:"command,omitempty"`
	Args            []string        `yaml:"args,omitempty"`
	Ports           []containerPort `yaml:"ports,omitempty"`
	Env             []envVar        `yaml:"env,omitempty"`
	Resources       *resources      `yaml:"resources,omitempty"`
	StartupProbe    *probe          `yaml:"startupProbe,omitempty"`
	LivenessProbe   *probe          `yaml:"livenessProbe,omitempty"`
	ReadinessProbe  *probe          `yaml:"readinessProbe,omitempty"`
	SecurityContext securityContext `yaml:"securityContext"`
	RestartPolicy   string          `yaml:"restartPolicy,omitempty"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type envVar struct {
	Name      string        `yaml:"name"`
	Value     string        `yaml:"value,omitempty"`
	ValueFrom *envVarSource `yaml:"valueFrom,omitempty"`
}

type envVarSource struct {
	FieldRef struct {
		FieldPath string `yaml:"fieldPath"`
	} `yaml:"fieldRef"`
}

type resources struct {
	Requests map[string]string `yaml:"requests,omitempty"`
	Limits   map[string]string `yaml:"limits,omitempty"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port int    `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds,omitempty"`
	FailureThreshold int `yaml:"failureThreshold,omitempty"`
}

type securityContext struct {
	RunAsUser                int64          `yaml:"runAsUser"`
	RunAsNonRoot             bool           `yaml:"runAsNonRoot"`
	ReadOnlyRootFilesystem   bool           `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation bool           `yaml:"allowPrivilegeEscalation"`
	Capabilities             capabilities   `yaml:"capabilities"`
	SeccompProfile           seccompProfile `yaml:"seccompProfile"`
}

type capabilities struct {
	Add  []string `yaml:"add,omitempty"`
	Drop []string `yaml:"drop"`
}

type seccompProfile struct {
	Type string `yaml:"type"`
}

// podSettings is the configuration for one pod, after its annotations.
type podSettings struct {
	Config
	workloadKind string // lower-case, from contract.WorkloadKinds
	workloadName string // empty for a Pod named by generateName: the proxy reads its own name
	appPorts     ports.List
}

func fieldEnv(name, fieldPath string) envVar {
	e := envVar{Name: name, ValueFrom: &envVarSource{}}
	e.ValueFrom.FieldRef.FieldPath = fieldPath
	return e
}

func httpProbe(path string, period, failures int) *probe {
	p := &probe{PeriodSeconds: period, FailureThreshold: failures}
	p.HTTPGet.Path = path
	p.HTTPGet.Port = contract.ProxyAdminPort
	return p
}

func restricted() securityContext {
	return securityContext{
		RunAsUser:              contract.ProxyUID,
		RunAsNonRoot:           true,
		ReadOnlyRootFilesystem: true,
		Capabilities:           capabilities{Drop: []string{"ALL"}},
		SeccompProfile:         seccompProfile{Type: "RuntimeDefault"},
	}
}

// proxyContainer is the sidecar.
func proxyContainer(s podSettings) container {
	workloadName := envVar{Name: contract.EnvWorkloadName, Value: s.workloadName}
	if s.workloadName == "" {
		workloadName = fieldEnv(contract.EnvWorkloadName, "metadata.name")
	}
	c := container{
		Name:  contract.ProxyContainerName,
		Image: s.Image,
		Ports: []containerPort{
			{contract.ProxyInboundPortName, contract.ProxyInboundPort},
			{contract.ProxyAdminPortName, contract.ProxyAdminPort},
			{contract.ProxyTapPortName, contract.ProxyTapPort},
		},
		Env: []envVar{
			fieldEnv(contract.EnvPodName, "metadata.name"),
			fieldEnv(contract.EnvPodNamespace, "metadata.namespace"),
			fieldEnv(contract.EnvPodServiceAccount, "spec.serviceAccountName"),
			{Name: contract.EnvWorkloadKind, Value: s.workloadKind},
			workloadName,
			{Name: contract.EnvControlPlaneNS, Value: s.ControlPlaneNamespace},
			{Name: contract.EnvProxyLogLevel, Value: s.LogLevel},
			{Name: contract.EnvProxyInboundPorts, Value: s.appPorts.String()},
			{Name: contract.EnvProxyOpaquePorts, Value: s.OpaquePorts.String()},
		},
		Resources:       proxyResources(s.Resources),
		LivenessProbe:   httpProbe(contract.AdminLivePath, 10, 3),
		ReadinessProbe:  httpProbe(contract.AdminReadyPath, 10, 3),
		SecurityContext: restricted(),
	}
	if s.NativeSidecar {
		// Kubernetes starts the app containers only once a native sidecar's
		// startup probe passes, so the app never talks before the proxy
		// listens.
		c.StartupProbe = httpProbe(contract.AdminReadyPath, 1, 120)
		c.RestartPolicy = "Always"
	}
	return c
}

// initContainer installs the redirect. Changing a pod's netfilter rules
// needs root with NET_ADMIN and NET_RAW; it gets nothing else.
func initContainer(s podSettings) container {
	skipIn := s.SkipInboundPorts.Union(ports.Of(contract.ProxyAdminPort, contract.ProxyTapPort))
	args := []string{
		flag(contract.InitFlagInboundProxyPort, strconv.Itoa(contract.ProxyInboundPort)),
		flag(contract.InitFlagOutboundProxyPort, strconv.Itoa(contract.ProxyOutboundPort)),
		flag(contract.InitFlagProxyUID, strconv.Itoa(contract.ProxyUID)),
		flag(contract.InitFlagSkipInboundPorts, skipIn.String()),
	}
	if !s.SkipOutboundPorts.Empty() {
		args = append(args, flag(contract.InitFlagSkipOutboundPorts, s.SkipOutboundPorts.String()))
	}
	sc := restricted()
	sc.RunAsUser = 0
	sc.RunAsNonRoot = false
	sc.Capabilities.Add = []string{"NET_ADMIN", "NET_RAW"}
	return container{
		Name:            contract.InitContainerName,
		Image:           s.Image,
		Command:         []string{contract.InitBinaryPath},
		Args:            args,
		SecurityContext: sc,
	}
}

func flag(name, value string) string { return "--" + name + "=" + value }

func proxyResources(r Resources) *resources {
	if r.empty() {
		return nil
	}
	out := &resources{}
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

// toNode renders a container as an RNode to insert into a pod spec.
func toNode(c container) (*yaml.RNode, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	return yaml.Parse(string(b))
}
