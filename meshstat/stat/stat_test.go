package stat

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/meshstat/prom"
	"github.com/conduitmesh/conduit/meshstat/promql"
	"github.com/conduitmesh/conduit/pkg/contract"
)

func opts(kind string, mod ...func(*Options)) Options {
	o := Options{Kind: kind, Namespace: "emojivoto", Window: DefaultWindow, Output: OutputTable}
	for _, m := range mod {
		m(&o)
	}
	return o
}

// Each flag combination issues the PromQL in its golden file.
func TestQueriesPerFlagCombination(t *testing.T) {
	cases := map[string]Options{
		"deploy":             opts("deploy"),
		"deploy-name":        opts("deployment", func(o *Options) { o.Name = "web" }),
		"deploy-selector":    opts("deploy", func(o *Options) { o.LabelSelector = "tier=web" }),
		"deploy-all-ns":      opts("deploy", func(o *Options) { o.Namespace, o.AllNamespaces = "", true }),
		"deploy-window":      opts("deploy", func(o *Options) { o.Window = "5m" }),
		"deploy-to-svc":      opts("deploy", func(o *Options) { o.Name, o.To = "web", "svc/voting-svc" }),
		"deploy-to-workload": opts("deploy", func(o *Options) { o.Name, o.To = "web", "deploy/voting" }),
		"deploy-from":        opts("deploy", func(o *Options) { o.From = "deploy/web" }),
		"job":                opts("job"),
		"sts":                opts("sts"),
		"ds-name":            opts("ds", func(o *Options) { o.Name = "agent" }),
		"pod":                opts("po"),
		"ns":                 opts("ns"),
		"ns-all":             opts("namespaces", func(o *Options) { o.Namespace, o.AllNamespaces = "", true }),
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			p := newFakeProm(t, nil)
			if _, err := Rows(context.Background(), o, fakeKube(emojivoto()...), p.client(t)); err != nil {
				t.Fatal(err)
			}
			golden(t, "queries/"+name+".golden", p.queries())
		})
	}
}

