// Package contract holds every name that crosses a component boundary in
// Conduit: annotation and label keys, ports, container names, the proxy's
// uid, environment variable names, conduit-init flag names and metric names.
//
// The injector writes these names, the proxy and conduit-init read them, the
// generator scrapes and grants them, and meshstat queries them. No other
// package may define them.
package contract

import "strings"

// Containers the injector adds to a pod.
const (
	ProxyContainerName = "conduit-proxy"
	InitContainerName  = "conduit-init"
)

// Ports of the proxy.
const (
	// ProxyInboundPort receives inbound TCP redirected by conduit-init.
	ProxyInboundPort = 4143
	// ProxyOutboundPort receives outbound TCP redirected by conduit-init; it
	// listens on loopback only.
	ProxyOutboundPort = 4140
	// ProxyTapPort serves the live tap stream.
	ProxyTapPort = 4190
	// ProxyAdminPort serves /metrics, /live and /ready.
	ProxyAdminPort = 4191

	// ProxyOutboundListenHost and ProxyOutboundListenHostIPv6 are where
	// the outbound listener binds: the loopback addresses conduit-init's
	// redirect sends outbound IPv4 and IPv6 TCP to.
	ProxyOutboundListenHost     = "127.0.0.1"
	ProxyOutboundListenHostIPv6 = "::1"
	// ProxyInboundListenHost is where the inbound listener binds: every
	// address of both families (the proxy's listener on the unspecified
	// address is dual-stack), since the redirect sends inbound TCP to an
	// address of the interface it arrived on.
	ProxyInboundListenHost = "0.0.0.0"

	// Container port names the injector gives the proxy's ports. Kubernetes
	// limits port names to 15 characters.
	ProxyAdminPortName   = "conduit-admin"
	ProxyTapPortName     = "conduit-tap"
	ProxyInboundPortName = "conduit-proxy"
)

// Admin endpoints served on ProxyAdminPort.
const (
	AdminMetricsPath = "/metrics"
	AdminLivePath    = "/live"
	AdminReadyPath   = "/ready"
)

// ProxyErrorHeader is the response header in which the proxy states why it
// answered a request itself with 502, 503 or 504 (e.g. "connection refused").
const ProxyErrorHeader = "conduit-error"

// ProxyUID is the uid the proxy runs as. conduit-init exempts traffic from
// this uid from the outbound redirect, so the proxy's own connections leave
// the pod instead of looping back into it.
const ProxyUID = 2102

// The inject annotation (or label), on a workload, its pod template or its
// Namespace object.
const (
	AnnotationInject = "conduit.io/inject"
	InjectEnabled    = "enabled"
	InjectDisabled   = "disabled"
)

// Configuration annotations read by the injector from a workload or its pod
// template.
const (
	AnnotationSkipInboundPorts  = "config.conduit.io/skip-inbound-ports"
	AnnotationSkipOutboundPorts = "config.conduit.io/skip-outbound-ports"
	AnnotationOpaquePorts       = "config.conduit.io/opaque-ports"
	AnnotationProxyLogLevel     = "config.conduit.io/proxy-log-level"
	AnnotationProxyCPURequest   = "config.conduit.io/proxy-cpu-request"
	AnnotationProxyCPULimit     = "config.conduit.io/proxy-cpu-limit"
	AnnotationProxyMemRequest   = "config.conduit.io/proxy-memory-request"
	AnnotationProxyMemLimit     = "config.conduit.io/proxy-memory-limit"
)

