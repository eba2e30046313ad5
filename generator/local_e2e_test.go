//go:build e2e

package generator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/conduitmesh/conduit/cluster"
	"github.com/conduitmesh/conduit/image"
	"github.com/conduitmesh/conduit/internal/testutil"
	"github.com/conduitmesh/conduit/pkg/contract"
)

const (
	localWorkloadNS = "e2e-prometheus"
	localAppImage   = "conduit.local/e2e-web:v1"
)

// localApp serves HTTP on 8080, or, as "client", calls the web Service
// five times a second forever.
const localApp = `package main

import (
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "client" {
		target := "http://" + os.Getenv("WEB_SERVICE_HOST") + ":" + os.Getenv("WEB_SERVICE_PORT") + "/"
		for {
			if resp, err := http.Get(target); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	http.ListenAndServe(":8080", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
}
`

const localWorkloads = `apiVersion: v1
kind: Namespace
metadata:
  name: ` + localWorkloadNS + `
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: ` + localWorkloadNS + `
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ` + localWorkloadNS + `
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
        image: ` + localAppImage + `
        imagePullPolicy: Never
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: load
  namespace: ` + localWorkloadNS + `
spec:
  replicas: 1
  selector: {matchLabels: {app: load}}
  template:
    metadata:
      labels: {app: load}
      annotations: {` + contract.AnnotationInject + `: ` + contract.InjectDisabled + `}
    spec:
      containers:
      - name: load
        image: ` + localAppImage + `
        imagePullPolicy: Never
        args: [client]
`

