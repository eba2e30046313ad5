package inject

import (
	"strconv"

	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
)

// podSettings is the configuration for one pod, after its annotations.
type podSettings struct {
	Config
	workloadKind string // lower-case, from contract.WorkloadKinds
	workloadName string // empty for a Pod named by generateName: the proxy reads its own name
	appPorts     ports.List
	// proxyEnv holds the proxy variables set by annotations
	// (proxyEnvAnnotations), by name; the others are left to the proxy's
	// defaults.
	proxyEnv map[string]string
}

// The containers are built as YAML nodes directly: the field order here is
// the order in the output, and no marshalling round trip is paid per pod.

// proxyContainer is the sidecar.
func proxyContainer(s podSettings) *yaml.Node {
	workloadName := envValue(contract.EnvWorkloadName, s.workloadName)
	if s.workloadName == "" {
		workloadName = envField(contract.EnvWorkloadName, "metadata.name")
	}
	c := mapping(
		"name", str(contract.ProxyContainerName),
		"image", str(s.Image),
		"ports", seq(
			mapping("name", str(contract.ProxyInboundPortName), "containerPort", num(contract.ProxyInboundPort)),
			mapping("name", str(contract.ProxyAdminPortName), "containerPort", num(contract.ProxyAdminPort)),
			mapping("name", str(contract.ProxyTapPortName), "containerPort", num(contract.ProxyTapPort)),
		),
		"env", seq(
			envField(contract.EnvPodName, "metadata.name"),
			envField(contract.EnvPodNamespace, "metadata.namespace"),
			envField(contract.EnvPodServiceAccount, "spec.serviceAccountName"),
			envValue(contract.EnvWorkloadKind, s.workloadKind),
			workloadName,
			envValue(contract.EnvControlPlaneNS, s.ControlPlaneNamespace),
			envValue(contract.EnvProxyLogLevel, s.LogLevel),
			envValue(contract.EnvProxyInboundPorts, s.appPorts.String()),
			envValue(contract.EnvProxyOpaquePorts, s.OpaquePorts.String()),
		),
	)
	env := child(c, "env")
	for _, a := range proxyEnvAnnotations {
		if v, ok := s.proxyEnv[a.env]; ok {
			env.Content = append(env.Content, envValue(a.env, v))
		}
	}
	if r := proxyResources(s.Resources); r != nil {
		add(c, "resources", r)
	}
	if s.NativeSidecar {
		// Kubernetes starts the app containers only once a native sidecar's
		// startup probe passes, so the app never talks before the proxy
		// listens.
		add(c, "startupProbe", httpProbe(contract.AdminReadyPath, 1, 120))
	}
	add(c, "livenessProbe", httpProbe(contract.AdminLivePath, 10, 3))
	add(c, "readinessProbe", httpProbe(contract.AdminReadyPath, 10, 3))
	add(c, "securityContext", securityContext(contract.ProxyUID, nil))
	if s.NativeSidecar {
		add(c, "restartPolicy", str("Always"))
	}
	return c
}

// initContainer installs the redirect. Changing a pod's netfilter rules
// needs root with NET_ADMIN and NET_RAW; it gets nothing else.
func initContainer(s podSettings) *yaml.Node {
	skipIn := s.SkipInboundPorts.Union(ports.Of(contract.ProxyAdminPort, contract.ProxyTapPort))
	args := seq(
		str(flag(contract.InitFlagInboundProxyPort, strconv.Itoa(contract.ProxyInboundPort))),
		str(flag(contract.InitFlagOutboundProxyPort, strconv.Itoa(contract.ProxyOutboundPort))),
		str(flag(contract.InitFlagProxyUID, strconv.Itoa(contract.ProxyUID))),
		str(flag(contract.InitFlagSkipInboundPorts, skipIn.String())),
	)
	if !s.SkipOutboundPorts.Empty() {
		args.Content = append(args.Content, str(flag(contract.InitFlagSkipOutboundPorts, s.SkipOutboundPorts.String())))
	}
	return mapping(
		"name", str(contract.InitContainerName),
		"image", str(s.Image),
		"command", seq(str(contract.InitBinaryPath)),
		"args", args,
		"securityContext", securityContext(0, []string{"NET_ADMIN", "NET_RAW"}),
	)
}

func flag(name, value string) string { return "--" + name + "=" + value }

// securityContext passes the Pod Security restricted profile except for
// the init step's root user and capabilities.
func securityContext(uid int, addCaps []string) *yaml.Node {
	caps := mapping()
	if len(addCaps) > 0 {
		add(caps, "add", strs(addCaps...))
	}
	add(caps, "drop", strs("ALL"))
	return mapping(
		"runAsUser", num(uid),
		"runAsNonRoot", boolean(uid != 0),
		"readOnlyRootFilesystem", boolean(true),
		"allowPrivilegeEscalation", boolean(false),
		"capabilities", caps,
		"seccompProfile", mapping("type", str("RuntimeDefault")),
	)
}

func httpProbe(path string, period, failures int) *yaml.Node {
	return mapping(
		"httpGet", mapping("path", str(path), "port", num(contract.ProxyAdminPort)),
		"periodSeconds", num(period),
		"failureThreshold", num(failures),
	)
}

func envValue(name, value string) *yaml.Node {
	return mapping("name", str(name), "value", str(value))
}

func envField(name, fieldPath string) *yaml.Node {
	return mapping("name", str(name), "valueFrom", mapping("fieldRef", mapping("fieldPath", str(fieldPath))))
}

// proxyResources sets only what is configured; nil when nothing is.
func proxyResources(r Resources) *yaml.Node {
	if r.empty() {
		return nil
	}
	out := mapping()
	for _, group := range []struct {
		name        string
		cpu, memory string
	}{
		{"requests", r.CPURequest, r.MemoryRequest},
		{"limits", r.CPULimit, r.MemoryLimit},
	} {
		m := mapping()
		if group.cpu != "" {
			add(m, "cpu", str(group.cpu))
		}
		if group.memory != "" {
			add(m, "memory", str(group.memory))
		}
		if len(m.Content) > 0 {
			add(out, group.name, m)
		}
	}
	return out
}

// Node builders. Strings carry the !!str tag so the encoder quotes values
// like "8080" that would otherwise read as numbers.

func mapping(kvs ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: yaml.NodeTagMap}
	for i := 0; i < len(kvs); i += 2 {
		add(n, kvs[i].(string), kvs[i+1].(*yaml.Node))
	}
	return n
}

func add(m *yaml.Node, key string, value *yaml.Node) {
	m.Content = append(m.Content, str(key), value)
}

func seq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Tag: yaml.NodeTagSeq, Content: items}
}

func strs(ss ...string) *yaml.Node {
	n := seq()
	for _, s := range ss {
		n.Content = append(n.Content, str(s))
	}
	return n
}

func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: yaml.NodeTagString, Value: s}
}

func num(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: yaml.NodeTagInt, Value: strconv.Itoa(i)}
}

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: yaml.NodeTagBool, Value: strconv.FormatBool(b)}
}
