package inject

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/pkg/version"
)

// The functionConfig kinds the injector accepts.
const (
	ConfigAPIVersion = contract.ProxyInjectorAPIVersion
	ConfigKind       = contract.ProxyInjectorKind
)

// Config is what the injector adds and how, before a workload's own
// annotations refine it. The zero value is not valid: start from Defaults.
type Config struct {
	// Image is the proxy image; it also holds conduit-init.
	Image string
	// ControlPlaneNamespace is where the control plane runs.
	ControlPlaneNamespace string
	// SkipInboundPorts and SkipOutboundPorts bypass the proxy.
	SkipInboundPorts  ports.List
	SkipOutboundPorts ports.List
	// OpaquePorts are proxied as TCP with no protocol detection.
	OpaquePorts ports.List
	// LogLevel is the proxy's log level, one of contract.ProxyLogLevels.
	LogLevel string
	// Resources of the proxy container; empty fields are left unset.
	Resources Resources
	// NativeSidecar runs the proxy as an init container with restartPolicy
	// Always (Kubernetes 1.29+); otherwise it is the pod's first container.
	NativeSidecar bool
	// DefaultInject applies to workloads whose own annotations and
	// Namespace say nothing: contract.InjectEnabled or InjectDisabled.
	DefaultInject string
	// Version is stamped into the created-by annotation.
	Version string
}

// Resources are the proxy container's requests and limits as Kubernetes
// quantities.
type Resources struct {
	CPURequest, CPULimit, MemoryRequest, MemoryLimit string
}

func (r Resources) empty() bool { return r == Resources{} }

// Defaults returns the configuration used when nothing is configured.
func Defaults() Config {
	return Config{
		Image:                 contract.DefaultProxyImageRepo + ":" + version.Version,
		ControlPlaneNamespace: contract.DefaultControlPlaneNamespace,
		OpaquePorts:           ports.MustParse(contract.DefaultOpaquePorts),
		LogLevel:              contract.DefaultProxyLogLevel,
		NativeSidecar:         true,
		DefaultInject:         contract.InjectEnabled,
		Version:               version.Version,
	}
}

// FieldError is bad input: it names the resource, the field and the value.
type FieldError struct {
	Resource string // e.g. Deployment/web in namespace "emojivoto"
	Field    string // e.g. metadata.annotations.config.conduit.io/opaque-ports
	Value    string
	Reason   string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: field %s: %s", e.Resource, e.Field, e.Reason)
	}
	return fmt.Sprintf("%s: field %s: value %q: %s", e.Resource, e.Field, e.Value, e.Reason)
}

// Validate reports the first invalid setting, naming its field as it is
// spelled in a ProxyInjector spec.
func (c Config) Validate() error {
	for _, f := range []struct{ key, field, value string }{
		{fieldImage, "image", c.Image},
		{fieldControlPlaneNamespace, "controlPlaneNamespace", c.ControlPlaneNamespace},
		{fieldLogLevel, "logLevel", c.LogLevel},
		{fieldDefaultInject, "defaultInject", c.DefaultInject},
		{fieldCPURequest, "resources.cpuRequest", c.Resources.CPURequest},
		{fieldCPULimit, "resources.cpuLimit", c.Resources.CPULimit},
		{fieldMemoryRequest, "resources.memoryRequest", c.Resources.MemoryRequest},
		{fieldMemoryLimit, "resources.memoryLimit", c.Resources.MemoryLimit},
	} {
		if reason := invalid(f.key, f.value); reason != "" {
			return &FieldError{Resource: ConfigKind, Field: "spec." + f.field, Value: f.value, Reason: reason}
		}
	}
	if c.Version == "" {
		return &FieldError{Resource: ConfigKind, Field: "version", Reason: "must not be empty"}
	}
	return nil
}

// invalid says what is wrong with a setting's value, or "" when it is fine.
func invalid(key, value string) string {
	switch key {
	case fieldImage:
		if _, err := name.ParseReference(value, name.StrictValidation); err != nil {
			return "not an image reference: " + err.Error()
		}
	case fieldControlPlaneNamespace:
		if !isDNSLabel(value) {
			return "not a valid namespace name (RFC 1123 label)"
		}
	case fieldLogLevel:
		if !slices.Contains(contract.ProxyLogLevels, value) {
			return "must be one of " + strings.Join(contract.ProxyLogLevels, ", ")
		}
	case fieldDefaultInject:
		if value != contract.InjectEnabled && value != contract.InjectDisabled {
			return "must be enabled or disabled"
		}
	case fieldCPURequest, fieldCPULimit, fieldMemoryRequest, fieldMemoryLimit:
		if value != "" && !isQuantity(value) {
			return "not a Kubernetes quantity (for example 100m, 0.5, 64Mi)"
		}
	}
	return ""
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// quantity follows Kubernetes' resource.Quantity grammar for
	// non-negative values.
	quantity = regexp.MustCompile(`^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$`)
)

