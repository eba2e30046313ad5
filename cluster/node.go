package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Node is the local single-node cluster described by Options.
type Node struct {
	o   Options
	bin string
}

// KubeconfigPath is the admin kubeconfig of a node whose state is in stateDir.
func KubeconfigPath(stateDir string) string { return filepath.Join(stateDir, "admin.kubeconfig") }

func (n *Node) cp() controlPlane {
	return controlPlane{
		stateDir: n.o.StateDir, binDir: n.bin,
		etcdClient: EtcdClientPort, etcdPeer: EtcdPeerPort, apiPort: APIServerPort,
		bindAddress: "0.0.0.0", advertiseAddr: NodeIP,
	}
}

func (n *Node) path(parts ...string) string {
	return filepath.Join(append([]string{n.o.StateDir}, parts...)...)
}
func (n *Node) comp(name string) *component { return &component{name: name, dir: n.o.StateDir} }
func (n *Node) sock() string                { return ContainerdSocket(n.o.StateDir) }

func (n *Node) step(format string, args ...any) {
	fmt.Fprintf(n.o.Progress, "==> "+format+"\n", args...)
}

// nodeComponents in start order.
var nodeComponents = []string{"etcd", "kube-apiserver", "containerd", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// Up brings the local node up and returns its admin kubeconfig path. If the
// node is already up and healthy it does nothing; a half-started node is
// torn down and started again.
func Up(ctx context.Context, opts ...Option) (string, error) {
	o, err := newOptions(opts)
	if err != nil {
		return "", err
	}
	n := &Node{o: o}
	if os.Geteuid() != 0 {
		return "", errors.New("the local node needs root")
	}
	start := time.Now()
	if !o.SkipPackages {
		n.step("checking Debian packages")
		if err := EnsurePackages(ctx, func(s string) { n.step("%s", s) }, DebianPackages...); err != nil {
			return "", err
		}
	}
	n.step("checking Kubernetes %s binaries in %s", KubernetesVersion, BinDir(o.CacheDir))
	if n.bin, err = ensureBinaries(ctx, o); err != nil {
		return "", err
	}
	// One Up or Down at a time on this machine.
	unlock, err := lockPath(ctx, filepath.Join(o.CacheDir, "node.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if n.healthy(ctx) == nil {
		n.step("node already up; kubeconfig %s", KubeconfigPath(o.StateDir))
		if err := n.importImages(ctx, o.Images); err != nil {
			return "", err
		}
		return KubeconfigPath(o.StateDir), nil
	}
	if _, err := os.Stat(o.StateDir); err == nil || n.anyRunning() {
		// Stale state (a failed or killed node) would leak into the new one.
		n.step("a previous node is partly there: tearing it down first")
		if err := down(ctx, o, opts); err != nil {
			return "", err
		}
	}
	if err := n.up(ctx); err != nil {
		return "", err
	}
	n.step("node %s is Ready after %s; kubeconfig %s", NodeName, time.Since(start).Round(100*time.Millisecond), KubeconfigPath(o.StateDir))
	return KubeconfigPath(o.StateDir), nil
}

func (n *Node) anyRunning() bool {
	for _, c := range nodeComponents {
		if n.comp(c).running() {
			return true
		}
	}
	return false
}

// healthy reports whether every component runs and the node is Ready.
func (n *Node) healthy(ctx context.Context) error {
	for _, c := range nodeComponents {
		if !n.comp(c).running() {
			return fmt.Errorf("%s is not running", c)
		}
	}
	return n.nodeReady(ctx)
}

func (n *Node) up(ctx context.Context) error {
	o := n.o
	if err := recordBaseline(ctx, o.StateDir); err != nil {
		return err
	}
	n.step("network: bridge %s with %s, blackhole routes, guard table %s", NodeBridge, NodeIP, guardTable)
	if err := setupNetwork(ctx); err != nil {
		return &ComponentError{Component: "network setup", Err: err}
	}
	n.step("PKI and kubeconfigs")
	cp := n.cp()
	if err := writePKI(cp.pkiDir(), pkiFor([]string{"127.0.0.1", NodeIP, APIServiceIP})); err != nil {
		return err
	}
	local := fmt.Sprintf("https://127.0.0.1:%d", APIServerPort)
	for _, k := range []string{"admin", "controller-manager", "scheduler", "kube-proxy"} {
		if err := writeKubeconfig(n.path("kubeconfigs", k+".kubeconfig"), cp.pkiDir(), k, local); err != nil {
			return err
		}
	}
	// The kubelet reaches the API server at the node address, as pods do.
	if err := writeKubeconfig(n.path("kubeconfigs", "kubelet.kubeconfig"), cp.pkiDir(), "kubelet", fmt.Sprintf("https://%s:%d", NodeIP, APIServerPort)); err != nil {
		return err
	}
	if err := n.writeConfigs(); err != nil {
		return err
	}

	n.step("starting etcd")
	if err := cp.startEtcd(ctx); err != nil {
		return err
	}
	n.step("starting kube-apiserver")
	if err := cp.startAPIServer(ctx); err != nil {
		return err
	}
	n.step("starting containerd")
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	n.step("building and importing the pause image %s", PauseImage)
	pauseTar := filepath.Join(o.CacheDir, "images", "pause.tar")
	if err := BuildGoImage(ctx, o.SourceDir, "./cluster/pause", PauseImage, pauseTar); err != nil {
		return &ComponentError{Component: "pause image", Err: err}
	}
	if err := n.importImages(ctx, append([]string{pauseTar}, o.Images...)); err != nil {
		return err
	}
	n.step("starting kube-controller-manager, kube-scheduler, kubelet, kube-proxy")
	if err := n.startRest(ctx); err != nil {
		return err
	}
	n.step("waiting for node %s to be Ready", NodeName)
	if err := n.comp("kubelet").waitFor(ctx, 90*time.Second, "Ready", n.nodeReady); err != nil {
		return err
	}
	if err := n.comp("kube-controller-manager").waitFor(ctx, 60*time.Second, "serving the default ServiceAccount", func(ctx context.Context) error {
		return n.apiGet(ctx, "/api/v1/namespaces/default/serviceaccounts/default", nil)
	}); err != nil {
		return err
	}
	// Write the user-facing kubeconfig last: its presence means "up".
	return copyFile(n.path("kubeconfigs", "admin.kubeconfig"), KubeconfigPath(o.StateDir))
}

func (n *Node) writeConfigs() error {
	pki := n.cp().pki
	files := map[string]string{
		n.path("containerd", "config.toml"): fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # Root here lacks CAP_SYS_RESOURCE; without this every sandbox fails.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's container state stays in the node's folder.
        Root = %[7]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
`, n.path("containerd", "root"), n.path("containerd", "state"), n.sock(), n.path("containerd", "opt"), PauseImage, n.path("cni", "net.d"), n.path("runc")),

		n.path("cni", "net.d", "10-conduit.conflist"): fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "conduit",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": %q}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": %q
    }
  }]
}
`, PodBridge, NodePodCIDR, n.path("cni", "ipam")),

		n.path("kubelet", "config.yaml"): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[3]q}
authorization: {mode: Webhook}
tlsCertFile: %[4]q
tlsPrivateKeyFile: %[5]q
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://%[6]s
podCIDR: %[7]s
clusterDNS: [%[8]s]
clusterDomain: cluster.local
resolvConf: %[9]q
podLogsDir: %[10]q
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%%", "imagefs.available": "1%%", "nodefs.inodesFree": "1%%"}
serializeImagePulls: false
`, NodeIP, KubeletPort, pki("ca.crt"), pki("kubelet-serving.crt"), pki("kubelet-serving.key"), n.sock(),
			NodePodCIDR, ClusterDNSIP, n.path("kubelet", "resolv.conf"), n.path("pod-logs")),

		// Pods get only the cluster resolver: nothing points them outside.
		n.path("kubelet", "resolv.conf"): "nameserver " + ClusterDNSIP + "\n",

		n.path("kube-proxy", "config.yaml"): fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["%s/32"]
# Zero leaves the host's conntrack table size and timeouts as they are.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, n.path("kubeconfigs", "kube-proxy.kubeconfig"), PodRange, NodeName, NodeIP),
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) startContainerd(ctx context.Context) error {
	c := n.comp("containerd")
	// No registry is reachable and none may be tried: every pull goes to a
	// closed loopback port and fails at once (no DNS query, no packet out).
	noPull := "http://" + noPullProxy
	if err := c.start([]string{"/usr/bin/containerd", "--config", n.path("containerd", "config.toml")},
		"HTTP_PROXY="+noPull, "HTTPS_PROXY="+noPull, "http_proxy="+noPull, "https_proxy="+noPull, "NO_PROXY=", "no_proxy="); err != nil {
		return err
	}
	return c.waitFor(ctx, 30*time.Second, "serving", func(ctx context.Context) error {
		_, err := run(ctx, "ctr", "--address", n.sock(), "version")
		return err
	})
}

func (n *Node) importImages(ctx context.Context, tars []string) error {
	for _, t := range tars {
		n.step("importing image %s", t)
		if _, err := run(ctx, "ctr", "--address", n.sock(), "-n", "k8s.io", "images", "import", t); err != nil {
			return &ComponentError{Component: "image import", LogPath: n.comp("containerd").logPath(), Err: err}
		}
	}
	return nil
}

// ImportImages imports docker-archive tarballs into a running node.
func ImportImages(ctx context.Context, tars []string, opts ...Option) error {
	o, err := newOptions(opts)
	if err != nil {
		return err
	}
	n := &Node{o: o}
	return n.importImages(ctx, tars)
}

func (n *Node) startRest(ctx context.Context) error {
	pki := n.cp().pki
	kc := func(name string) string { return n.path("kubeconfigs", name+".kubeconfig") }
	specs := []struct {
		name string
		argv []string
		url  string
	}{
		{"kube-controller-manager", []string{
			"--kubeconfig=" + kc("controller-manager"),
			"--authentication-kubeconfig=" + kc("controller-manager"),
			"--authorization-kubeconfig=" + kc("controller-manager"),
			"--bind-address=127.0.0.1",
			"--leader-elect=false",
			"--service-account-private-key-file=" + pki("sa.key"),
			"--root-ca-file=" + pki("ca.crt"),
			"--use-service-account-credentials=true",
			"--service-cluster-ip-range=" + ServiceRange,
			"--cluster-signing-cert-file=" + pki("ca.crt"),
			"--cluster-signing-key-file=" + pki("ca.key"),
		}, "https://127.0.0.1:10257/healthz"},
		{"kube-scheduler", []string{
			"--kubeconfig=" + kc("scheduler"),
			"--authentication-kubeconfig=" + kc("scheduler"),
			"--authorization-kubeconfig=" + kc("scheduler"),
			"--bind-address=127.0.0.1",
			"--leader-elect=false",
		}, "https://127.0.0.1:10259/healthz"},
		{"kubelet", []string{
			"--config=" + n.path("kubelet", "config.yaml"),
			"--kubeconfig=" + kc("kubelet"),
			"--root-dir=" + n.path("kubelet", "root"),
			"--hostname-override=" + NodeName,
			"--node-ip=" + NodeIP,
		}, "http://127.0.0.1:10248/healthz"},
		{"kube-proxy", []string{
			"--config=" + n.path("kube-proxy", "config.yaml"),
		}, "http://127.0.0.1:10256/healthz"},
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		// Loopback health endpoints with self-signed serving certificates.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	for _, s := range specs {
		if err := n.comp(s.name).start(append([]string{filepath.Join(n.bin, s.name)}, s.argv...)); err != nil {
			return err
		}
	}
	for _, s := range specs {
		c, u := n.comp(s.name), s.url
		if err := c.waitFor(ctx, 60*time.Second, "healthy", func(ctx context.Context) error {
			return httpOK(ctx, hc, u)
		}); err != nil {
			return err
		}
	}
	return nil
}

// apiGet reads an API path as admin into out (if not nil).
func (n *Node) apiGet(ctx context.Context, path string, out any) error {
	return n.apiDo(ctx, http.MethodGet, path, out)
}

func (n *Node) apiDo(ctx context.Context, method, path string, out any) error {
	hc, err := n.cp().adminHTTPClient()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("https://127.0.0.1:%d%s", APIServerPort, path), nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %.300s", method, path, resp.Status, body)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

func (n *Node) nodeReady(ctx context.Context) error {
	var node struct {
		Status struct {
			Conditions []struct{ Type, Status, Message string }
		}
	}
	if err := n.apiGet(ctx, "/api/v1/nodes/"+NodeName, &node); err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" {
			if c.Status == "True" {
				return nil
			}
			return fmt.Errorf("node Ready=%s: %s", c.Status, c.Message)
		}
	}
	return errors.New("node has no Ready condition yet")
}

// deletePods deletes every pod and waits until the kubelet has stopped them
// (so CNI DEL runs for each sandbox).
func (n *Node) deletePods(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type podList struct {
		Items []struct {
			Metadata struct{ Name, Namespace string }
		}
	}
	var pods podList
	if err := n.apiGet(ctx, "/api/v1/pods", &pods); err != nil {
		return err
	}
	for _, p := range pods.Items {
		path := fmt.Sprintf("/api/v1/namespaces/%s/pods/%s?gracePeriodSeconds=2", url.PathEscape(p.Metadata.Namespace), url.PathEscape(p.Metadata.Name))
		_ = n.apiDo(ctx, http.MethodDelete, path, nil)
	}
	for {
		if err := n.apiGet(ctx, "/api/v1/pods", &pods); err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			names := make([]string, 0, len(pods.Items))
			for _, p := range pods.Items {
				names = append(names, p.Metadata.Namespace+"/"+p.Metadata.Name)
			}
			return fmt.Errorf("pods still present: %s", strings.Join(names, ", "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// noPullProxy is the proxy address containerd is given for image pulls:
// port 9 (discard) on loopback, where nothing listens.
const noPullProxy = "127.0.0.1:9"

// ContainerdSocket is the containerd socket of a node whose state is in stateDir.
func ContainerdSocket(stateDir string) string {
	return filepath.Join(stateDir, "containerd", "containerd.sock")
}
