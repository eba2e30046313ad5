//go:build e2e

package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/cluster"
	"github.com/conduitmesh/conduit/pkg/contract"
)

const (
	meshNS       = "e2e-mesh"
	testappImage = "conduit.local/testapp:e2e"
	requests     = 5
)

// meshManifest is a server (HTTP on 8080 through the proxy, 9090 skipped
// inbound) and a client to exec into, both marked for injection.
const meshManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ` + meshNS + `
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        ` + contract.AnnotationInject + `: ` + contract.InjectEnabled + `
        ` + contract.AnnotationSkipInboundPorts + `: "9090"
    spec:
      containers:
      - name: app
        image: ` + testappImage + `
        imagePullPolicy: Never
        args: [serve, --listen, ":8080", --listen, ":9090"]
        ports:
        - {name: http, containerPort: 8080}
        - {name: direct, containerPort: 9090}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: ` + meshNS + `
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: client
  namespace: ` + meshNS + `
spec:
  replicas: 1
  selector:
    matchLabels: {app: client}
  template:
    metadata:
      labels: {app: client}
      annotations:
        ` + contract.AnnotationInject + `: ` + contract.InjectEnabled + `
    spec:
      containers:
      - name: app
        image: ` + testappImage + `
        imagePullPolicy: Never
        args: [sleep]
