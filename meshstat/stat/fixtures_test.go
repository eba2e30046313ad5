package stat

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/conduitmesh/conduit/internal/testutil"
	"github.com/conduitmesh/conduit/meshstat/kube"
	"github.com/conduitmesh/conduit/meshstat/prom"
	"github.com/conduitmesh/conduit/pkg/contract"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// golden compares got with testdata/name (go test -update rewrites it).
func golden(t *testing.T, name, got string) {
	t.Helper()
	testutil.Golden(t, filepath.Join("testdata", name), got)
}

func deployment(ns, name string, sel map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"tier": sel["app"]}},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}},
	}
}

func pod(ns, name string, lbls map[string]string, meshed bool, phase corev1.PodPhase) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
	if meshed {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = []corev1.Container{{Name: contract.ProxyContainerName, RestartPolicy: &always}}
	}
	return p
}

func service(ns, name string, sel map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: sel}}
}

// emojivoto is a small cluster: web (2 meshed pods, one more pending),
// voting (1 meshed), vote-bot (1 meshed), legacy (1 pod, not meshed), a
// job in emojivoto, and a deployment in another namespace.
func emojivoto() []runtime.Object {
	app := func(a string) map[string]string { return map[string]string{"app": a} }
	web, voting, bot, legacy := app("web"), app("voting"), app("vote-bot"), app("legacy")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: "emojivoto", Name: "seed"},
		Spec:       batchv1.JobSpec{Selector: &metav1.LabelSelector{MatchLabels: app("seed")}},
	}
	return []runtime.Object{
		deployment("emojivoto", "web", web),
		deployment("emojivoto", "voting", voting),
		deployment("emojivoto", "vote-bot", bot),
		deployment("emojivoto", "legacy", legacy),
		deployment("other", "web", web),
		job,
		&appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "emojivoto", Name: "db"},
			Spec:       appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: app("db")}},
		},
		&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "emojivoto", Name: "agent"},
			Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: app("agent")}},
		},
		pod("emojivoto", "db-0", app("db"), true, corev1.PodRunning),
		pod("emojivoto", "agent-x", app("agent"), false, corev1.PodRunning),
		pod("emojivoto", "web-1", web, true, corev1.PodRunning),
		pod("emojivoto", "web-2", web, true, corev1.PodRunning),
		pod("emojivoto", "web-3", web, true, corev1.PodPending),
		pod("emojivoto", "voting-1", voting, true, corev1.PodRunning),
		pod("emojivoto", "vote-bot-1", bot, true, corev1.PodRunning),
		pod("emojivoto", "legacy-1", legacy, false, corev1.PodRunning),
		pod("emojivoto", "seed-1", app("seed"), true, corev1.PodRunning),
		pod("other", "web-1", web, true, corev1.PodRunning),
		service("emojivoto", "web-svc", web),
		service("emojivoto", "voting-svc", voting),
	}
}

func fakeKube(objs ...runtime.Object) kube.Client {
	return kube.Client{CS: fake.NewClientset(objs...), Host: "https://127.0.0.1:6443"}
}

// fakeProm is a Prometheus HTTP API on loopback that answers known
// queries with fixed vectors, everything else with an empty vector, and
// records every query it was asked.
type fakeProm struct {
	*httptest.Server
	mu      sync.Mutex
	asked   []string
	answers map[string]string // query -> JSON result array
}

func newFakeProm(t *testing.T, answers map[string]string) *fakeProm {
	f := &fakeProm{answers: answers}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/query" {
			http.Error(w, "only GET /api/v1/query", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query().Get("query")
		f.mu.Lock()
		f.asked = append(f.asked, q)
		f.mu.Unlock()
		res, ok := f.answers[q]
		if !ok {
			res = "[]"
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":` + res + `}}`))
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeProm) client(t *testing.T) *prom.Client {
	c, err := prom.New(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// queries is what was asked, sorted, one per line.
func (f *fakeProm) queries() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := append([]string(nil), f.asked...)
	sort.Strings(q)
	return strings.Join(q, "\n") + "\n"
}

// sample renders one vector element.
func sample(labels map[string]string, value string) string {
	b, _ := json.Marshal(map[string]any{"metric": labels, "value": []any{1700000000.0, value}})
	return string(b)
}

func vector(samples ...string) string { return "[" + strings.Join(samples, ",") + "]" }
