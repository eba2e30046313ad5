//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/cluster"
	"github.com/conduitmesh/conduit/internal/testutil"
	"github.com/conduitmesh/conduit/pkg/contract"
)

const (
	tapNS           = "e2e-meshstat-tap"
	tapStandinImage = "conduit.local/tap-standin:e2e"
)

// tapStandin serves the tap endpoint of contract/tap.go on 4190 the way
// the proxy is specified to, and nothing else: every 200 ms the three
// events of one request whose method is the "method" parameter, whose
// authority is the pod's name and whose path is the "path" parameter
// followed by the "max_rps" parameter. It stands in for the proxy so that
// meshstat's side of tap (the API server's pods/proxy, streaming, pod
// following, the role) is tested on a real API server.
const tapStandin = `package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	host, _ := os.Hostname()
	http.HandleFunc("/tap", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "application/x-ndjson")
		path := q.Get("path") + "/rps-" + q.Get("max_rps")
		for i := 0; ; i++ {
			event := func(typ string, fields map[string]any) {
				fields["type"], fields["id"], fields["direction"] = typ, fmt.Sprintf("0:%d", i), "inbound"
				fields["src"], fields["dst"] = "10.0.0.1:40000", "10.0.0.2:8080"
				b, _ := json.Marshal(fields)
				w.Write(append(b, '\n'))
			}
			event("req", map[string]any{"method": q.Get("method"), "scheme": "http", "authority": host, "path": path})
			event("rsp", map[string]any{"status": 200, "latency_ns": 478000})
			event("end", map[string]any{"duration_ns": 7000, "response_bytes": 5, "grpc_status": 0})
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	http.ListenAndServe(":4190", nil)
}
`

const tapWorkload = `apiVersion: apps/v1
kind: Deployment
metadata: {name: tapped, namespace: ` + tapNS + `}
spec:
  replicas: 2
  selector: {matchLabels: {app: tapped}}
  template:
    metadata: {labels: {app: tapped}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: ` + contract.ProxyContainerName + `
        image: ` + tapStandinImage + `
        imagePullPolicy: Never
        ports: [{name: ` + contract.ProxyTapPortName + `, containerPort: 4190}]
`

