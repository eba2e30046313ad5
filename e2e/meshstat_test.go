//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/cluster"
	"github.com/conduitmesh/conduit/internal/testutil"
	meshstatstat "github.com/conduitmesh/conduit/meshstat/stat"
	"github.com/conduitmesh/conduit/pkg/contract"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	statNS        = "e2e-meshstat"
	statAppImage  = "conduit.local/meshstat-web:e2e"
	statLoadImage = "conduit.local/fortio:e2e"
	statViewer    = "meshstat-viewer"
	loadQPS       = 20
	loadSeconds   = 120
)

// statApp answers HTTP on 8080 in a fixed cycle of ten requests: six after
// 7 ms, three after 15 ms, one after 25 ms, and the fifth of each ten with
// 500. So in any window exactly 10% fail, and the latency quantiles lie
// mid-bucket: p50 in (5,10] ms, p95 and p99 in (20,30] ms.
const statApp = `package main

import (
	"net/http"
	"sync/atomic"
	"time"
)

func main() {
	ms := []time.Duration{7, 7, 7, 7, 7, 7, 15, 15, 15, 25}
	var n atomic.Int64
	http.ListenAndServe(":8080", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := (n.Add(1) - 1) % 10
		time.Sleep(ms[i] * time.Millisecond)
		if i == 4 {
			http.Error(w, "every tenth fails", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok\n"))
	}))
}
`

// statWorkloads: the web Deployment and its Service, meshed.
const statWorkloads = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: ` + statNS + `}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ` + statNS + `}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {` + contract.AnnotationInject + `: ` + contract.InjectEnabled + `}
    spec:
      containers:
      - name: app
        image: ` + statAppImage + `
        imagePullPolicy: Never
        ports: [{name: http, containerPort: 8080}]
`

// statLoad: fortio drives loadQPS requests per second at web's Service
// through the mesh for loadSeconds, naming it web.<ns>:8080, and prints
// its own result (return codes, actual QPS, latency percentiles) as JSON.
var statLoad = `apiVersion: batch/v1
kind: Job
metadata: {name: load, namespace: ` + statNS + `}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {app: load}
      annotations: {` + contract.AnnotationInject + `: ` + contract.InjectEnabled + `}
    spec:
      restartPolicy: Never
      containers:
      - name: fortio
        image: ` + statLoadImage + `
        imagePullPolicy: Never
        args: [load, -quiet, -qps, "` + fmt.Sprint(loadQPS) + `", -c, "4", -t, ` + fmt.Sprint(loadSeconds) + `s, -p, "50,95,99",
               -H, "Host: web.` + statNS + `:8080", -json, "-", "http://$(WEB_SERVICE_HOST):8080/"]
