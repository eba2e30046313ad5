// Package generator renders Conduit's control plane from a typed Config into
// Kubernetes manifests: one file per object plus a kustomization.yaml, with
// the same bytes for the same config (no random data, timestamps, keys or
// namespaces baked into container args).
package generator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/pkg/version"
)

// Config is everything the rendered control plane depends on.
type Config struct {
	// Namespace is the control plane's namespace in base/. Overlays may move
	// it with kustomize's namespace field.
	Namespace  string     `yaml:"namespace"`
	Proxy      Proxy      `yaml:"proxy"`
	Prometheus Prometheus `yaml:"prometheus"`
	Meshstat   Meshstat   `yaml:"meshstat"`
}

// Proxy is what the ProxyInjector functionConfig tells the injector.
type Proxy struct {
	// Image is the proxy image, pinned by digest.
	Image             string    `yaml:"image"`
	LogLevel          string    `yaml:"logLevel"`
	SkipInboundPorts  string    `yaml:"skipInboundPorts,omitempty"`
	SkipOutboundPorts string    `yaml:"skipOutboundPorts,omitempty"`
	OpaquePorts       string    `yaml:"opaquePorts"`
	NativeSidecar     bool      `yaml:"nativeSidecar"`
	Resources         Resources `yaml:"resources"`
}

// Prometheus is the bundled Prometheus.
type Prometheus struct {
	// Image is the Prometheus image, pinned by digest.
	Image string `yaml:"image"`
	// ScrapeInterval is how often the proxies are scraped (a Prometheus
	// duration such as 10s).
	ScrapeInterval string `yaml:"scrapeInterval"`
	// RetentionTime and RetentionSize bound the local storage.
	RetentionTime string `yaml:"retentionTime"`
	RetentionSize string `yaml:"retentionSize"`
	// StorageLimit is the size limit of the data volume (a quantity).
	StorageLimit string    `yaml:"storageLimit"`
	Resources    Resources `yaml:"resources"`
}

// Meshstat is the read-only access for the meshstat CLI.
type Meshstat struct {
	// ViewersGroup is the group the example ClusterRoleBinding grants the
	// meshstat ClusterRole to.
	ViewersGroup string `yaml:"viewersGroup"`
}

// Resources are requests and limits as Kubernetes quantities.
type Resources struct {
	CPURequest    string `yaml:"cpuRequest,omitempty"`
	CPULimit      string `yaml:"cpuLimit,omitempty"`
	MemoryRequest string `yaml:"memoryRequest,omitempty"`
	MemoryLimit   string `yaml:"memoryLimit,omitempty"`
}

// Defaults returns the configuration used for what a config file leaves
// out. Its images are tags, not digests: a usable config pins them (see
// Pin and Resolve).
func Defaults() Config {
	return Config{
		Namespace: contract.DefaultControlPlaneNamespace,
		Proxy: Proxy{
			Image:         contract.DefaultProxyImageRepo + ":" + version.Version,
			LogLevel:      contract.DefaultProxyLogLevel,
			OpaquePorts:   contract.DefaultOpaquePorts,
			NativeSidecar: true,
			Resources:     Resources{CPURequest: "10m", CPULimit: "1", MemoryRequest: "20Mi", MemoryLimit: "250Mi"},
		},
		Prometheus: Prometheus{
			Image:          DefaultPrometheusImageRepo + ":" + "latest",
			ScrapeInterval: "10s",
			RetentionTime:  "6h",
			RetentionSize:  "1GB",
			StorageLimit:   "2Gi",
			Resources:      Resources{CPURequest: "100m", CPULimit: "1", MemoryRequest: "256Mi", MemoryLimit: "1Gi"},
		},
		Meshstat: Meshstat{ViewersGroup: "conduit-meshstat-viewers"},
	}
}

// DefaultPrometheusImageRepo is the repository of the Prometheus image
// packed from Debian's prometheus package (make prometheus-image).
const DefaultPrometheusImageRepo = "ghcr.io/conduitmesh/prometheus"

// FieldError is an invalid setting: it names the field as spelled in the
// config file, and the value.
type FieldError struct {
	Field  string // e.g. prometheus.scrapeInterval
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("field %s: value %q: %s", e.Field, e.Value, e.Reason)
}