// lineLog collects a process's output lines as they come.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *lineLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// TestMeshstatTapThroughAPIServer runs `meshstat tap` under the
// conduit-meshstat role against a Deployment whose pods serve the tap
// endpoint (a stand-in for the proxy): the streams of both pods arrive
// merged through the API server's pods/proxy, with the filters and the
// rate limit passed on; after a rollout the new pods are followed; Ctrl-C
// ends it with status 0.
func TestMeshstatTapThroughAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	meshstat := filepath.Join(tmp, "meshstat")
	goBuild(t, meshstat, "./meshstat/cmd/meshstat")
	appDir := filepath.Join(tmp, "standin")
	os.MkdirAll(filepath.Join(appDir, "tap"), 0o755)
	os.WriteFile(filepath.Join(appDir, "go.mod"), []byte("module example.com/tap\n\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(appDir, "tap", "main.go"), []byte(tapStandin), 0o644)
	imgTar := filepath.Join(tmp, "standin.tar")
	if err := cluster.BuildGoImage(ctx, appDir, "./tap", tapStandinImage, imgTar); err != nil {
		t.Fatal(err)
	}
	kc, err := cluster.Up(ctx, cluster.WithProgress(logWriter{t}), cluster.WithImages(imgTar))
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}

	role := filepath.Join(repoRoot, "base", "clusterrole-conduit-meshstat.yaml")
	if _, err := kubectlErr(kc, "get", "clusterrole", "conduit-meshstat"); err != nil {
		kubectl(t, kc, "apply", "-f", role)
		t.Cleanup(func() { kubectlErr(kc, "delete", "-f", role, "--ignore-not-found") })
	}
	kubectl(t, kc, "create", "namespace", tapNS)
	t.Cleanup(func() { kubectlErr(kc, "delete", "namespace", tapNS, "--wait=true", "--timeout=90s") })
	kubectl(t, kc, "apply", "-f", "-", "<<", tapWorkload)
	if out, err := kubectlErr(kc, "-n", tapNS, "rollout", "status", "deployment/tapped", "--timeout=180s"); err != nil {
		t.Fatalf("deployment tapped not ready: %v\n%s", err, out)
	}
	viewer := viewerKubeconfig(t, kc, tmp, tapNS)

	cmd := exec.Command(meshstat, "tap", "deploy/tapped", "--method", "POST", "--path", "/hello", "--max-rps", "5", "-o", "wide", "--kubeconfig", viewer)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var log lineLog
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			log.add(sc.Text())
		}
	}()

	podOf := regexp.MustCompile(` pod=` + tapNS + `/(tapped-[a-z0-9-]+) `)
	pods := func() map[string]bool {
		seen := map[string]bool{}
		for _, l := range log.all() {
			if m := podOf.FindStringSubmatch(l); m != nil {
				seen[m[1]] = true
			}
		}
		return seen
	}
	waitPods := func(what string, ok func(map[string]bool) bool) map[string]bool {
		t.Helper()
		testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
			if seen := pods(); !ok(seen) {
				return fmt.Errorf("waiting for %s; pods seen %v\nstderr:\n%s", what, seen, stderr.String())
			}
			return nil
		})
		return pods()
	}
	first := waitPods("both pods' streams", func(m map[string]bool) bool { return len(m) == 2 })

	want := regexp.MustCompile(`^req id=0:\d+ pod=` + tapNS + `/tapped-\S+ proxy=in src=10\.0\.0\.1:40000 dst=10\.0\.0\.2:8080 tls=false :method=POST :scheme=http :authority=tapped-\S+ :path=/hello/rps-5$`)
	var reqs, rsps, ends int
	for _, l := range log.all() {
		switch {
		case strings.HasPrefix(l, "req "):
			reqs++
			if !want.MatchString(l) {
				t.Errorf("req line %q does not match %s", l, want)
			}
		case strings.HasPrefix(l, "rsp "):
			rsps++
			if !strings.HasSuffix(l, ":status=200 latency=478µs") {
				t.Errorf("rsp line %q", l)
			}
		case strings.HasPrefix(l, "end "):
			ends++
			if !strings.HasSuffix(l, "grpc-status=OK duration=7µs response-length=5B") {
				t.Errorf("end line %q", l)
			}
		default:
			t.Errorf("unexpected line %q", l)
		}
	}
	if reqs == 0 || rsps == 0 || ends == 0 {
		t.Errorf("req %d, rsp %d, end %d lines", reqs, rsps, ends)
	}

	// New pods replace the old ones: tap follows them.
	kubectl(t, kc, "-n", tapNS, "rollout", "restart", "deployment/tapped")
	if out, err := kubectlErr(kc, "-n", tapNS, "rollout", "status", "deployment/tapped", "--timeout=180s"); err != nil {
		t.Fatalf("rollout: %v\n%s", err, out)
	}
	waitPods("a pod of the new rollout", func(m map[string]bool) bool {
		for p := range m {
			if !first[p] {
				return true
			}
		}
		return false
	})

	// Ctrl-C ends it cleanly.
	cmd.Process.Signal(syscall.SIGINT)
	exited := make(chan error, 1)
	go func() { <-readDone; exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("meshstat tap after Ctrl-C: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("meshstat tap did not stop within 15 s of Ctrl-C")
	}
	t.Logf("tapped pods %v; %d lines; stderr:\n%s", pods(), len(log.all()), stderr.String())

	out, err := exec.Command(meshstat, "tap", "deploy/missing", "--kubeconfig", viewer).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `deployment "missing" not found in namespace "`+tapNS+`"`) {
		t.Errorf("tap of a missing deployment: %v\n%s", err, out)
	}
}
