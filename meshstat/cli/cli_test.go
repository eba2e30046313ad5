package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/conduitmesh/conduit/pkg/contract"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeAPIServer answers the few API server paths meshstat stat reads, on
// loopback, and records every request.
type fakeAPIServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	// forbidDeployments answers the deployments list with 403.
	forbidDeployments bool
	// prometheus answers the services/proxy path; nil means the Service
	// has no endpoints (503, as the API server says it).
	prometheus http.Handler
}

func status(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "code": code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func newFakeAPIServer(t *testing.T) *fakeAPIServer {
	f := &fakeAPIServer{}
	sel := map[string]string{"app": "web"}
	mux := http.NewServeMux()
	mux.HandleFunc("/apis/apps/v1/namespaces/emojivoto/deployments", func(w http.ResponseWriter, r *http.Request) {
		if f.forbidDeployments {
			status(w, http.StatusForbidden, `deployments.apps is forbidden: User "system:serviceaccount:default:viewer" cannot list resource "deployments" in API group "apps" in the namespace "emojivoto"`)
			return
		}
		writeJSON(w, appsv1.DeploymentList{
			TypeMeta: metav1.TypeMeta{Kind: "DeploymentList", APIVersion: "apps/v1"},
			Items: []appsv1.Deployment{{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "emojivoto"},
				Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}},
			}},
		})
	})
	mux.HandleFunc("/api/v1/namespaces/emojivoto/pods", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, corev1.PodList{
			TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
			Items: []corev1.Pod{{
				ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "emojivoto", Labels: sel},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web"}, {Name: contract.ProxyContainerName}}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			}},
		})
	})
	proxyPath := fmt.Sprintf("/api/v1/namespaces/conduit/services/%s:%d/proxy/", contract.PrometheusServiceName, contract.PrometheusPort)
	mux.HandleFunc(proxyPath, func(w http.ResponseWriter, r *http.Request) {
		if f.prometheus == nil {
			status(w, http.StatusServiceUnavailable, `no endpoints available for service "conduit-prometheus"`)
			return
		}
		http.StripPrefix(strings.TrimSuffix(proxyPath, "/"), f.prometheus).ServeHTTP(w, r)
	})
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// kubeconfig writes a kubeconfig for server and returns its path.
func kubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: viewer-token}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: emojivoto}}]
current-context: x
`, server)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func meshstat(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// A Prometheus answering the responses query for web with 9 successes and
// 1 failure per second.
func fakePrometheus(t *testing.T, asked *[]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/query" {
			t.Errorf("Prometheus asked %s %s, want GET /api/v1/query", r.Method, r.URL.Path)
		}
		q := r.URL.Query().Get("query")
		*asked = append(*asked, q)
		result := "[]"
		if strings.HasPrefix(q, "sum by (namespace, deployment, classification)") {
			result = `[{"metric":{"namespace":"emojivoto","deployment":"web","classification":"success"},"value":[1,"9"]},
			           {"metric":{"namespace":"emojivoto","deployment":"web","classification":"failure"},"value":[1,"1"]}]`
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, result)
	})
}

func TestStatThroughTheServiceProxy(t *testing.T) {
	api := newFakeAPIServer(t)
	var asked []string
	var mu sync.Mutex
	h := fakePrometheus(t, &asked)
	api.prometheus = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		h.ServeHTTP(w, r)
	})
	code, out, errOut := meshstat("stat", "deploy", "--kubeconfig", kubeconfig(t, api.URL))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "NAME   MESHED   SUCCESS       RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN\n" +
		"web       1/1    90.00%   10.0rps             -             -             -          -\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if len(asked) != 7 {
		t.Errorf("asked %d queries, want 7: %q", len(asked), asked)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	for _, r := range api.requests {
		if !strings.HasPrefix(r, "GET ") {
			t.Errorf("meshstat only reads, but sent %s", r)
		}
	}
}

func TestErrorsSayWhatFailedAndHowToFixIt(t *testing.T) {
	api := newFakeAPIServer(t)
	forbidden := newFakeAPIServer(t)
	forbidden.forbidDeployments = true
	promForbidden := newFakeAPIServer(t)
	promForbidden.prometheus = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status(w, http.StatusForbidden, `services "conduit-prometheus" is forbidden: User "viewer" cannot get resource "services/proxy"`)
	})
	down := "http://" + closedPort(t)
	promDown := closedPort(t)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no cluster", []string{"stat", "deploy", "--kubeconfig", kubeconfig(t, down)}, 1,
			"meshstat: cannot reach the Kubernetes API server at " + down + ": dial tcp " + strings.TrimPrefix(down, "http://") + ": connect: connection refused: check KUBECONFIG, --kubeconfig and --context, and that the cluster is running\n"},
		{"no prometheus endpoints", []string{"stat", "deploy", "--kubeconfig", kubeconfig(t, api.URL)}, 1,
			"meshstat: Prometheus unreachable at " + api.URL + "/api/v1/namespaces/conduit/services/conduit-prometheus:9090/proxy: HTTP 503: no endpoints available for service \"conduit-prometheus\": " +
				"is Conduit's control plane installed in namespace \"conduit\" with its Prometheus ready (kubectl -n conduit get pods)? Use --control-plane-namespace, or --prometheus-url for another Prometheus\n"},
		{"prometheus url down", []string{"stat", "deploy", "--kubeconfig", kubeconfig(t, api.URL), "--prometheus-url", "http://" + promDown}, 1,
			"meshstat: Prometheus unreachable at http://" + promDown + ": dial tcp " + promDown + ": connect: connection refused: check --prometheus-url\n"},
		{"forbidden", []string{"stat", "deploy", "--kubeconfig", kubeconfig(t, forbidden.URL)}, 1,
			"meshstat: forbidden: you may not list deployments in namespace emojivoto: bind the read-only conduit-meshstat ClusterRole to your user or ServiceAccount (see base/clusterrolebinding-conduit-meshstat-viewers.yaml)\n"},
		{"prometheus forbidden", []string{"stat", "deploy", "--kubeconfig", kubeconfig(t, promForbidden.URL)}, 1,
			"meshstat: forbidden: you may not get services/proxy conduit-prometheus in namespace conduit (the bundled Prometheus): bind the read-only conduit-meshstat ClusterRole"},
		{"unknown kind", []string{"stat", "svc", "--kubeconfig", kubeconfig(t, api.URL)}, 1,
			"meshstat: unknown kind \"svc\": use one of deploy, sts, ds, job, pod, ns\n"},
		{"unknown name", []string{"stat", "deploy", "nope", "--kubeconfig", kubeconfig(t, api.URL)}, 1,
			"meshstat: deployment \"nope\" not found in namespace \"emojivoto\": check the name, or the namespace with -n\n"},
		{"tap without meshed pods", []string{"tap", "deploy/web", "--kubeconfig", kubeconfig(t, api.URL), "--path", "x"}, 1,
			"meshstat: --path \"x\": a path prefix starts with /\n"},
		{"unknown command", []string{"stats", "deploy"}, 2, "meshstat: unknown command \"stats\""},
		{"bad flag", []string{"stat", "deploy", "--bogus"}, 2, "unknown flag: --bogus"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := meshstat(c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d", code, c.code)
			}
			if !strings.HasPrefix(errOut, c.want) && !strings.Contains(errOut, c.want) {
				t.Errorf("stderr:\n%s\nwant:\n%s", errOut, c.want)
			}
		})
	}
}

func TestStatGivesUpAfterTimeout(t *testing.T) {
	api := newFakeAPIServer(t)
	api.prometheus = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	code, _, errOut := meshstat("stat", "deploy", "--kubeconfig", kubeconfig(t, api.URL), "--timeout", "300ms")
	want := "within 300ms (--timeout)"
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
}
