package tap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/internal/testutil"
	"github.com/conduitmesh/conduit/meshstat/kube"
	"github.com/conduitmesh/conduit/pkg/contract"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// syncBuffer is an io.Writer that tests read while Run writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until cond holds on the buffer's text, or fails.
func waitFor(t *testing.T, what string, b *syncBuffer, cond func(string) bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := b.String(); !cond(s) {
			return fmt.Errorf("waiting for %s; have:\n%s", what, s)
		}
		return nil
	})
}

// fakeAPI stands in for the API server's pods/proxy subresource on
// loopback: each pod's tap requests go to its handler, with the number of
// the attempt (0 first).
type fakeAPI struct {
	*httptest.Server
	mu       sync.Mutex
	handlers map[string]func(w http.ResponseWriter, r *http.Request, attempt int)
	attempts map[string]int
	queries  []string
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{handlers: map[string]func(http.ResponseWriter, *http.Request, int){}, attempts: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{pod}/proxy/tap", func(w http.ResponseWriter, r *http.Request) {
		name, port, _ := strings.Cut(r.PathValue("pod"), ":")
		if port != fmt.Sprint(contract.ProxyTapPort) {
			http.Error(w, "wrong port "+port, http.StatusBadGateway)
			return
		}
		key := r.PathValue("ns") + "/" + name
		f.mu.Lock()
		h := f.handlers[key]
		n := f.attempts[key]
		f.attempts[key]++
		f.queries = append(f.queries, r.URL.RawQuery)
		f.mu.Unlock()
		if h == nil {
			http.Error(w, `{"kind":"Status","message":"pods \"`+name+`\" not found"}`, http.StatusNotFound)
			return
		}
		h(w, r, n)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) handle(pod string, h func(w http.ResponseWriter, r *http.Request, attempt int)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers["emojivoto/"+pod] = h
}

func (f *fakeAPI) opener() PodProxy { return PodProxy{Host: f.URL, Client: f.Client()} }

// send writes events as NDJSON and flushes.
func send(w http.ResponseWriter, events ...contract.TapEvent) {
	w.Header().Set("Content-Type", contract.TapContentType)
	for _, e := range events {
		b, _ := json.Marshal(e)
		w.Write(append(b, '\n'))
	}
	w.(http.Flusher).Flush()
}

// request is the three events of one request.
func request(id, path string, status int) []contract.TapEvent {
	src, dst := "10.244.0.9:41000", "10.244.0.7:8080"
	return []contract.TapEvent{
		{Type: contract.TapRequest, ID: id, Direction: contract.DirectionInbound, Source: src, Destination: dst, Method: "GET", Scheme: "http", Authority: "web-svc.emojivoto:80", Path: path},
		{Type: contract.TapResponse, ID: id, Direction: contract.DirectionInbound, Source: src, Destination: dst, Status: status, Latency: 1500 * time.Microsecond},
		{Type: contract.TapEnd, ID: id, Direction: contract.DirectionInbound, Source: src, Destination: dst, Duration: 20 * time.Microsecond, ResponseBytes: 42},
	}
}

var webSelector = map[string]string{"app": "web"}

func webPod(name string, meshed bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "emojivoto", Name: name, Labels: webSelector, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.7"},
	}
	if meshed {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: contract.ProxyContainerName})
	}
	return p
}

func webCluster(pods ...*corev1.Pod) *fake.Clientset {
	objs := []runtime.Object{&appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "emojivoto", Name: "web"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: webSelector}},
	}}
	for _, p := range pods {
		objs = append(objs, p)
	}
	return fake.NewClientset(objs...)
}

type run struct {
	out, errOut syncBuffer
	cancel      context.CancelFunc
	done        chan error
}