var (
	dnsLabel  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	quantity  = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$`)
	promDur   = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	promSize  = regexp.MustCompile(`^[0-9]+(B|KB|MB|GB|TB|PB|EB)$`)
	groupName = regexp.MustCompile(`^[^\s/]+$`)
)

// Validate reports every invalid setting, each naming its field and value.
// Images must be pinned by digest.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, value, reason string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: reason})
	}
	if !dnsLabel.MatchString(c.Namespace) {
		bad("namespace", c.Namespace, "not a valid namespace name (lower-case RFC 1123 label, at most 63 characters)")
	}
	for _, img := range []struct{ field, value string }{
		{"proxy.image", c.Proxy.Image},
		{"prometheus.image", c.Prometheus.Image},
	} {
		if reason := pinned(img.value); reason != "" {
			bad(img.field, img.value, reason)
		}
	}
	if !slices.Contains(contract.ProxyLogLevels, c.Proxy.LogLevel) {
		bad("proxy.logLevel", c.Proxy.LogLevel, "must be one of "+strings.Join(contract.ProxyLogLevels, ", "))
	}
	for _, p := range []struct{ field, value string }{
		{"proxy.skipInboundPorts", c.Proxy.SkipInboundPorts},
		{"proxy.skipOutboundPorts", c.Proxy.SkipOutboundPorts},
		{"proxy.opaquePorts", c.Proxy.OpaquePorts},
	} {
		if p.value == "" {
			continue
		}
		if _, err := ports.Parse(p.value); err != nil {
			bad(p.field, p.value, "not a port list (for example 80,4000-4010): "+err.Error())
		}
	}
	checkResources := func(prefix string, r Resources) {
		for _, q := range []struct{ field, value string }{
			{"cpuRequest", r.CPURequest}, {"cpuLimit", r.CPULimit},
			{"memoryRequest", r.MemoryRequest}, {"memoryLimit", r.MemoryLimit},
		} {
			if q.value != "" && !quantity.MatchString(q.value) {
				bad(prefix+".resources."+q.field, q.value, "not a Kubernetes quantity (for example 100m, 0.5, 64Mi)")
			}
		}
	}
	checkResources("proxy", c.Proxy.Resources)
	checkResources("prometheus", c.Prometheus.Resources)
	if !promDur.MatchString(c.Prometheus.ScrapeInterval) {
		bad("prometheus.scrapeInterval", c.Prometheus.ScrapeInterval, "not a Prometheus duration (for example 10s, 1m)")
	}
	if !promDur.MatchString(c.Prometheus.RetentionTime) {
		bad("prometheus.retentionTime", c.Prometheus.RetentionTime, "not a Prometheus duration (for example 6h, 2d); retention must be bounded")
	}
	if !promSize.MatchString(c.Prometheus.RetentionSize) {
		bad("prometheus.retentionSize", c.Prometheus.RetentionSize, "not a Prometheus size (for example 512MB, 1GB); retention must be bounded")
	}
	if !quantity.MatchString(c.Prometheus.StorageLimit) {
		bad("prometheus.storageLimit", c.Prometheus.StorageLimit, "not a Kubernetes quantity (for example 2Gi)")
	}
	if !groupName.MatchString(c.Meshstat.ViewersGroup) {
		bad("meshstat.viewersGroup", c.Meshstat.ViewersGroup, "must be a non-empty group name without spaces or slashes")
	}
	return errors.Join(errs...)
}

// pinned says what is wrong with an image reference that must carry a
// digest, or "" when it is fine.
func pinned(ref string) string {
	if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
		return "not an image reference: " + err.Error()
	}
	if _, err := name.NewDigest(stripTag(ref), name.StrictValidation); err != nil {
		return "not pinned by digest (want repo[:tag]@sha256:...; use --resolve or --proxy-layout to pin it)"
	}
	return ""
}

// stripTag turns repo:tag@sha256:x into repo@sha256:x, which
// go-containerregistry's digest parser wants.
func stripTag(ref string) string {
	repo, digest, ok := strings.Cut(ref, "@")
	if !ok {
		return ref
	}
	return repoOf(repo) + "@" + digest
}

// repoOf strips a tag (but not a registry port) from repo[:tag].
func repoOf(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon]
	}
	return ref
}

// Load reads a config file over Defaults. Unknown fields are errors, so a
// misspelt setting is not silently ignored. It does not validate.
func Load(file string) (Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Config{}, err
	}
	return Parse(file, data)
}

// Parse reads config YAML over Defaults; source names it in errors.
func Parse(source string, data []byte) (Config, error) {
	c := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: %w", source, err)
	}
	return c, nil
}

// Marshal renders c as a config file.
func (c Config) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Conduit control-plane config: `make manifests` renders base/ from it.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
