package discovery

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// podJSON builds a pod as the API server would return it.
func podJSON(ns, name, phase, ip string, labels map[string]string, proxyAsInit bool, adminPortName string) map[string]any {
	proxy := map[string]any{
		"name": contract.ProxyContainerName,
		"ports": []any{
			map[string]any{"name": adminPortName, "containerPort": contract.ProxyAdminPort},
			map[string]any{"name": contract.ProxyInboundPortName, "containerPort": contract.ProxyInboundPort},
		},
	}
	app := map[string]any{"name": "app", "ports": []any{map[string]any{"name": "http", "containerPort": 8080}}}
	spec := map[string]any{"containers": []any{app}}
	if proxyAsInit {
		spec["initContainers"] = []any{proxy}
	} else if adminPortName != "" {
		spec["containers"] = []any{proxy, app}
	}
	return map[string]any{
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": labels},
		"spec":     spec,
		"status":   map[string]any{"phase": phase, "podIP": ip},
	}
}

func decodePods(t *testing.T, items ...map[string]any) []Pod {
	t.Helper()
	b, _ := json.Marshal(items)
	var pods []Pod
	if err := json.Unmarshal(b, &pods); err != nil {
		t.Fatal(err)
	}
	return pods
}

func TestTargetsKeepsMeshedRunningPodsWithWorkloadLabels(t *testing.T) {
	deploy := map[string]string{contract.WorkloadLabel("Deployment"): "web", "app": "web", contract.LabelWorkloadPrefix + "version": "x"}
	pods := decodePods(t,
		podJSON("shop", "web-1", "Running", "10.244.0.7", deploy, true, contract.ProxyAdminPortName),
		podJSON("bank", "db-0", "Running", "fd00::5", map[string]string{contract.WorkloadLabel("StatefulSet"): "db"}, false, contract.ProxyAdminPortName),
		podJSON("shop", "plain", "Running", "10.244.0.8", nil, false, ""),
		podJSON("shop", "web-2", "Pending", "", deploy, true, contract.ProxyAdminPortName),
		podJSON("shop", "other-port", "Running", "10.244.0.9", deploy, true, "metrics"),
	)
	got := Targets(pods)
	want := []TargetGroup{
		{Targets: []string{"[fd00::5]:4191"}, Labels: map[string]string{"namespace": "bank", "pod": "db-0", "statefulset": "db"}},
		{Targets: []string{"10.244.0.7:4191"}, Labels: map[string]string{"namespace": "shop", "pod": "web-1", "deployment": "web"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("targets\n got %+v\nwant %+v", got, want)
	}
	if b, _ := json.Marshal(Targets(nil)); string(b) != "[]" {
		t.Errorf("no pods: %s, want [] (Prometheus rejects null)", b)
	}
}

// fakeAPIServer serves /api/v1/pods in two pages and records requests.
func fakeAPIServer(t *testing.T, token string, fail *atomic.Bool, calls *atomic.Int32) (*httptest.Server, string) {
	t.Helper()
	pages := [][]map[string]any{
		{podJSON("shop", "web-1", "Running", "10.244.0.7", map[string]string{contract.WorkloadLabel("Deployment"): "web"}, true, contract.ProxyAdminPortName)},
		{podJSON("shop", "web-2", "Running", "10.244.0.8", map[string]string{contract.WorkloadLabel("Deployment"): "web"}, true, contract.ProxyAdminPortName)},
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"kind":"Status","message":"Unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if fail.Load() {
			http.Error(w, `{"kind":"Status","message":"etcdserver: request timed out"}`, http.StatusInternalServerError)
			return
		}
		if r.URL.Path != "/api/v1/pods" || r.URL.Query().Get("fieldSelector") != "status.phase=Running" {
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		page, cont := 0, "page2"
		if r.URL.Query().Get("continue") == "page2" {
			page, cont = 1, ""
		}
		json.NewEncoder(w).Encode(map[string]any{
			"kind": "PodList", "metadata": map[string]any{"continue": cont}, "items": pages[page],
		})
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, ca
}

func TestHandlerListsThroughTheAPIServer(t *testing.T) {
	var fail atomic.Bool
	var calls atomic.Int32
	srv, ca := fakeAPIServer(t, "s3cret", &fail, &calls)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	client, err := NewAPIClient(srv.URL, ca, tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(client, time.Hour).(*handler)
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }

	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, contract.DiscoveryPath, nil))
		return rec.Code, rec.Body.String()
	}
	code, body := get()
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var groups []TargetGroup
	if err := json.Unmarshal([]byte(body), &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].Targets[0] != "10.244.0.7:4191" || groups[1].Labels["deployment"] != "web" {
		t.Errorf("both pages expected, got %s", body)
	}
	if calls.Load() != 2 {
		t.Errorf("%d API calls, want 2 (two pages)", calls.Load())
	}

	// Within minInterval the list is reused; after it, fetched again.
	get()
	if calls.Load() != 2 {
		t.Errorf("cached answer still called the API (%d calls)", calls.Load())
	}
	now = now.Add(2 * time.Hour)
	fail.Store(true)
	code, body = get()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "etcdserver: request timed out") {
		t.Errorf("failing API server: %d %q", code, body)
	}

	// A wrong token is refused by the API server, and the error says so.
	os.WriteFile(tokenFile, []byte("wrong"), 0o600)
	fail.Store(false)
	if _, err := client.ListPods(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v", err)
	}
}

func TestNewAPIClientRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, []byte("not pem"), 0o600)
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("t"), 0o600)
	for _, tc := range []struct{ server, ca, token, want string }{
		{"http://127.0.0.1:6443", ca, token, "want https://host:port"},
		{"https://127.0.0.1:6443", ca, token, "no PEM certificates"},
		{"https://127.0.0.1:6443", filepath.Join(dir, "none"), token, "api server CA"},
	} {
		_, err := NewAPIClient(tc.server, tc.ca, tc.token)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewAPIClient(%s, %s): %v, want %q", tc.server, tc.ca, err, tc.want)
		}
	}
}

type stubLister struct{ err error }

func (s stubLister) ListPods(context.Context) ([]Pod, error) { return nil, s.err }

func TestHandlerRejectsWrites(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(stubLister{errors.New("x")}, 0).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/targets", io.NopCloser(strings.NewReader(""))))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}
