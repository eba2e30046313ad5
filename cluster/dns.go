package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/conduitmesh/conduit/image"
)

// CoreDNS gives the local node cluster DNS, as kubeadm's kube-dns does, so
// pods reach Services by name. Like the Kubernetes binaries it is built from
// the Go module proxy once per version and cached.
const (
	CoreDNSVersion = "v1.12.0"
	CoreDNSImage   = "conduit.local/coredns:" + CoreDNSVersion
	coreDNSModule  = "github.com/coredns/coredns"
)

// coreDNSManifests run CoreDNS as the kube-dns Service at ClusterDNSIP. It
// listens on 5353 so it needs no capability; the Service maps 53 to it.
// With no upstream resolver reachable, only cluster names are answered.
var coreDNSManifests = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: conduit-local:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: conduit-local:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: conduit-local:coredns
subjects:
- kind: ServiceAccount
  name: coredns
  namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:5353 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loop
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector:
    matchLabels: {k8s-app: kube-dns}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: coredns
        image: ` + CoreDNSImage + `
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 5353, protocol: UDP}
        - {name: dns-tcp, containerPort: 5353, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /health, port: 8080}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
      volumes:
      - name: config
        configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: ` + ClusterDNSIP + `
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 5353, protocol: TCP}
`

// EnsureDNS starts CoreDNS on the node unless a kube-dns Service exists,
// and reports whether it started it. It builds and imports the image first.
func EnsureDNS(ctx context.Context, kubeconfig string, opts ...Option) (added bool, err error) {
	o, err := newOptions(opts)
	if err != nil {
		return false, err
	}
	if exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "get", "service", "-n", "kube-system", "kube-dns").Run() == nil {
		return false, nil
	}
	tar, err := coreDNSImage(ctx, o)
	if err != nil {
		return false, &ComponentError{Component: "coredns build", Err: err}
	}
	if err := ImportImages(ctx, []string{tar}, opts...); err != nil {
		return false, err
	}
	fmt.Fprintf(o.Progress, "==> starting CoreDNS %s as kube-dns (%s)\n", CoreDNSVersion, ClusterDNSIP)
	if err := kubectlStdin(ctx, kubeconfig, coreDNSManifests, "apply", "--server-side", "-f", "-"); err != nil {
		return false, &ComponentError{Component: "coredns", Err: err}
	}
	if err := kubectlStdin(ctx, kubeconfig, "", "rollout", "status", "-n", "kube-system", "deployment/coredns", "--timeout=120s"); err != nil {
		return true, &ComponentError{Component: "coredns", Err: err}
	}
	return true, nil
}

// RemoveDNS deletes what EnsureDNS applied.
func RemoveDNS(ctx context.Context, kubeconfig string) error {
	return kubectlStdin(ctx, kubeconfig, coreDNSManifests, "delete", "--ignore-not-found", "-f", "-")
}

func kubectlStdin(ctx context.Context, kubeconfig, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// coreDNSImage builds CoreDNS (once per version) and packs it as a
// docker archive in the cache; it returns the archive's path.
func coreDNSImage(ctx context.Context, o Options) (string, error) {
	dir := filepath.Join(o.CacheDir, "coredns-"+CoreDNSVersion)
	tar := filepath.Join(dir, "coredns.tar")
	if _, err := os.Stat(tar); err == nil {
		return tar, nil
	}
	bin := filepath.Join(dir, "coredns")
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(o.Progress, "==> building CoreDNS %s from the Go module proxy (once; about 2 minutes)\n", CoreDNSVersion)
		cmd := exec.CommandContext(ctx, "go", "install", "-trimpath", "-ldflags=-s -w", coreDNSModule+"@"+CoreDNSVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go install %s@%s: %v\n%s", coreDNSModule, CoreDNSVersion, err, out)
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	img, err := image.New(v1.Platform{OS: "linux", Architecture: "amd64"},
		image.WithFiles(image.File{Path: "/coredns", Mode: 0o755, Data: data}),
		image.WithEntrypoint("/coredns"), image.WithUser("65532"))
	if err != nil {
		return "", err
	}
	tag, err := name.NewTag(CoreDNSImage)
	if err != nil {
		return "", err
	}
	return tar, image.WriteDockerArchive(tar, tag, img)
}