func isDNSLabel(s string) bool { return dnsLabel.MatchString(s) }
func isQuantity(s string) bool { return quantity.MatchString(s) }

// Spec field names of a ProxyInjector, also the keys of a kpt ConfigMap
// functionConfig (where resources are flattened: cpuRequest, ...).
const (
	fieldImage                 = "image"
	fieldControlPlaneNamespace = "controlPlaneNamespace"
	fieldSkipInboundPorts      = "skipInboundPorts"
	fieldSkipOutboundPorts     = "skipOutboundPorts"
	fieldOpaquePorts           = "opaquePorts"
	fieldLogLevel              = "logLevel"
	fieldResources             = "resources"
	fieldNativeSidecar         = "nativeSidecar"
	fieldDefaultInject         = "defaultInject"
	fieldCPURequest            = "cpuRequest"
	fieldCPULimit              = "cpuLimit"
	fieldMemoryRequest         = "memoryRequest"
	fieldMemoryLimit           = "memoryLimit"
)

// FromFunctionConfig returns base refined by a functionConfig: a
// conduit.io/v1alpha1 ProxyInjector, or a v1 ConfigMap whose data uses the
// same keys. A nil node returns base. Unknown kinds and fields are errors.
func FromFunctionConfig(base Config, fc *yaml.RNode) (Config, error) {
	if fc == nil || fc.IsNilOrEmpty() {
		return base, nil
	}
	meta, err := fc.GetMeta()
	if err != nil {
		return base, &FieldError{Resource: "functionConfig", Field: "metadata", Value: "", Reason: err.Error()}
	}
	who := meta.Kind + "/" + meta.Name
	switch {
	case meta.APIVersion == ConfigAPIVersion && meta.Kind == ConfigKind:
		for _, f := range fieldNames(fc) {
			if !slices.Contains([]string{"apiVersion", "kind", "metadata", "spec"}, f) {
				return base, &FieldError{Resource: who, Field: f, Value: "", Reason: "unknown field"}
			}
		}
		return fromSpec(base, who, fc.Field("spec"))
	case meta.APIVersion == "v1" && meta.Kind == "ConfigMap":
		return fromConfigMap(base, who, fc.Field("data"))
	default:
		return base, &FieldError{
			Resource: "functionConfig", Field: "kind", Value: meta.APIVersion + "/" + meta.Kind,
			Reason: "unsupported: use " + ConfigAPIVersion + " " + ConfigKind + " or a v1 ConfigMap",
		}
	}
}

func fieldNames(n *yaml.RNode) []string {
	names, _ := n.Fields()
	return names
}