`

// fortioResult is the part of fortio's JSON result the test reads.
type fortioResult struct {
	ActualQPS         float64
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
}

// statRow is the part of a meshstat stat -o json row the test reads.
type statRow struct {
	Namespace    string   `json:"namespace"`
	Name         string   `json:"name"`
	MeshedPods   int      `json:"meshed_pods"`
	RunningPods  int      `json:"running_pods"`
	SuccessRate  *float64 `json:"success_rate"`
	RPS          *float64 `json:"rps"`
	LatencyMsP50 *float64 `json:"latency_ms_p50"`
	LatencyMsP95 *float64 `json:"latency_ms_p95"`
	LatencyMsP99 *float64 `json:"latency_ms_p99"`
}

// TestMeshstatStat applies overlays/local (the bundled Prometheus), runs a
// meshed web Deployment under a fortio load of known rate and failure
// ratio, and checks `meshstat stat` against fortio's own figures: success
// within 1 percentage point, RPS within 5%, latency percentiles in the
// same histogram bucket. Every meshstat command runs under a kubeconfig of
// a ServiceAccount bound only to the generated conduit-meshstat role,
// which grants no write verb.
func TestMeshstatStat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tmp := t.TempDir()

	proxyTar := filepath.Join(repoRoot, "dist", "conduit-proxy.tar")
	promTar := filepath.Join(repoRoot, "dist", "prometheus.tar")
	if _, err := os.Stat(promTar); err != nil {
		// make e2e builds the proxy image, not Prometheus's: pack it here,
		// with the one recipe there is.
		mk := exec.CommandContext(ctx, "make", "prometheus-image")
		mk.Dir = repoRoot
		if out, err := mk.CombinedOutput(); err != nil {
			t.Fatalf("make prometheus-image: %v\n%s", err, out)
		}
	}
	if _, err := os.Stat(proxyTar); err != nil {
		t.Fatalf("%s is missing: run `make image` first", proxyTar)
	}
	proxyImage, err := archiveTag(proxyTar)
	if err != nil {
		t.Fatal(err)
	}
	injector := filepath.Join(repoRoot, "bin", "conduit-inject")
	if _, err := os.Stat(injector); err != nil {
		t.Fatalf("the injector (make build): %v", err)
	}
	meshstat := filepath.Join(tmp, "meshstat")
	goBuild(t, meshstat, "./meshstat/cmd/meshstat")

	appDir := filepath.Join(tmp, "app")
	os.MkdirAll(filepath.Join(appDir, "web"), 0o755)
	os.WriteFile(filepath.Join(appDir, "go.mod"), []byte("module example.com/web\n\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(appDir, "web", "main.go"), []byte(statApp), 0o644)
	appTar, loadTar := filepath.Join(tmp, "web.tar"), filepath.Join(tmp, "fortio.tar")
	if err := cluster.BuildGoImage(ctx, appDir, "./web", statAppImage, appTar); err != nil {
		t.Fatal(err)
	}
	if err := cluster.BuildGoImage(ctx, repoRoot, "fortio.org/fortio", statLoadImage, loadTar); err != nil {
		t.Fatal(err)
	}

	kc, err := cluster.Up(ctx, cluster.WithProgress(logWriter{t}), cluster.WithImages(proxyTar, promTar, appTar, loadTar))
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}

	// The control plane, removed again unless it was there before.
	_, cpErr := kubectlErr(kc, "get", "namespace", contract.DefaultControlPlaneNamespace)
	controlPlane := kustomizeBuild(t, "overlays/local")
	kubectl(t, kc, "apply", "--server-side", "-f", "-", "<<", controlPlane)
	if cpErr != nil {
		t.Cleanup(func() {
			kubectlErr(kc, "delete", "--wait=true", "--timeout=120s", "--ignore-not-found", "-f", "-", "<<", controlPlane)
		})
	}

	injected := func(doc string) string {
		t.Helper()
		inject := exec.Command(injector, "--image", proxyImage, "--native-sidecar=true", "-")
		inject.Stdin = strings.NewReader(doc)
		out, err := inject.Output()
		if err != nil {
			t.Fatalf("conduit-inject: %v", describeExit(err))
		}
		if !strings.Contains(string(out), contract.ProxyContainerName) {
			t.Fatalf("conduit-inject added no proxy:\n%s", out)
		}
		return string(out)
	}
	web, load := injected(statWorkloads), injected(statLoad)

	kubectl(t, kc, "create", "namespace", statNS)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := kubectlErr(kc, "-n", statNS, "describe", "pods")
			t.Logf("pods at failure:\n%s", out)
		}
		kubectlErr(kc, "delete", "namespace", statNS, "--wait=true", "--timeout=90s")
	})
	kubectl(t, kc, "apply", "-f", "-", "<<", web)
	for _, d := range []struct{ ns, name string }{{contract.DefaultControlPlaneNamespace, "conduit-prometheus"}, {statNS, "web"}} {
		if out, err := kubectlErr(kc, "-n", d.ns, "rollout", "status", "deployment/"+d.name, "--timeout=240s"); err != nil {
			t.Fatalf("deployment %s/%s not ready: %v\n%s", d.ns, d.name, err, out)
		}
	}

	viewer := viewerKubeconfig(t, kc, tmp, statNS)
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, meshstat, append(args, "--kubeconfig", viewer)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), fmt.Errorf("meshstat %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out), nil
	}
	stat := func(args ...string) map[string]statRow {
		t.Helper()
		out, err := run(append([]string{"stat"}, append(args, "-o", "json")...)...)
		if err != nil {
			t.Fatal(err)
		}
		var rows []statRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("meshstat stat %v -o json: %v\n%s", args, err, out)
		}
		m := map[string]statRow{}
		for _, r := range rows {
			m[r.Name] = r
		}
		return m
	}

	// Before any traffic: meshed, and "-" (null) for the figures.
	if r := stat("deploy", "-n", statNS)["web"]; r.MeshedPods != 1 || r.RunningPods != 1 || r.RPS != nil {
		t.Errorf("web before the load: %+v, want 1/1 meshed and no traffic", r)
	}

	kubectl(t, kc, "apply", "-f", "-", "<<", load)
	if out, err := kubectlErr(kc, "-n", statNS, "wait", "pod", "-l", "app=load", "--for=condition=Ready", "--timeout=180s"); err != nil {
		t.Fatalf("the load pod did not start: %v\n%s", err, out)
	}
	started := time.Now()
	// meshstat's rate window must lie wholly inside the steady load: wait
	// until Prometheus's samples of web's inbound traffic span the window
	// plus one scrape (discovery and the first scrape come before them).
	window, err := time.ParseDuration(meshstatstat.DefaultWindow)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, loadSeconds*time.Second-time.Since(started), 2*time.Second, func() error {
		span, gap, err := promSampleSpan(kc, contract.MetricRequestTotal+`{namespace="`+statNS+`",deployment="web",direction="inbound"}`)
		if err != nil {
			return err
		}
		if span < window+gap {
			return fmt.Errorf("Prometheus's samples of web's inbound requests span %v, want the %v window and a %v scrape", span, window, gap)
		}
		return nil
	})
	deploys := stat("deploy", "-n", statNS)
	toWeb := stat("job", "-n", statNS, "--to", "svc/web")
	pods := stat("pod", "-n", statNS)
	nss := stat("ns", statNS)
	table, err := run("stat", "deploy", "-n", statNS, "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("at %s into the load:\n%s", time.Since(started).Round(time.Second), table)

	if out, err := kubectlErr(kc, "-n", statNS, "wait", "job/load", "--for=condition=Complete", fmt.Sprintf("--timeout=%ds", loadSeconds+60)); err != nil {
		t.Fatalf("the load did not complete: %v\n%s", err, out)
	}
	logs := kubectl(t, kc, "-n", statNS, "logs", "job/load", "-c", "fortio")
	res := parseFortio(t, logs)
	total := int64(0)
	for _, n := range res.RetCodes {
		total += n
	}
	fortioSuccess := float64(res.RetCodes["200"]) / float64(total)
	t.Logf("fortio: %d requests, return codes %v, success %.2f%%, %.2f qps, percentiles %+v",
		total, res.RetCodes, 100*fortioSuccess, res.ActualQPS, res.DurationHistogram.Percentiles)

	check := func(what string, r statRow) {
		t.Helper()
		if r.SuccessRate == nil || r.RPS == nil {
			t.Errorf("%s: no traffic in meshstat's answer: %+v", what, r)
			return
		}
		if d := math.Abs(*r.SuccessRate - fortioSuccess); d > 0.01 {
			t.Errorf("%s: SUCCESS %.2f%%, fortio %.2f%%: more than 1 point apart", what, 100**r.SuccessRate, 100*fortioSuccess)
		}
		if d := math.Abs(*r.RPS-res.ActualQPS) / res.ActualQPS; d > 0.05 {
			t.Errorf("%s: RPS %.2f, fortio %.2f: more than 5%% apart", what, *r.RPS, res.ActualQPS)
		}
		for _, p := range []struct {
			pct float64
			got *float64
		}{{50, r.LatencyMsP50}, {95, r.LatencyMsP95}, {99, r.LatencyMsP99}} {
			want := percentile(t, res, p.pct) * 1000
			if p.got == nil {
				t.Errorf("%s: no p%v", what, p.pct)
				continue
			}
			if gb, wb := bucket(*p.got), bucket(want); gb != wb {
				t.Errorf("%s: p%v %.2fms is in bucket %s, fortio's %.2fms in %s", what, p.pct, *p.got, gb, want, wb)
			}
		}
		t.Logf("%s: success %.2f%% rps %.2f p50 %.2fms p95 %.2fms p99 %.2fms", what, 100**r.SuccessRate, *r.RPS,
			*r.LatencyMsP50, *r.LatencyMsP95, *r.LatencyMsP99)
	}
	check("deploy/web (inbound)", deploys["web"])
	check("job/load --to svc/web (outbound)", toWeb["load"])
	check("ns "+statNS, nss[statNS])
	webPods := 0
	for name, r := range pods {
		if strings.HasPrefix(name, "web-") {
			webPods++
			check("pod/"+name, r)
		}
	}
	if webPods != 1 {
		t.Errorf("stat pod: %d web pods, want 1: %+v", webPods, pods)
	}

	// The role: read verbs only, and a write under it is refused.
	var role struct {
		Rules []struct {
			Verbs     []string `json:"verbs"`
			Resources []string `json:"resources"`
		} `json:"rules"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, kc, "get", "clusterrole", "conduit-meshstat", "-o", "json")), &role); err != nil {
		t.Fatal(err)
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v != "get" && v != "list" && v != "watch" {
				t.Errorf("conduit-meshstat grants %q on %v", v, r.Resources)
			}
		}
	}
	out, err := kubectlErr(viewer, "-n", statNS, "create", "configmap", "written-by-viewer")
	if err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("a write under the meshstat role was not refused: %v\n%s", err, out)
	}
	// meshstat's own message when the role lacks something: resolving a
	// workload's Services needs list services.
	if _, err := run("stat", "job", "-n", statNS, "--to", "deploy/web"); err == nil ||
		!strings.Contains(err.Error(), "forbidden: you may not list services in namespace "+statNS) {
		t.Errorf("want meshstat's forbidden message for list services, got %v", err)
	}
}