`

// TestInjectedMesh runs a Deployment rendered through conduit-inject on the
// local node and checks the mesh end to end: 2/2 Ready with the proxy as a
// native sidecar, a client calling the server through both proxies, the
// proxies' metrics (read through the API server's pod proxy) counting the
// requests outbound on the client and inbound on the server, a skip-inbound
// port not counted inbound, and the pod's nftables table equal to what
// conduit-init --dry-run prints for the same arguments.
func TestInjectedMesh(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tmp := t.TempDir()

	proxyTar := filepath.Join(repoRoot, "dist", "conduit-proxy.tar")
	proxyImage, err := archiveTag(proxyTar)
	if err != nil {
		t.Fatalf("the proxy image (make image): %v", err)
	}
	injector := filepath.Join(repoRoot, "bin", "conduit-inject")
	if _, err := os.Stat(injector); err != nil {
		t.Fatalf("the injector (make build): %v", err)
	}
	initBin := filepath.Join(tmp, "conduit-init")
	goBuild(t, initBin, "./proxy/cmd/conduit-init")
	appTar := filepath.Join(tmp, "testapp.tar")
	if err := cluster.BuildGoImage(ctx, repoRoot, "./e2e/testapp", testappImage, appTar); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	kc, err := cluster.Up(ctx, cluster.WithProgress(logWriter{t}), cluster.WithImages(proxyTar, appTar))
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}
	t.Logf("node up (with image import) in %s", time.Since(start).Round(100*time.Millisecond))
	// Every image the pods use must be on the node already: nothing may be pulled.
	sock := cluster.ContainerdSocket(cluster.DefaultStateDir)
	images := runOK(t, "ctr", "--address", sock, "-n", "k8s.io", "images", "ls", "-q")
	for _, img := range []string{proxyImage, testappImage} {
		if !strings.Contains(images, img) {
			t.Fatalf("image %s is not on the node:\n%s", img, images)
		}
	}

	// Render through the injector.
	inject := exec.Command(injector, "--image", proxyImage, "--native-sidecar=true", "-")
	inject.Stdin = strings.NewReader(meshManifest)
	rendered, err := inject.Output()
	if err != nil {
		t.Fatalf("conduit-inject: %v", describeExit(err))
	}
	os.WriteFile(filepath.Join(tmp, "rendered.yaml"), rendered, 0o644)

	kubectl(t, kc, "create", "namespace", meshNS)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := kubectlErr(kc, "-n", meshNS, "describe", "pods")
			t.Logf("pods at failure:\n%s", out)
		}
		kubectlErr(kc, "delete", "namespace", meshNS, "--wait=true", "--timeout=90s")
	})
	kubectl(t, kc, "apply", "-f", "-", "<<", string(rendered))
	for _, d := range []string{"web", "client"} {
		if out, err := kubectlErr(kc, "-n", meshNS, "rollout", "status", "deployment/"+d, "--timeout=180s"); err != nil {
			t.Fatalf("deployment %s did not become ready: %v\n%s", d, err, out)
		}
	}
	web := onePod(t, kc, "app=web")
	client := onePod(t, kc, "app=client")
	for _, p := range []pod{web, client} {
		checkNativeSidecar(t, p)
	}

	metrics := func(p pod) scrape {
		t.Helper()
		raw := kubectl(t, kc, "get", "--raw", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:%d/proxy%s", meshNS, p.Metadata.Name, contract.ProxyAdminPort, contract.AdminMetricsPath))
		s, err := parseMetrics(raw)
		if err != nil {
			t.Fatalf("metrics of %s: %v", p.Metadata.Name, err)
		}
		return s
	}
	out := func(s scrape) float64 {
		return s.sum(contract.MetricRequestTotal, map[string]string{contract.LabelDirection: contract.DirectionOutbound})
	}
	in := func(s scrape) float64 {
		return s.sum(contract.MetricRequestTotal, map[string]string{contract.LabelDirection: contract.DirectionInbound}) +
			s.sum(contract.MetricTCPOpenTotal, map[string]string{contract.LabelDirection: contract.DirectionInbound})
	}
	get := func(host string, port int) {
		t.Helper()
		url := fmt.Sprintf("http://%s:%d/", host, port)
		o := kubectl(t, kc, "-n", meshNS, "exec", client.Metadata.Name, "-c", "app", "--",
			"/testapp", "get", url, "--count", fmt.Sprint(requests))
		if !strings.Contains(o, "all 200") || !strings.Contains(o, "ok "+web.Metadata.Name) {
			t.Fatalf("client call to %s: %s", url, o)
		}
	}

	// Through both proxies.
	c0, w0 := metrics(client), metrics(web)
	get(web.Status.PodIP, 8080)
	c1, w1 := metrics(client), metrics(web)
	if d := out(c1) - out(c0); d < requests {
		t.Errorf("client proxy counted %v outbound requests, want at least %d", d, requests)
	}
	if d := w1.sum(contract.MetricRequestTotal, map[string]string{contract.LabelDirection: contract.DirectionInbound}) -
		w0.sum(contract.MetricRequestTotal, map[string]string{contract.LabelDirection: contract.DirectionInbound}); d < requests {
		t.Errorf("server proxy counted %v inbound requests, want at least %d", d, requests)
	}

	t.Logf("port 8080, %d requests: client outbound request_total +%v, server inbound request_total +%v",
		requests, out(c1)-out(c0), w1.sum(contract.MetricRequestTotal, map[string]string{contract.LabelDirection: contract.DirectionInbound})-
			w0.sum(contract.MetricRequestTotal, map[string]string{contract.LabelDirection: contract.DirectionInbound}))

	// Through the Service's cluster IP: kube-proxy sends the client
	// proxy's connection on to the server pod, whose proxy counts it.
	clusterIP := strings.TrimSpace(kubectl(t, kc, "-n", meshNS, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"))
	get(clusterIP, 80)
	c1b, w1b := metrics(client), metrics(web)
	inReq := func(s scrape) float64 {
		return s.sum(contract.MetricRequestTotal, map[string]string{contract.LabelDirection: contract.DirectionInbound})
	}
	if d := out(c1b) - out(c1); d < requests {
		t.Errorf("client proxy counted %v outbound requests to the Service %s, want at least %d", d, clusterIP, requests)
	}
	if d := inReq(w1b) - inReq(w1); d < requests {
		t.Errorf("server proxy counted %v inbound requests via the Service, want at least %d", d, requests)
	}
	t.Logf("Service %s:80, %d requests: client outbound request_total +%v, server inbound request_total +%v",
		clusterIP, requests, out(c1b)-out(c1), inReq(w1b)-inReq(w1))
	c1, w1 = c1b, w1b

	// The skip-inbound port reaches the app directly: the server proxy sees
	// nothing of it, while the client proxy still carries it outbound.
	get(web.Status.PodIP, 9090)
	c2, w2 := metrics(client), metrics(web)
	if d := in(w2) - in(w1); d != 0 {
		t.Errorf("server proxy counted %v inbound requests/connections for skip-inbound port 9090, want 0", d)
	}
	if d := out(c2) - out(c1); d < requests {
		t.Errorf("client proxy counted %v outbound requests to port 9090, want at least %d", d, requests)
	}

	t.Logf("port 9090 (skip-inbound), %d requests: client outbound request_total +%v, server inbound requests+connections +%v",
		requests, out(c2)-out(c1), in(w2)-in(w1))

	checkRedirectTable(t, web, initBin, sock)
}

// pod is the part of a Pod object the test reads.
type pod struct {
	Metadata struct{ Name string }
	Spec     struct {
		InitContainers []struct {
			Name          string
			Args          []string
			RestartPolicy string
		}
		Containers []struct{ Name string }
	}
	Status struct {
		PodIP                 string
		InitContainerStatuses []containerStatus
		ContainerStatuses     []containerStatus
	}
}

type containerStatus struct {
	Name        string
	Ready       bool
	ContainerID string
}

func onePod(t *testing.T, kc, selector string) pod {
	t.Helper()
	var list struct{ Items []pod }
	raw := kubectl(t, kc, "-n", meshNS, "get", "pods", "-l", selector, "-o", "json")
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("pods %s: want 1, got %d", selector, len(list.Items))
	}
	return list.Items[0]
}

// checkNativeSidecar wants the proxy as an init container with restartPolicy
// Always, and the pod 2/2 Ready (the app and the proxy).
func checkNativeSidecar(t *testing.T, p pod) {
	t.Helper()
	sidecar := false
	for _, c := range p.Spec.InitContainers {
		if c.Name == contract.ProxyContainerName && c.RestartPolicy == "Always" {
			sidecar = true
		}
	}
	if !sidecar {
		t.Errorf("pod %s: %s is not a native sidecar (init container with restartPolicy Always)", p.Metadata.Name, contract.ProxyContainerName)
	}
	ready, total := 0, 0
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == contract.ProxyContainerName {
			total++
			if s.Ready {
				ready++
			}
		}
	}
	for _, s := range p.Status.ContainerStatuses {
		total++
		if s.Ready {
			ready++
		}
	}
	if ready != 2 || total != 2 {
		t.Errorf("pod %s: %d/%d Ready, want 2/2", p.Metadata.Name, ready, total)
	}
}

// checkRedirectTable compares the nftables table in the pod's network
// namespace with the dry-run of conduit-init given the pod's own init
// arguments. Both are listed by nft (the dry-run script after loading it in a
// scratch namespace), so the comparison is of the rules, not of formatting.
func checkRedirectTable(t *testing.T, p pod, initBin, sock string) {
	t.Helper()
	var args []string
	for _, c := range p.Spec.InitContainers {
		if c.Name == contract.InitContainerName {
			args = c.Args
		}
	}
	if args == nil {
		t.Fatalf("pod %s has no %s init container", p.Metadata.Name, contract.InitContainerName)
	}
	script := runOK(t, initBin, append(args, "--dry-run")...)
	first := strings.Fields(strings.SplitN(script, "\n", 2)[0]) // table inet NAME {
	if len(first) < 3 || first[0] != "table" {
		t.Fatalf("dry-run output does not start with a table: %q", script)
	}
	family, table := first[1], first[2]

	// The app container's pid gives the pod's network namespace.
	var id string
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == "app" {
			id = strings.TrimPrefix(s.ContainerID, "containerd://")
		}
	}
	pid := ""
	for _, l := range strings.Split(runOK(t, "ctr", "--address", sock, "-n", "k8s.io", "tasks", "ls"), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == id {
			pid = f[1]
		}
	}
	if pid == "" {
		t.Fatalf("no containerd task for container %s", id)
	}
	got := runOK(t, "nsenter", "-t", pid, "-n", "nft", "list", "table", family, table)
	if family != "ip" {
		// One table serves IPv4 and IPv6; no IPv4-only table of the same
		// name (what earlier versions installed) is left beside it.
		if out, err := exec.Command("nsenter", "-t", pid, "-n", "nft", "list", "table", "ip", table).CombinedOutput(); err == nil {
			t.Errorf("pod %s: also holds table ip %s beside table %s %s:\n%s", p.Metadata.Name, table, family, table, out)
		}
	}

	scratch := fmt.Sprintf("conduit-e2e-%d", os.Getpid())
	runOK(t, "ip", "netns", "add", scratch)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", scratch).Run() })
	f := filepath.Join(t.TempDir(), "dry-run.nft")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	runOK(t, "ip", "netns", "exec", scratch, "nft", "-f", f)
	want := runOK(t, "ip", "netns", "exec", scratch, "nft", "list", "table", family, table)
	if got != want {
		t.Errorf("pod %s: table %s %s differs from conduit-init --dry-run %s\n--- pod\n%s--- dry-run (as nft lists it)\n%s",
			p.Metadata.Name, family, table, strings.Join(args, " "), got, want)
	}
	t.Logf("pod %s: table %s %s matches conduit-init --dry-run %s (%d lines)", p.Metadata.Name, family, table, strings.Join(args, " "), strings.Count(got, "\n"))
	if got != script {
		t.Logf("note: nft lists the table differently from the dry-run text\n--- nft\n%s--- dry-run\n%s", got, script)
	}
}

func runOK(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func goBuild(t *testing.T, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func describeExit(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return fmt.Sprintf("%v: %s", err, ee.Stderr)
	}
	return err.Error()
}

// archiveTag reads the first repo tag of a docker-archive tarball.
func archiveTag(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", fmt.Errorf("%s: no manifest.json", path)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			return "", fmt.Errorf("%s: manifest.json: %w", path, err)
		}
		if len(m) == 0 || len(m[0].RepoTags) == 0 {
			return "", fmt.Errorf("%s: no repo tag", path)
		}
		return m[0].RepoTags[0], nil
	}
}
