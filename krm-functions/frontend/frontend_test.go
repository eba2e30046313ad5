package frontend

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/kio"

	"github.com/conduitmesh/conduit/krm-functions/inject"
)

// FuzzRun feeds arbitrary input to the filter: it never panics, a failure
// writes nothing to stdout, and a success is idempotent in content. (The
// YAML encoder may move a stray comment on a second pass over arbitrary
// input; byte-for-byte idempotency is asserted over the golden cases.)
func FuzzRun(f *testing.F) {
	seeds, _ := filepath.Glob("../cmd/conduit-inject/testdata/*/*/input.yaml")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [1, 2]\n"))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, ports: [{containerPort: x}]}]}\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		var out, errOut bytes.Buffer
		err := Run(Options{}, bytes.NewReader(input), &out, &errOut)
		if err != nil {
			if out.Len() > 0 && !isResourceList(input) {
				t.Fatalf("failed (%v) but wrote:\n%s", err, out.String())
			}
			return
		}
		first := out.String()
		out.Reset()
		if err := Run(Options{}, strings.NewReader(first), &out, &errOut); err != nil {
			t.Fatalf("injected output does not inject again: %v\n%s", err, first)
		}
		want, err := content(first)
		if err != nil {
			return // not representable as JSON (e.g. duplicate keys): no content to compare
		}
		if got, err := content(out.String()); err != nil || got != want {
			t.Fatalf("not idempotent (%v):\n%s\n--- first\n%s", err, out.String(), first)
		}
	})
}

// content is a YAML stream's documents as JSON, without comments or styles.
func content(stream string) (string, error) {
	nodes, err := (&kio.ByteReader{Reader: strings.NewReader(stream), OmitReaderAnnotations: true}).Read()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, n := range nodes {
		j, err := n.MarshalJSON()
		if err != nil {
			return "", err
		}
		b.Write(j)
	}
	return b.String(), nil
}

func TestRunRejectsStdinTwice(t *testing.T) {
	err := Run(Options{Inputs: []string{"-", "-"}}, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "only once") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunReadsDirectoriesInOrder(t *testing.T) {
	dir := t.TempDir()
	for i, name := range []string{"b.yaml", "a.yml", "notes.txt", "sub/c.yaml"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n", strings.TrimSuffix(filepath.Base(name), filepath.Ext(name)))
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err, i)
		}
	}
	var out bytes.Buffer
	if err := Run(Options{Inputs: []string{dir}}, nil, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out.String(), "\n") {
		if n, ok := strings.CutPrefix(line, "  name: "); ok {
			names = append(names, n)
		}
	}
	if got := strings.Join(names, ","); got != "a,b,c" {
		t.Errorf("read %s, want a,b,c (yaml files in lexical order, others ignored)", got)
	}
}

func TestRunErrorsAreInvalid(t *testing.T) {
	var out bytes.Buffer
	err := Run(Options{}, strings.NewReader("kind: [\n"), &out, &bytes.Buffer{})
	if !errors.Is(err, ErrInvalid) || out.Len() != 0 {
		t.Fatalf("err = %v, stdout %q", err, out.String())
	}
}

// deployments is a ResourceList of n Deployments, as kustomize sends it.
func deployments(n int) []byte {
	var b bytes.Buffer
	b.WriteString("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n")
	for i := range n {
		fmt.Fprintf(&b, `- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: app-%d
    namespace: team-%d
    annotations:
      config.conduit.io/skip-outbound-ports: "3306"
      config.kubernetes.io/index: '%d'
  spec:
    replicas: 2
    selector:
      matchLabels:
        app: app-%d
    template:
      metadata:
        labels:
          app: app-%d
      spec:
        containers:
        - name: app
          image: registry.example/app:v1
          ports:
          - containerPort: 8080
            name: http
`, i, i%10, i, i, i)
	}
	return b.Bytes()
}

// BenchmarkInject10kDeployments runs the KRM function end to end, parsing
// and printing included, over a ResourceList of 10,000 Deployments.
func BenchmarkInject10kDeployments(b *testing.B) {
	input := deployments(10000)
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	for b.Loop() {
		var out bytes.Buffer
		if err := Run(Options{}, bytes.NewReader(input), &out, &bytes.Buffer{}); err != nil {
			b.Fatal(err)
		}
		if c := bytes.Count(out.Bytes(), []byte("- name: conduit-init\n")); c != 10000 {
			b.Fatalf("injected %d deployments", c)
		}
	}
}

// BenchmarkInjectLibrary10kDeployments is the injection alone, on parsed
// nodes: what conduit-inject adds to the YAML reading and writing that
// every KRM function pays.
func BenchmarkInjectLibrary10kDeployments(b *testing.B) {
	items, err := (&kio.ByteReadWriter{Reader: bytes.NewReader(deployments(10000)), KeepReaderAnnotations: true}).Read()
	if err != nil {
		b.Fatal(err)
	}
	inj, err := inject.New(inject.Defaults())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		out, results := inj.Inject(items)
		if len(out) != 10000 || inject.HasErrors(results) {
			b.Fatalf("%d items, %v", len(out), results)
		}
	}
}