// viewerKubeconfig makes a ServiceAccount in ns bound only to
// conduit-meshstat and writes a kubeconfig with its token.
func viewerKubeconfig(t *testing.T, kc, dir, ns string) string {
	t.Helper()
	binding := statViewer + "-" + ns
	kubectl(t, kc, "-n", ns, "create", "serviceaccount", statViewer)
	kubectl(t, kc, "create", "clusterrolebinding", binding, "--clusterrole=conduit-meshstat", "--serviceaccount="+ns+":"+statViewer)
	t.Cleanup(func() { kubectlErr(kc, "delete", "clusterrolebinding", binding, "--ignore-not-found") })
	token := strings.TrimSpace(kubectl(t, kc, "-n", ns, "create", "token", statViewer, "--duration=1h"))
	admin, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	cluster := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster]
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = cluster
	cfg.AuthInfos[statViewer] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["viewer"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: statViewer, Namespace: ns}
	cfg.CurrentContext = "viewer"
	path := filepath.Join(dir, "viewer-"+ns+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// kustomizeBuild renders a kustomization of the repository with the
// pinned kustomize.
func kustomizeBuild(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("go", "tool", "kustomize", "build", dir)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, describeExit(err))
	}
	return string(out)
}

// parseFortio finds fortio's JSON result in the pod's log.
func parseFortio(t *testing.T, logs string) fortioResult {
	t.Helper()
	i := strings.Index(logs, "\n{")
	if strings.HasPrefix(logs, "{") {
		i = 0
	}
	var r fortioResult
	if i < 0 {
		t.Fatalf("no JSON result in fortio's log:\n%s", logs)
	}
	// kubectl logs interleaves fortio's other output (JSON log lines, and
	// per-connection lines such as "[0]  65 socket used") with the JSON
	// result it prints on stdout; the result's own lines are indented, or
	// its opening and closing braces alone.
	var body strings.Builder
	for _, line := range strings.Split(logs[i:], "\n") {
		if line == "{" || line == "}" || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if err := json.NewDecoder(strings.NewReader(body.String())).Decode(&r); err != nil {
		t.Fatalf("fortio's result: %v\n%s", err, logs)
	}
	if r.ActualQPS == 0 || len(r.RetCodes) == 0 {
		t.Fatalf("fortio sent nothing:\n%s", logs)
	}
	return r
}

func percentile(t *testing.T, r fortioResult, p float64) float64 {
	t.Helper()
	for _, q := range r.DurationHistogram.Percentiles {
		if q.Percentile == p {
			return q.Value
		}
	}
	t.Fatalf("fortio has no p%v: %+v", p, r.DurationHistogram.Percentiles)
	return 0
}

// bucket names the latency bucket (contract.ResponseLatencyBucketsMs) that
// holds ms, e.g. "(5,10]".
func bucket(ms float64) string {
	lo := 0.0
	for _, le := range contract.ResponseLatencyBucketsMs {
		if ms <= le {
			return fmt.Sprintf("(%g,%g]", lo, le)
		}
		lo = le
	}
	return fmt.Sprintf("(%g,+Inf)", lo)
}

// fortio's per-connection lines can land inside its JSON result in the
// pod's log; parseFortio still reads the result.
func TestParseFortioInterleaved(t *testing.T) {
	logs := `Fortio 1.68.2 running at 20 queries per second
# Socket and IP used for each connection:
{
  "RunType": "HTTP",
[0]  65 socket used, resolved to 10.96.122.89:8080, connection timing : count 65
{"ts":1764071192.6,"level":"info","msg":"done"}
Code 200 : 2160 (90.0 %)
  "ActualQPS": 19.99,
  "RetCodes": {
    "200": 2160,
    "500": 240
  },
  "DurationHistogram": {
    "Count": 2400,
    "Percentiles": [
      {
        "Percentile": 50,
        "Value": 0.0088
      }
    ]
  }
}
`
	r := parseFortio(t, logs)
	if r.ActualQPS != 19.99 || r.RetCodes["500"] != 240 || r.DurationHistogram.Count != 2400 || len(r.DurationHistogram.Percentiles) != 1 {
		t.Fatalf("parsed %+v", r)
	}
}

// promSampleSpan asks Prometheus, through the API server's service proxy as
// meshstat does, for the last 5 minutes of raw samples of selector's series:
// the time from the first sample of any series to the last, and the longest
// gap between two samples of one series (a scrape interval, or more).
func promSampleSpan(kc, selector string) (span, gap time.Duration, err error) {
	path := "/api/v1/namespaces/" + contract.DefaultControlPlaneNamespace + "/services/" + contract.PrometheusServiceName + ":" +
		contract.PrometheusPortName + "/proxy/api/v1/query?query=" + url.QueryEscape(selector+"[5m]")
	out, err := kubectlErr(kc, "get", "--raw", path)
	if err != nil {
		return 0, 0, fmt.Errorf("query %s: %v: %s", selector, err, out)
	}
	var resp struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return 0, 0, fmt.Errorf("query %s: %v: %s", selector, err, out)
	}
	first, last := math.Inf(1), math.Inf(-1)
	maxGap := 0.0
	for _, r := range resp.Data.Result {
		prev := math.NaN()
		for _, v := range r.Values {
			ts, ok := v[0].(float64)
			if !ok {
				return 0, 0, fmt.Errorf("query %s: sample time %v", selector, v[0])
			}
			first, last = math.Min(first, ts), math.Max(last, ts)
			if !math.IsNaN(prev) {
				maxGap = math.Max(maxGap, ts-prev)
			}
			prev = ts
		}
	}
	if len(resp.Data.Result) == 0 || maxGap == 0 {
		return 0, 0, fmt.Errorf("Prometheus has fewer than two samples of %s", selector)
	}
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	return sec(last - first), sec(maxGap), nil
}