func fromSpec(c Config, who string, spec *yaml.MapNode) (Config, error) {
	if spec == nil || spec.Value.IsNilOrEmpty() {
		return c, nil
	}
	if spec.Value.YNode().Kind != yaml.MappingNode {
		return c, &FieldError{Resource: who, Field: "spec", Value: spec.Value.MustString(), Reason: "must be a mapping"}
	}
	for _, f := range fieldNames(spec.Value) {
		v := spec.Value.Field(f).Value
		path := "spec." + f
		var err error
		switch f {
		case fieldResources:
			err = setResources(&c.Resources, who, path, v)
		case fieldNativeSidecar:
			c.NativeSidecar, err = boolValue(who, path, v)
		case fieldSkipInboundPorts, fieldSkipOutboundPorts, fieldOpaquePorts:
			err = setPorts(&c, f, who, path, portListText(v))
		default:
			if v.YNode().Kind != yaml.ScalarNode {
				return c, &FieldError{Resource: who, Field: path, Value: v.MustString(), Reason: "must be a string"}
			}
			err = setString(&c, f, who, path, v.YNode().Value)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

func fromConfigMap(c Config, who string, data *yaml.MapNode) (Config, error) {
	if data == nil || data.Value.IsNilOrEmpty() {
		return c, nil
	}
	var settings []Setting
	for _, f := range fieldNames(data.Value) {
		settings = append(settings, Setting{Key: f, Field: "data." + f, Value: data.Value.Field(f).Value.YNode().Value})
	}
	return ApplySettings(c, who, settings)
}

// Setting is one configuration value given as text, as in a ConfigMap
// functionConfig or on the command line.
type Setting struct {
	Key   string // a ProxyInjector spec field; resources are flattened (cpuRequest, ...)
	Field string // where the value was written, for messages: data.image, --image
	Value string
}

// Setting keys, the same as the ProxyInjector spec fields.
const (
	KeyImage                 = fieldImage
	KeyControlPlaneNamespace = fieldControlPlaneNamespace
	KeySkipInboundPorts      = fieldSkipInboundPorts
	KeySkipOutboundPorts     = fieldSkipOutboundPorts
	KeyOpaquePorts           = fieldOpaquePorts
	KeyLogLevel              = fieldLogLevel
	KeyNativeSidecar         = fieldNativeSidecar
	KeyDefaultInject         = fieldDefaultInject
	KeyCPURequest            = fieldCPURequest
	KeyCPULimit              = fieldCPULimit
	KeyMemoryRequest         = fieldMemoryRequest
	KeyMemoryLimit           = fieldMemoryLimit
)

// ApplySettings returns c with the settings applied in order. who names
// their source in errors.
func ApplySettings(c Config, who string, settings []Setting) (Config, error) {
	for _, st := range settings {
		var err error
		switch st.Key {
		case fieldNativeSidecar:
			c.NativeSidecar, err = parseBool(who, st.Field, st.Value)
		case fieldSkipInboundPorts, fieldSkipOutboundPorts, fieldOpaquePorts:
			err = setPorts(&c, st.Key, who, st.Field, st.Value)
		case fieldCPURequest, fieldCPULimit, fieldMemoryRequest, fieldMemoryLimit:
			err = setResource(&c.Resources, st.Key, who, st.Field, st.Value)
		default:
			err = setString(&c, st.Key, who, st.Field, st.Value)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

func setString(c *Config, f, who, path, s string) error {
	if reason := invalid(f, s); reason != "" {
		return &FieldError{Resource: who, Field: path, Value: s, Reason: reason}
	}
	switch f {
	case fieldImage:
		c.Image = s
	case fieldControlPlaneNamespace:
		c.ControlPlaneNamespace = s
	case fieldLogLevel:
		c.LogLevel = s
	case fieldDefaultInject:
		c.DefaultInject = s
	default:
		return &FieldError{Resource: who, Field: path, Value: s, Reason: "unknown field"}
	}
	return nil
}

func setPorts(c *Config, f, who, path, s string) error {
	l, err := ports.Parse(s)
	if err != nil {
		return &FieldError{Resource: who, Field: path, Value: s, Reason: err.Error()}
	}
	switch f {
	case fieldSkipInboundPorts:
		c.SkipInboundPorts = l
	case fieldSkipOutboundPorts:
		c.SkipOutboundPorts = l
	case fieldOpaquePorts:
		c.OpaquePorts = l
	}
	return nil
}

func setResources(r *Resources, who, path string, v *yaml.RNode) error {
	if v.IsNilOrEmpty() {
		return nil
	}
	if v.YNode().Kind != yaml.MappingNode {
		return &FieldError{Resource: who, Field: path, Value: v.MustString(), Reason: "must be a mapping"}
	}
	for _, f := range fieldNames(v) {
		if err := setResource(r, f, who, path+"."+f, v.Field(f).Value.YNode().Value); err != nil {
			return err
		}
	}
	return nil
}

func setResource(r *Resources, f, who, path, s string) error {
	var dst *string
	switch f {
	case fieldCPURequest:
		dst = &r.CPURequest
	case fieldCPULimit:
		dst = &r.CPULimit
	case fieldMemoryRequest:
		dst = &r.MemoryRequest
	case fieldMemoryLimit:
		dst = &r.MemoryLimit
	default:
		return &FieldError{Resource: who, Field: path, Value: s, Reason: "unknown field"}
	}
	if reason := invalid(f, s); reason != "" {
		return &FieldError{Resource: who, Field: path, Value: s, Reason: reason}
	}
	*dst = s
	return nil
}

// portListText accepts a port list as a string ("80,4000-4010") or as a
// YAML sequence ([80, "4000-4010"]).
func portListText(v *yaml.RNode) string {
	if v.YNode().Kind != yaml.SequenceNode {
		return v.YNode().Value
	}
	var items []string
	for _, n := range v.YNode().Content {
		items = append(items, n.Value)
	}
	return strings.Join(items, ",")
}

func boolValue(who, path string, v *yaml.RNode) (bool, error) {
	return parseBool(who, path, v.YNode().Value)
}

func parseBool(who, path, s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, &FieldError{Resource: who, Field: path, Value: s, Reason: "must be true or false"}
	}
	return b, nil
}

// proxyVersion is the image's tag, or the injector's version when the
// image is pinned by digest alone.
func proxyVersion(image, fallback string) string {
	ref, err := name.ParseReference(image)
	if err != nil {
		return fallback
	}
	if tag, ok := ref.(name.Tag); ok && tag.TagStr() != "" && strings.Contains(image, ":"+tag.TagStr()) {
		return tag.TagStr()
	}
	if d, ok := ref.(name.Digest); ok {
		if t, err := name.NewTag(strings.TrimSuffix(image, "@"+d.DigestStr())); err == nil && strings.Contains(image, ":"+t.TagStr()+"@") {
			return t.TagStr()
		}
	}
	return fallback
}