func start(t *testing.T, o Options, cs *fake.Clientset, api *fakeAPI) *run {
	t.Helper()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- Run(ctx, o, kube.Client{CS: cs, Host: api.URL}, api.opener(), &r.out, &r.errOut, WithRetry(10*time.Millisecond, 50*time.Millisecond))
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the run (Ctrl-C) and expects a clean return.
func (r *run) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
		r.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func TestMergesStreamsOfAllPods(t *testing.T) {
	api := newFakeAPI(t)
	hold := func(events []contract.TapEvent) func(http.ResponseWriter, *http.Request, int) {
		return func(w http.ResponseWriter, r *http.Request, _ int) {
			send(w, events...)
			<-r.Context().Done()
		}
	}
	api.handle("web-1", hold(request("0:1", "/one", 200)))
	api.handle("web-2", hold(request("3:5", "/two", 503)))
	r := start(t, Options{Target: "deploy/web", Namespace: "emojivoto", Output: OutputWide, Method: "GET", PathPrefix: "/", MaxRPS: 5},
		webCluster(webPod("web-1", true), webPod("web-2", true)), api)
	waitFor(t, "six lines", &r.out, func(s string) bool { return strings.Count(s, "\n") == 6 })
	r.stop(t)

	var one, two []string
	for _, l := range lines(r.out.String()) {
		switch {
		case strings.Contains(l, "pod=emojivoto/web-1"):
			one = append(one, l)
		case strings.Contains(l, "pod=emojivoto/web-2"):
			two = append(two, l)
		default:
			t.Errorf("line without its pod: %q", l)
		}
	}
	want2 := []string{
		"req id=3:5 pod=emojivoto/web-2 proxy=in src=10.244.0.9:41000 dst=10.244.0.7:8080 tls=false :method=GET :scheme=http :authority=web-svc.emojivoto:80 :path=/two",
		"rsp id=3:5 pod=emojivoto/web-2 proxy=in src=10.244.0.9:41000 dst=10.244.0.7:8080 tls=false :status=503 latency=1.5ms",
		"end id=3:5 pod=emojivoto/web-2 proxy=in src=10.244.0.9:41000 dst=10.244.0.7:8080 tls=false duration=20µs response-length=42B",
	}
	if len(one) != 3 || !strings.HasPrefix(one[0], "req id=0:1") || !strings.HasPrefix(one[2], "end id=0:1") {
		t.Errorf("web-1 lines out of order: %q", one)
	}
	if strings.Join(two, "\n") != strings.Join(want2, "\n") {
		t.Errorf("web-2 lines:\n%s\nwant:\n%s", strings.Join(two, "\n"), strings.Join(want2, "\n"))
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	for _, q := range api.queries {
		if q != "max_rps=5&method=GET&path=%2F" {
			t.Errorf("tap query %q, want the filters and the rate limit", q)
		}
	}
}

func TestReconnectsAfterABrokenStream(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("web-1", func(w http.ResponseWriter, r *http.Request, attempt int) {
		switch attempt {
		case 0:
			send(w, request("0:1", "/before", 200)[0]) // then the proxy restarts
		case 1:
			http.Error(w, "error trying to reach service: dial tcp 10.244.0.7:4190: connect: connection refused", http.StatusServiceUnavailable)
		default:
			send(w, request("1:1", "/after", 200)[0])
			<-r.Context().Done()
		}
	})
	r := start(t, Options{Target: "deploy/web", Namespace: "emojivoto"}, webCluster(webPod("web-1", true)), api)
	waitFor(t, "the event after the reconnect", &r.out, func(s string) bool { return strings.Contains(s, ":path=/after") })
	r.stop(t)
	got := lines(r.out.String())
	if len(got) != 2 || !strings.Contains(got[0], ":path=/before") {
		t.Errorf("want /before then /after once each:\n%s", r.out.String())
	}
	notices := r.errOut.String()
	for _, want := range []string{
		"meshstat tap: pod emojivoto/web-1: tap stream ended: the proxy closed it; retrying in 10ms",
		"pod emojivoto/web-1: tap port 4190: HTTP 503: error trying to reach service: dial tcp 10.244.0.7:4190: connect: connection refused; retrying in 20ms",
		"pod emojivoto/web-1: tap stream reopened",
	} {
		if !strings.Contains(notices, want) {
			t.Errorf("notices lack %q:\n%s", want, notices)
		}
	}
}

// --show-query asks each proxy for query values with query=1; without
// it the parameter is not sent (the proxy redacts them).
func TestShowQuery(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("web-1", func(w http.ResponseWriter, r *http.Request, _ int) {
		send(w, request("0:1", "/cb?code=abc", 200)...)
		<-r.Context().Done()
	})
	r := start(t, Options{Target: "deploy/web", Namespace: "emojivoto", ShowQuery: true}, webCluster(webPod("web-1", true)), api)
	waitFor(t, "three lines", &r.out, func(s string) bool { return strings.Count(s, "\n") == 3 })
	r.stop(t)
	api.mu.Lock()
	defer api.mu.Unlock()
	for _, q := range api.queries {
		if q != "query=1" {
			t.Errorf("tap query %q, want query=1", q)
		}
	}
	if len(api.queries) == 0 {
		t.Error("no tap request")
	}
}

func TestFollowsPodsThatComeAndGo(t *testing.T) {
	api := newFakeAPI(t)
	web1Gone := make(chan struct{})
	api.handle("web-1", func(w http.ResponseWriter, r *http.Request, attempt int) {
		send(w, request(fmt.Sprintf("%d:1", attempt), "/one", 200)[0])
		<-r.Context().Done()
		if attempt == 0 {
			close(web1Gone)
		}
	})
	api.handle("web-2", func(w http.ResponseWriter, r *http.Request, _ int) {
		send(w, request("0:1", "/two", 200)[0])
		<-r.Context().Done()
	})
	cs := webCluster(webPod("web-1", true), webPod("web-3", false))
	r := start(t, Options{Target: "deploy/web", Namespace: "emojivoto"}, cs, api)
	waitFor(t, "web-1's event", &r.out, func(s string) bool { return strings.Contains(s, ":path=/one") })

	ctx := context.Background()
	if _, err := cs.CoreV1().Pods("emojivoto").Create(ctx, webPod("web-2", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web-2's event", &r.out, func(s string) bool { return strings.Contains(s, ":path=/two") })

	if err := cs.CoreV1().Pods("emojivoto").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-web1Gone:
	case <-time.After(10 * time.Second):
		t.Fatal("web-1's stream stayed open after the pod was deleted")
	}
	if err := cs.CoreV1().Pods("emojivoto").Delete(ctx, "web-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the notice that no pod is left", &r.errOut, func(s string) bool {
		return strings.Contains(s, "meshstat tap: pod web-2 is gone; no running meshed pod left: waiting for new ones (Ctrl-C to stop)")
	})
	r.stop(t)
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.attempts["emojivoto/web-3"] != 0 {
		t.Errorf("tapped web-3, which has no proxy")
	}
	if api.attempts["emojivoto/web-1"] != 1 {
		t.Errorf("web-1 tapped %d times, want once", api.attempts["emojivoto/web-1"])
	}
}

func TestJSONAndDroppedNotice(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("web-1", func(w http.ResponseWriter, r *http.Request, _ int) {
		send(w, contract.TapEvent{Type: contract.TapDropped, Dropped: 7}, request("0:1", "/x", 200)[0])
		<-r.Context().Done()
	})
	for _, output := range []string{OutputLine, OutputJSON} {
		r := start(t, Options{Target: "deploy/web", Namespace: "emojivoto", Output: output, MaxRPS: 3}, webCluster(webPod("web-1", true)), api)
		waitFor(t, "the request", &r.out, func(s string) bool { return strings.Contains(s, "/x") })
		r.stop(t)
		if output == OutputJSON {
			got := lines(r.out.String())
			if len(got) != 2 || got[0] != `{"namespace":"emojivoto","pod":"web-1","type":"dropped","ts":"0001-01-01T00:00:00Z","dropped":7}` ||
				!strings.HasPrefix(got[1], `{"namespace":"emojivoto","pod":"web-1","type":"req"`) {
				t.Errorf("json lines:\n%s", r.out.String())
			}
			continue
		}
		if want := "meshstat tap: pod emojivoto/web-1: 7 requests not shown (over --max-rps 3, or output read too slowly)\n"; r.errOut.String() != want {
			t.Errorf("notice %q, want %q", r.errOut.String(), want)
		}
		if strings.Contains(r.out.String(), "dropped") {
			t.Errorf("the notice belongs on errOut:\n%s", r.out.String())
		}
	}
}

func TestErrors(t *testing.T) {
	api := newFakeAPI(t)
	forbidden := newFakeAPI(t)
	forbidden.handle("web-1", func(w http.ResponseWriter, _ *http.Request, _ int) {
		http.Error(w, `{"kind":"Status","message":"pods \"web-1\" is forbidden: User \"viewer\" cannot get resource \"pods/proxy\""}`, http.StatusForbidden)
	})
	for _, c := range []struct {
		name string
		o    Options
		cs   *fake.Clientset
		api  *fakeAPI
		want string
	}{
		{"unknown name", Options{Target: "deploy/nope", Namespace: "emojivoto"}, webCluster(webPod("web-1", true)), api,
			`deployment "nope" not found in namespace "emojivoto"`},
		{"no meshed pods", Options{Target: "deploy/web", Namespace: "emojivoto"}, webCluster(webPod("web-1", false)), api,
			`no meshed pods: deploy/web in namespace "emojivoto" has 1 running pods, none with the conduit-proxy container: inject it with conduit-inject`},
		{"no running pods", Options{Target: "deploy/web", Namespace: "emojivoto"}, webCluster(), api,
			`no meshed pods: deploy/web in namespace "emojivoto" has no running pods`},
		{"forbidden", Options{Target: "deploy/web", Namespace: "emojivoto"}, webCluster(webPod("web-1", true)), forbidden,
			"forbidden: you may not get pods/proxy in namespace emojivoto (tapping pod web-1): bind the read-only conduit-meshstat ClusterRole"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			err := Run(ctx, c.o, kube.Client{CS: c.cs, Host: c.api.URL}, c.api.opener(), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
			if ctx.Err() != nil {
				t.Errorf("Run waited for the timeout instead of failing")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Target: "web"}, `resource "web": want KIND/NAME`},
		{Options{Target: "svc/web"}, `unknown kind "svc"`},
		{Options{Target: "deploy/web", MaxRPS: -1}, "--max-rps -1"},
		{Options{Target: "deploy/web", PathPrefix: "api"}, `--path "api": a path prefix starts with /`},
		{Options{Target: "deploy/web", Method: "GET /"}, `--method "GET /"`},
		{Options{Target: "deploy/web", Output: "table"}, `-o "table"`},
	} {
		if err := c.o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.o, err, c.want)
		}
	}
}