// Proxy timeouts and the inbound loopback opt-in: each an annotation the
// injector reads from a workload or its pod template, the environment
// variable it sets on the proxy container from it, and the proxy's flag
// default when that variable is set. Timeouts are Go durations ("30s").
const (
	// AnnotationProxyHeadReadTimeout bounds reading a request head, from
	// its first byte to its blank line.
	AnnotationProxyHeadReadTimeout = "config.conduit.io/proxy-head-read-timeout"
	// AnnotationProxyKeepAliveTimeout closes a client connection idle
	// between requests (HTTP/1) or with no open stream (HTTP/2).
	AnnotationProxyKeepAliveTimeout = "config.conduit.io/proxy-keepalive-timeout"
	// AnnotationProxyOpaqueIdleTimeout closes an opaque TCP connection on
	// which neither side sent a byte for that long.
	AnnotationProxyOpaqueIdleTimeout = "config.conduit.io/proxy-opaque-idle-timeout"
	// AnnotationProxyStreamIdleTimeout ends a request whose upstream sent
	// nothing for that long (no response head, or a body that stalls).
	AnnotationProxyStreamIdleTimeout = "config.conduit.io/proxy-stream-idle-timeout"
	// AnnotationProxyDrainTimeout is how long in-flight requests may take
	// after SIGTERM before every connection is closed.
	AnnotationProxyDrainTimeout = "config.conduit.io/proxy-drain-timeout"
	// AnnotationInboundLoopbackPorts lists the application ports (a port
	// list) whose inbound traffic the proxy sends to 127.0.0.1 or ::1, for
	// applications that listen only on loopback. Every other port goes to
	// the pod's own address, so a port bound to loopback stays private.
	AnnotationInboundLoopbackPorts = "config.conduit.io/inbound-loopback-ports"

	EnvProxyHeadReadTimeout      = "CONDUIT_PROXY_HEAD_READ_TIMEOUT"
	EnvProxyKeepAliveTimeout     = "CONDUIT_PROXY_KEEPALIVE_TIMEOUT"
	EnvProxyOpaqueIdleTimeout    = "CONDUIT_PROXY_OPAQUE_IDLE_TIMEOUT"
	EnvProxyStreamIdleTimeout    = "CONDUIT_PROXY_STREAM_IDLE_TIMEOUT"
	EnvProxyDrainTimeout         = "CONDUIT_PROXY_DRAIN_TIMEOUT"
	EnvProxyInboundLoopbackPorts = "CONDUIT_PROXY_INBOUND_LOOPBACK_PORTS"
)

// DefaultOpaquePorts are ports whose traffic the proxy forwards as opaque TCP
// without protocol detection unless configured otherwise: SMTP, MySQL,
// Galera, PostgreSQL, Redis, Elasticsearch and Memcached.
const DefaultOpaquePorts = "25,587,3306,4444,5432,6379,9300,11211"

// DefaultControlPlaneNamespace is where the control plane is installed.
const DefaultControlPlaneNamespace = "conduit"

// Metadata the injector adds to every pod it injects.
const (
	// AnnotationCreatedBy holds "conduit/inject <version>".
	AnnotationCreatedBy    = "conduit.io/created-by"
	CreatedByPrefix        = "conduit/inject "
	AnnotationProxyVersion = "conduit.io/proxy-version"
	LabelControlPlaneNS    = "conduit.io/control-plane-ns"
	// LabelWorkloadPrefix + lower-case kind, e.g. conduit.io/proxy-deployment,
	// names the workload that owns the pod.
	LabelWorkloadPrefix = "conduit.io/proxy-"
)

// WorkloadKinds are the lower-case kinds the injector injects and the proxy
// reports in its metric labels.
var WorkloadKinds = []string{
	"deployment", "statefulset", "daemonset", "replicaset",
	"replicationcontroller", "job", "cronjob", "pod",
}

// WorkloadLabel is the pod label naming its workload: for kind "Deployment"
// it is conduit.io/proxy-deployment.
func WorkloadLabel(kind string) string {
	return LabelWorkloadPrefix + strings.ToLower(kind)
}

// Environment variables the injector sets on the proxy container.
const (
	EnvPodName           = "CONDUIT_POD_NAME"
	EnvPodNamespace      = "CONDUIT_POD_NAMESPACE"
	EnvPodServiceAccount = "CONDUIT_POD_SERVICE_ACCOUNT"
	EnvWorkloadKind      = "CONDUIT_WORKLOAD_KIND" // lower-case, from WorkloadKinds
	EnvWorkloadName      = "CONDUIT_WORKLOAD_NAME"
	EnvControlPlaneNS    = "CONDUIT_CONTROL_PLANE_NS"
	EnvProxyLogLevel     = "CONDUIT_PROXY_LOG_LEVEL"
	EnvProxyInboundPorts = "CONDUIT_PROXY_INBOUND_PORTS" // the app's container ports, a port list
	EnvProxyOpaquePorts  = "CONDUIT_PROXY_OPAQUE_PORTS"  // a port list
)

// Flags of conduit-init, written by the injector into the init container's
// args. Port lists use the syntax of package ports.
const (
	InitFlagInboundProxyPort  = "inbound-proxy-port"
	InitFlagOutboundProxyPort = "outbound-proxy-port"
	InitFlagProxyUID          = "proxy-uid"
	InitFlagSkipInboundPorts  = "skip-inbound-ports"
	InitFlagSkipOutboundPorts = "skip-outbound-ports"
)