// Known answers from a fake Prometheus become the figures of the right
// rows; a workload with no traffic shows "-".
func TestRowsFromPrometheusAnswers(t *testing.T) {
	s := promql.Scope{
		Direction: contract.DirectionInbound, NameLabel: "deployment", Namespaces: []string{"emojivoto"},
		GroupBy: []string{"namespace", "deployment"}, Window: "1m",
	}
	web := map[string]string{"namespace": "emojivoto", "deployment": "web"}
	bot := map[string]string{"namespace": "emojivoto", "deployment": "vote-bot"}
	legacy := map[string]string{"namespace": "emojivoto", "deployment": "legacy"}
	voting := map[string]string{"namespace": "emojivoto", "deployment": "voting"}
	with := func(m map[string]string, k, v string) map[string]string {
		c := map[string]string{k: v}
		for a, b := range m {
			c[a] = b
		}
		return c
	}
	answers := map[string]string{
		s.Responses(): vector(
			sample(with(web, "classification", "success"), "18"),
			sample(with(web, "classification", "failure"), "2"),
			sample(with(voting, "classification", "success"), "0.75"),
			sample(with(voting, "classification", "failure"), "0.25"),
			// a deployment the API does not list is ignored
			sample(map[string]string{"namespace": "emojivoto", "deployment": "gone", "classification": "success"}, "5"),
		),
		s.LatencyQuantile(0.5):  vector(sample(web, "0.5"), sample(voting, "NaN")),
		s.LatencyQuantile(0.95): vector(sample(web, "4.75"), sample(voting, "12.4")),
		s.LatencyQuantile(0.99): vector(sample(web, "9.95"), sample(voting, "1234.5")),
		// vote-bot is idle: zero connections and bytes print "-"; legacy
		// speaks only opaque TCP: its figures stay.
		s.TCPConnections(): vector(sample(web, "3"), sample(voting, "1"), sample(bot, "0"), sample(legacy, "0")),
		s.TCPReadBytes():   vector(sample(web, "1536"), sample(voting, "100"), sample(bot, "0"), sample(legacy, "10")),
		s.TCPWriteBytes():  vector(sample(web, "3145728"), sample(voting, "0"), sample(bot, "0"), sample(legacy, "0")),
	}
	p := newFakeProm(t, answers)
	rows, err := Rows(context.Background(), opts("deploy"), fakeKube(emojivoto()...), p.client(t))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Row{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	if len(rows) != 4 {
		t.Fatalf("got %d rows, want legacy, vote-bot, voting, web: %+v", len(rows), rows)
	}
	w := byName["web"]
	if w.MeshedPods != 2 || w.RunningPods != 2 || *w.SuccessRate != 0.9 || *w.RPS != 20 || *w.LatencyMsP50 != 0.5 || *w.TCPConnections != 3 {
		t.Errorf("web: %+v", w)
	}
	if v := byName["voting"]; v.LatencyMsP50 != nil || *v.SuccessRate != 0.75 {
		t.Errorf("voting: NaN p50 must be unset, success 0.75: %+v", v)
	}
	if b := byName["vote-bot"]; b.SuccessRate != nil || b.RPS != nil || b.TCPConnections != nil || b.MeshedPods != 1 {
		t.Errorf("vote-bot has no traffic: %+v", b)
	}
	if l := byName["legacy"]; l.MeshedPods != 0 || l.RunningPods != 1 || l.RPS != nil || *l.TCPConnections != 0 || *l.ReadBytesPerSec != 10 {
		t.Errorf("legacy: %+v", l)
	}
	for _, out := range []string{OutputTable, OutputWide, OutputJSON} {
		var b bytes.Buffer
		if err := Write(&b, rows, out, false); err != nil {
			t.Fatal(err)
		}
		golden(t, "output/deploy."+out, b.String())
	}
	var b bytes.Buffer
	if err := Write(&b, rows, OutputTable, true); err != nil {
		t.Fatal(err)
	}
	golden(t, "output/deploy-all-namespaces.table", b.String())
}

func TestFormatMs(t *testing.T) {
	for in, want := range map[float64]string{0.04: "0ms", 0.5: "0.5ms", 1: "1ms", 2.46: "2.5ms", 9.94: "9.9ms", 10: "10ms", 35.6: "36ms", 1234.5: "1235ms"} {
		if got := FormatMs(in); got != want {
			t.Errorf("FormatMs(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0: "0B/s", 512.4: "512B/s", 1536: "1.5KiB/s", 3145728: "3.0MiB/s"} {
		if got := FormatByteRate(in); got != want {
			t.Errorf("FormatByteRate(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{opts("svc"), `unknown kind "svc": use one of deploy, sts, ds, job, pod, ns`},
		{opts("deploy", func(o *Options) { o.AllNamespaces = true }), "-n emojivoto and -A: use one of them"},
		{opts("deploy", func(o *Options) { o.Window = "1 minute" }), `-t "1 minute": want a Prometheus duration`},
		{opts("deploy", func(o *Options) { o.Window = "0s" }), `-t "0s": the window must be at least 1s`},
		{opts("deploy", func(o *Options) { o.Output = "yaml" }), `-o "yaml": want table, wide or json`},
		{opts("deploy", func(o *Options) { o.From, o.To = "deploy/a", "deploy/b" }), "--from and --to: use one of them"},
		{opts("deploy", func(o *Options) { o.To = "web" }), `--to: resource "web": want KIND/NAME`},
		{opts("deploy", func(o *Options) { o.To = "cm/x" }), `--to: resource "cm/x": unknown kind "cm"`},
		{opts("deploy", func(o *Options) { o.Namespace, o.AllNamespaces, o.To = "", true, "svc/x" }), "--to names a resource in one namespace: use -n, not -A"},
		{opts("ns", func(o *Options) { o.From = "deploy/web" }), "--from is not supported for namespaces"},
		{opts("deploy", func(o *Options) { o.Name, o.LabelSelector = "web", "a=b" }), `NAME "web" and -l: use one of them`},
	} {
		err := c.o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.o, err, c.want)
		}
	}
	if err := opts("deploy", func(o *Options) { o.To = "svc/voting-svc" }).Validate(); err != nil {
		t.Errorf("valid options rejected: %v", err)
	}
}

func TestAPIErrors(t *testing.T) {
	p := newFakeProm(t, nil)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{opts("deploy", func(o *Options) { o.Name = "nope" }), `deployment "nope" not found in namespace "emojivoto": check the name, or the namespace with -n`},
		{opts("sts", func(o *Options) { o.Namespace = "other" }), `no statefulsets in namespace "other": pick another namespace with -n, or -A for all`},
		{opts("deploy", func(o *Options) { o.LabelSelector = "tier=none" }), `no deployments matching "tier=none" in namespace "emojivoto"`},
		{opts("deploy", func(o *Options) { o.Name, o.To = "web", "deploy/vote-bot" }), `--to deploy/vote-bot: no Service in namespace "emojivoto" selects the pods of deployment "vote-bot"`},
		{opts("deploy", func(o *Options) { o.From = "svc/web-svc" }), "--from svc/web-svc: a Service sends no traffic"},
	} {
		_, err := Rows(context.Background(), c.o, fakeKube(emojivoto()...), p.client(t))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.o, err, c.want)
		}
	}
}

// The queries of one stat run are in flight at the same time: a fake
// Prometheus holds every answer until all seven have arrived.
func TestQueriesRunConcurrently(t *testing.T) {
	const want = 7
	var mu sync.Mutex
	arrived, all := 0, make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		if arrived == want {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(5 * time.Second):
			http.Error(w, "not all queries arrived together", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
	}))
	defer srv.Close()
	c, err := prom.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rows(context.Background(), opts("deploy"), fakeKube(emojivoto()...), c); err != nil {
		t.Fatalf("queries ran one after another: %v", err)
	}
}

func TestNamespacesNeedNoNamespaceColumn(t *testing.T) {
	p := newFakeProm(t, nil)
	var b bytes.Buffer
	o := opts("ns", func(o *Options) { o.Namespace, o.AllNamespaces = "", true })
	if err := Run(context.Background(), o, fakeKube(emojivoto()...), p.client(t), &b); err != nil {
		t.Fatal(err)
	}
	golden(t, "output/ns-all-namespaces.table", b.String())
}