// TestLocalOverlayOnTheNode applies overlays/local on the local node:
// Prometheus (Debian's, packed by make prometheus-image) with
// conduit-discovery becomes Ready; a workload injected through
// overlays/local/injector receives traffic; and a PromQL query for
// response_total grouped by deployment, sent through the API server's
// service proxy as meshstat does, returns that workload.
func TestLocalOverlayOnTheNode(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	images := []string{filepath.Join(root, "dist", "conduit-proxy.tar"), filepath.Join(root, "dist", "prometheus.tar")}
	for _, f := range images {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s is missing: run `make image prometheus-image` first", f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	wasUp := len(cluster.Leftovers(ctx)) > 0
	kc, err := cluster.Up(ctx, cluster.WithImages(images...), cluster.WithProgress(testLog{t}))
	if err != nil {
		t.Fatal(err)
	}
	if !wasUp {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := cluster.Down(ctx, cluster.WithProgress(testLog{t})); err != nil {
				t.Errorf("teardown: %v", err)
			}
		})
	}
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kc}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := kubectl(stdin, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	t.Cleanup(func() {
		kubectl("", "delete", "namespace", localWorkloadNS, "--wait=true", "--timeout=120s")
		kubectl(kustomize(t, "../overlays/local"), "delete", "--wait=true", "--timeout=120s", "--ignore-not-found", "-f", "-")
	})

	// The control plane.
	must(kustomize(t, "../overlays/local"), "apply", "--server-side", "-f", "-")

	// The workload's image, and its manifests injected the way Argo CD
	// would render them: kustomize with conduit-inject as an exec function.
	appDir := t.TempDir()
	os.WriteFile(filepath.Join(appDir, "go.mod"), []byte("module example.com/web\n\ngo 1.26\n"), 0o644)
	os.MkdirAll(filepath.Join(appDir, "cmd", "web"), 0o755)
	os.WriteFile(filepath.Join(appDir, "cmd", "web", "main.go"), []byte(localApp), 0o644)
	idx, err := image.FromGoBinaries(ctx, []string{"./cmd/web"}, []v1.Platform{{OS: "linux", Architecture: "amd64"}},
		image.WithGoDir(appDir), image.WithEntrypoint("web"), image.WithUser("65534"))
	if err != nil {
		t.Fatal(err)
	}
	img, _ := image.ImageFor(idx, v1.Platform{OS: "linux", Architecture: "amd64"})
	tag, _ := name.NewTag(localAppImage)
	appTar := filepath.Join(t.TempDir(), "web.tar")
	if err := image.WriteDockerArchive(appTar, tag, img); err != nil {
		t.Fatal(err)
	}
	if err := cluster.ImportImages(ctx, []string{appTar}); err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", binDir+"/", "./krm-functions/cmd/conduit-inject")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build conduit-inject: %v\n%s", err, out)
	}
	appKust := t.TempDir()
	rel, _ := filepath.Rel(appKust, filepath.Join(root, "overlays", "local", "injector"))
	os.WriteFile(filepath.Join(appKust, "workloads.yaml"), []byte(localWorkloads), 0o644)
	os.WriteFile(filepath.Join(appKust, "kustomization.yaml"), []byte("resources: [workloads.yaml]\ntransformers: ["+rel+"]\n"), 0o644)
	kbin := kustomizePath(t)
	render := exec.CommandContext(ctx, kbin, "build", "--enable-alpha-plugins", "--enable-exec", appKust)
	render.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var rendered, renderErr bytes.Buffer
	render.Stdout, render.Stderr = &rendered, &renderErr
	if err := render.Run(); err != nil {
		t.Fatalf("render workloads: %v\n%s", err, renderErr.String())
	}
	if !strings.Contains(rendered.String(), contract.ProxyContainerName) {
		t.Fatalf("workloads were not injected:\n%s", rendered.String())
	}
	must(rendered.String(), "apply", "--server-side", "-f", "-")

	for _, d := range []struct{ ns, name string }{
		{contract.DefaultControlPlaneNamespace, PrometheusName},
		{localWorkloadNS, "web"}, {localWorkloadNS, "load"},
	} {
		if out, err := kubectl("", "-n", d.ns, "rollout", "status", "deployment/"+d.name, "--timeout=240s"); err != nil {
			desc, _ := kubectl("", "-n", d.ns, "describe", "pods")
			t.Fatalf("deployment %s/%s not ready: %v\n%s\n%s", d.ns, d.name, err, out, desc)
		}
	}

	// meshstat's way in: the API server's service proxy to Prometheus.
	q := url.QueryEscape("sum by (deployment) (" + contract.MetricResponseTotal + "{direction=\"inbound\"})")
	path := "/api/v1/namespaces/" + contract.DefaultControlPlaneNamespace + "/services/" +
		contract.PrometheusServiceName + ":" + contract.PrometheusPortName + "/proxy/api/v1/query?query=" + q
	var last string
	err = testutil.Poll(3*time.Minute, 3*time.Second, func() error {
		out, err := kubectl("", "get", "--raw", path)
		last = out
		if err != nil {
			return err
		}
		var resp struct {
			Data struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  []any             `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			return err
		}
		for _, r := range resp.Data.Result {
			if r.Metric["deployment"] == "web" {
				return nil
			}
		}
		return fmt.Errorf("no deployment=\"web\" yet")
	})
	if err == nil {
		t.Logf("response_total by deployment: %s", last)
		return
	}
	logs, _ := kubectl("", "-n", contract.DefaultControlPlaneNamespace, "logs", "deployment/"+PrometheusName, "--all-containers", "--tail=40")
	targets, _ := kubectl("", "get", "--raw", "/api/v1/namespaces/"+contract.DefaultControlPlaneNamespace+"/services/"+
		contract.PrometheusServiceName+":"+contract.PrometheusPortName+"/proxy/api/v1/targets")
	t.Fatalf("no deployment=\"web\" in response_total; last answer:\n%s\ntargets:\n%s\nlogs:\n%s", last, targets, logs)
}

type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// kustomizePath is the pinned kustomize binary.
func kustomizePath(t *testing.T) string {
	t.Helper()
	kustomize(t, "../base/injector") // builds and caches the path
	return kustomizeBin
}