// Proxy metric names, exposed on AdminMetricsPath.
const (
	MetricRequestTotal       = "request_total"
	MetricResponseTotal      = "response_total"
	MetricResponseLatencyMs  = "response_latency_ms"
	MetricTCPOpenTotal       = "tcp_open_total"
	MetricTCPCloseTotal      = "tcp_close_total"
	MetricTCPOpenConnections = "tcp_open_connections"
	MetricTCPReadBytesTotal  = "tcp_read_bytes_total"
	MetricTCPWriteBytesTotal = "tcp_write_bytes_total"
	// MetricTCPShedTotal counts inbound connections closed at accept
	// because the proxy is near its file descriptor limit.
	MetricTCPShedTotal = "tcp_shed_total"
	// MetricHTTP2AbuseTotal counts HTTP/2 connections closed with GOAWAY
	// for abuse, by LabelReason (stream or reset rate, CONTINUATION
	// flood, oversized header block).
	MetricHTTP2AbuseTotal = "http2_abuse_total"
)

// ResponseLatencyBucketsMs are the buckets of MetricResponseLatencyMs.
var ResponseLatencyBucketsMs = []float64{
	1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000,
}

// Proxy metric label names. The workload label is the lower-case kind itself
// (deployment="web"); see WorkloadKinds.
const (
	LabelDirection      = "direction"
	LabelAuthority      = "authority"
	LabelStatusCode     = "status_code"
	LabelClassification = "classification"
	LabelGRPCStatusCode = "grpc_status_code"
	LabelTLS            = "tls"
	LabelNamespace      = "namespace"
	LabelPod            = "pod"
	LabelReason         = "reason"
)

// Values of LabelDirection and LabelClassification.
const (
	DirectionInbound      = "inbound"
	DirectionOutbound     = "outbound"
	ClassificationSuccess = "success"
	ClassificationFailure = "failure"
)

// Paths of the two binaries inside the proxy image. The image's entrypoint
// is ProxyBinaryPath; the injector runs InitBinaryPath as the init step.
const (
	ProxyBinaryPath = "/conduit-proxy"
	InitBinaryPath  = "/conduit-init"
)

// ProxyLogLevels are the values the proxy accepts for its log level.
var ProxyLogLevels = []string{"debug", "info", "warn", "error"}

// DefaultProxyLogLevel is the proxy's log level unless configured.
const DefaultProxyLogLevel = "info"

// The bundled Prometheus: a Service in the control-plane namespace that
// meshstat reaches through the API server's services/proxy subresource.
const (
	PrometheusServiceName = "conduit-prometheus"
	PrometheusPort        = 9090
	PrometheusPortName    = "http"
)

// conduit-discovery runs beside Prometheus and serves the meshed pods'
// admin ports in Prometheus's HTTP service-discovery format on loopback, so
// any Prometheus build (also one without Kubernetes discovery) finds them.
const (
	DiscoveryBinaryPath = "/conduit-discovery"
	DiscoveryPort       = 9091
	DiscoveryPath       = "/targets"
)

// The injector's functionConfig kind, written by the generator and read by
// conduit-inject, and the executable a kustomize exec function names.
const (
	ProxyInjectorAPIVersion = "conduit.io/v1alpha1"
	ProxyInjectorKind       = "ProxyInjector"
	InjectorExecutable      = "conduit-inject"
)

// InjectBinaryPath is conduit-inject inside the proxy image, for example to
// copy it into Argo CD's repo-server.
const InjectBinaryPath = "/conduit-inject"

// DefaultProxyImageRepo is the repository of the proxy image; the injector's
// default image is this repository tagged with the release version.
const DefaultProxyImageRepo = "ghcr.io/conduitmesh/conduit-proxy"

// meshstat's read-only ClusterRole and the example ClusterRoleBinding to it,
// which the generator renders into the control plane's base and meshstat
// points a user to when the API server forbids a request.
const (
	MeshstatRoleName    = "conduit-meshstat"
	MeshstatBindingName = "conduit-meshstat-viewers"
	// BaseDir is the control plane's kustomize base in the repository,
	// rendered there by the generator.
	BaseDir = "base"
	// MeshstatBindingFile is the binding's file in BaseDir (the generator
	// names each file <lower-case kind>-<name>.yaml).
	MeshstatBindingFile = "clusterrolebinding-" + MeshstatBindingName + ".yaml"
	// AnnotationDescription explains a rendered object to its reader.
	AnnotationDescription = "conduit.io/description"
)
