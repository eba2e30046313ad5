package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/fn/framework"
	"sigs.k8s.io/kustomize/kyaml/kio"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/conduitmesh/conduit/internal/testutil"
)

// A golden case is a folder with input.yaml, optional args (one flag a
// line; $CASE stands for the folder) and the expected want.yaml and
// want.stderr.
type goldenCase struct {
	name, dir string
	args      []string
}

func (c goldenCase) input() string { return filepath.Join(c.dir, "input.yaml") }

func loadCases(t testing.TB, root string) []goldenCase {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", root, "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases under testdata/%s: %v", root, err)
	}
	var cases []goldenCase
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			t.Fatal(err)
		}
		c := goldenCase{name: filepath.Base(d), dir: abs}
		if b, err := os.ReadFile(filepath.Join(d, "args")); err == nil {
			for _, a := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				c.args = append(c.args, strings.ReplaceAll(a, "$CASE", abs))
			}
		}
		cases = append(cases, c)
	}
	return cases
}

type result struct {
	stdout, stderr string
	code           int
}

func runInject(args []string, stdin []byte) result {
	var out, errOut bytes.Buffer
	code := run(args, bytes.NewReader(stdin), &out, &errOut)
	return result{out.String(), errOut.String(), code}
}

func TestGolden(t *testing.T) {
	for _, c := range loadCases(t, "cases") {
		t.Run(c.name, func(t *testing.T) {
			r := runInject(append(c.args, c.input()), nil)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			testutil.Golden(t, filepath.Join(c.dir, "want.yaml"), r.stdout)
			testutil.Golden(t, filepath.Join(c.dir, "want.stderr"), r.stderr)
		})
	}
}

func TestIdempotentAndDeterministic(t *testing.T) {
	for _, c := range loadCases(t, "cases") {
		t.Run(c.name, func(t *testing.T) {
			first := runInject(append(c.args, c.input()), nil)
			if first.code != 0 {
				t.Fatalf("exit %d: %s", first.code, first.stderr)
			}
			for i := 0; i < 3; i++ {
				if again := runInject(append(c.args, c.input()), nil); again.stdout != first.stdout {
					t.Fatalf("run %d differs from the first:\n%s\n---\n%s", i+2, again.stdout, first.stdout)
				}
			}
			twice := runInject(append(c.args, "-"), []byte(first.stdout))
			if twice.code != 0 || twice.stdout != first.stdout {
				t.Fatalf("injecting the output again changed it (exit %d, %s):\n%s\n--- first\n%s",
					twice.code, twice.stderr, twice.stdout, first.stdout)
			}
		})
	}
}

// TestChangedAnnotationUpdatesInjectedSpec re-injects injected output whose
// skip ports were edited: the init step follows the new annotation.
func TestChangedAnnotationUpdatesInjectedSpec(t *testing.T) {
	c := loadCases(t, "cases")[slices.IndexFunc(loadCases(t, "cases"), func(c goldenCase) bool { return c.name == "deployment" })]
	first := runInject([]string{c.input()}, nil)
	edited := strings.Replace(first.stdout, `skip-inbound-ports: "80,7777"`, `skip-inbound-ports: "9999"`, 1)
	if edited == first.stdout {
		t.Fatal("fixture lacks the skip-inbound-ports annotation")
	}
	again := runInject([]string{"-"}, []byte(edited))
	if again.code != 0 {
		t.Fatal(again.stderr)
	}
	if !strings.Contains(again.stdout, "--skip-inbound-ports=4190-4191,9999\n") {
		t.Errorf("the init step does not follow the edited annotation:\n%s", again.stdout)
	}
	if strings.Count(again.stdout, "name: conduit-init") != 1 || strings.Count(again.stdout, "- name: conduit-proxy\n        image:") != 1 {
		t.Errorf("re-injection duplicated containers:\n%s", again.stdout)
	}
	fresh := runInject([]string{"-"}, []byte(strings.Replace(readFile(t, c.input()), `"80,7777"`, `"9999"`, 1)))
	if again.stdout != fresh.stdout {
		t.Errorf("re-injecting edited output differs from injecting the edited source:\n%s\n---\n%s", again.stdout, fresh.stdout)
	}
}

func TestErrors(t *testing.T) {
	for _, c := range loadCases(t, "errors") {
		t.Run(c.name, func(t *testing.T) {
			r := runInject(append(c.args, c.input()), nil)
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			if r.stdout != "" {
				t.Errorf("wrote to stdout on error:\n%s", r.stdout)
			}
			testutil.Golden(t, filepath.Join(c.dir, "want.stderr"), strings.ReplaceAll(r.stderr, c.dir, "$CASE"))
		})
	}
}

// resourceList wraps a file's resources as kustomize and kpt send them.
func resourceList(t *testing.T, path string, functionConfig *yaml.RNode) []byte {
	t.Helper()
	r := &kio.ByteReader{Reader: strings.NewReader(readFile(t, path)), PreserveSeqIndent: true}
	items, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := kio.ByteWriter{Writer: &buf, KeepReaderAnnotations: true, WrappingKind: kio.ResourceListKind,
		WrappingAPIVersion: kio.ResourceListAPIVersion, FunctionConfig: functionConfig}
	if err := w.Write(items); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestFunctionMatchesFilter runs every case as a KRM function: the items
// that come back are the filter's output, byte for byte.
func TestFunctionMatchesFilter(t *testing.T) {
	for _, c := range loadCases(t, "cases") {
		t.Run(c.name, func(t *testing.T) {
			r := runInject(c.args, resourceList(t, c.input(), nil))
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			rw := &kio.ByteReadWriter{Reader: strings.NewReader(r.stdout)}
			items, err := rw.Read()
			if err != nil {
				t.Fatal(err)
			}
			for _, res := range resultsOf(t, r.stdout) {
				if res.Severity == framework.Error {
					t.Errorf("error result: %s", res.Message)
				}
			}
			in := &kio.ByteReader{Reader: strings.NewReader(readFile(t, c.input()))}
			if _, err := in.Read(); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			w := kio.ByteWriter{Writer: &got, WrappingKind: in.WrappingKind, WrappingAPIVersion: in.WrappingAPIVersion}
			if err := w.Write(items); err != nil {
				t.Fatal(err)
			}
			want := runInject(append(c.args, c.input()), nil).stdout
			if got.String() != want {
				t.Errorf("function output differs from filter output:\n%s\n--- filter\n%s", got.String(), want)
			}
		})
	}
}

func resultsOf(t *testing.T, resourceList string) framework.Results {
	t.Helper()
	var rl struct {
		Results framework.Results `yaml:"results"`
	}
	if err := yaml.Unmarshal([]byte(resourceList), &rl); err != nil {
		t.Fatal(err)
	}
	return rl.Results
}

// TestFunctionConfig configures the function the kpt and kustomize way,
// with the ResourceList's functionConfig instead of flags.
func TestFunctionConfig(t *testing.T) {
	for _, name := range []string{"config-file", "configmap-config"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "cases", name)
			fc, err := yaml.Parse(readFile(t, filepath.Join(dir, "config.yaml")))
			if err != nil {
				t.Fatal(err)
			}
			r := runInject(nil, resourceList(t, filepath.Join(dir, "input.yaml"), fc))
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			items, err := (&kio.ByteReadWriter{Reader: strings.NewReader(r.stdout)}).Read()
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := (kio.ByteWriter{Writer: &got}).Write(items); err != nil {
				t.Fatal(err)
			}
			if want := readFile(t, filepath.Join(dir, "want.yaml")); got.String() != want {
				t.Errorf("functionConfig gives other output than --config:\n%s\n--- want\n%s", got.String(), want)
			}
		})
	}
}

// TestFunctionErrors: a function with bad input exits non-zero and answers
// with error results and the items unchanged.
func TestFunctionErrors(t *testing.T) {
	for _, c := range loadCases(t, "errors") {
		if c.name == "malformed-yaml" {
			continue // not a ResourceList either; covered by TestErrors
		}
		t.Run(c.name, func(t *testing.T) {
			in := resourceList(t, c.input(), nil)
			r := runInject(c.args, in)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1", r.code)
			}
			res := resultsOf(t, r.stdout)
			if !slices.ContainsFunc(res, func(r *framework.Result) bool { return r.Severity == framework.Error }) {
				t.Errorf("no error result in:\n%s", r.stdout)
			}
			if !strings.Contains(r.stderr, "error") {
				t.Errorf("nothing on stderr for kustomize to show: %q", r.stderr)
			}
			if strings.Contains(r.stdout, "conduit-proxy") {
				t.Errorf("half-written output:\n%s", r.stdout)
			}
		})
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds conduit-inject and the pinned kustomize once per run.
func binaries(t *testing.T) (injector, kustomize string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "conduit-inject-test")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{".", "sigs.k8s.io/kustomize/kustomize/v5"} {
			cmd := exec.Command("go", "build", "-o", binDir+"/", pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = &buildError{pkg, err, out}
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "conduit-inject"), filepath.Join(binDir, "kustomize")
}

type buildError struct {
	pkg string
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "go build " + e.pkg + ": " + e.err.Error() + "\n" + string(e.out)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// kustomizeBuild runs the pinned kustomize on dir with conduit-inject on
// PATH, as Argo CD's repo-server would.
func kustomizeBuild(t *testing.T, dir string, extra ...string) (string, string, error) {
	t.Helper()
	injector, kustomize := binaries(t)
	cmd := exec.Command(kustomize, append([]string{"build"}, append(extra, dir)...)...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(injector)+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// kustomization lays out a kustomization over a case's input with
// conduit-inject as an exec transformer taking the case's flags.
func kustomization(t *testing.T, c goldenCase) string {
	t.Helper()
	dir := t.TempDir()
	input := readFile(t, c.input())
	if err := os.WriteFile(filepath.Join(dir, "input.yaml"), []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	transformer := `apiVersion: conduit.io/v1alpha1
kind: ProxyInjector
metadata:
  name: inject
  annotations:
    config.kubernetes.io/function: |
      exec:
        path: conduit-inject
        args: [` + strings.Join(quoteAll(c.args), ", ") + `]
`
	files := map[string]string{
		"inject.yaml":        transformer,
		"kustomization.yaml": "resources:\n- input.yaml\ntransformers:\n- inject.yaml\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconvQuote(s)
	}
	return out
}

func strconvQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// canonical re-encodes a YAML stream with sorted keys, the way kustomize
// prints resources, so kustomize's output and the filter's can be compared.
func canonical(t *testing.T, stream string) string {
	t.Helper()
	nodes, err := (&kio.ByteReader{Reader: strings.NewReader(stream), OmitReaderAnnotations: true}).Read()
	if err != nil {
		t.Fatalf("%v in:\n%s", err, stream)
	}
	var b strings.Builder
	for _, n := range nodes {
		j, err := n.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestKustomizeExecPlugin runs every case through the real pinned
// kustomize with --enable-alpha-plugins --enable-exec: the result is what
// the filter gives for kustomize's plain output (kustomize sorts keys, so
// both are compared with sorted keys).
func TestKustomizeExecPlugin(t *testing.T) {
	for _, c := range loadCases(t, "cases") {
		t.Run(c.name, func(t *testing.T) {
			dir := kustomization(t, c)
			withPlugin, stderr, err := kustomizeBuild(t, dir, "--enable-alpha-plugins", "--enable-exec")
			if err != nil {
				t.Fatalf("kustomize build: %v\n%s", err, stderr)
			}
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources:\n- input.yaml\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			plain, stderr, err := kustomizeBuild(t, dir)
			if err != nil {
				t.Fatalf("kustomize build: %v\n%s", err, stderr)
			}
			filtered := runInject(c.args, []byte(plain))
			if filtered.code != 0 {
				t.Fatalf("filter: %s", filtered.stderr)
			}
			if got, want := canonical(t, withPlugin), canonical(t, filtered.stdout); got != want {
				t.Errorf("kustomize with the exec plugin differs from kustomize | conduit-inject:\n%s\n--- filter\n%s", withPlugin, filtered.stdout)
			}
			if !strings.Contains(withPlugin, "conduit-proxy") {
				t.Errorf("nothing injected:\n%s", withPlugin)
			}
		})
	}
}

// TestKustomizeFailsOnBadInput: the exec plugin's errors fail the build.
func TestKustomizeFailsOnBadInput(t *testing.T) {
	for _, name := range []string{"bad-port-annotation", "bad-inject-value", "missing-template", "bad-flag-ports"} {
		t.Run(name, func(t *testing.T) {
			c := loadCases(t, "errors")[slices.IndexFunc(loadCases(t, "errors"), func(c goldenCase) bool { return c.name == name })]
			out, stderr, err := kustomizeBuild(t, kustomization(t, c), "--enable-alpha-plugins", "--enable-exec")
			if err == nil {
				t.Fatalf("kustomize build succeeded on bad input:\n%s", out)
			}
			want := strings.SplitN(strings.TrimPrefix(readFile(t, filepath.Join(c.dir, "want.stderr")), "conduit-inject: "), "\n", 2)[0]
			if !strings.Contains(stderr, strings.TrimPrefix(want, "error: ")) {
				t.Errorf("kustomize's error does not carry the injector's message %q:\n%s", want, stderr)
			}
		})
	}
}

// TestEmojivoto renders the demo app the one way it is rendered, with
// kustomize and the exec plugin, and checks the injected result.
func TestEmojivoto(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "examples", "emojivoto"))
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := kustomizeBuild(t, dir, "--enable-alpha-plugins", "--enable-exec")
	if err != nil {
		t.Fatalf("kustomize build: %v\n%s", err, stderr)
	}
	testutil.Golden(t, filepath.Join("testdata", "emojivoto.golden.yaml"), out)

	nodes, err := (&kio.ByteReader{Reader: strings.NewReader(out), OmitReaderAnnotations: true}).Read()
	if err != nil {
		t.Fatal(err)
	}
	var deployments []string
	for _, n := range nodes {
		if n.GetNamespace() != "emojivoto" && n.GetKind() != "Namespace" {
			t.Errorf("%s/%s is in namespace %q", n.GetKind(), n.GetName(), n.GetNamespace())
		}
		if n.GetKind() != "Deployment" {
			if s, _ := n.String(); strings.Contains(s, "conduit") {
				t.Errorf("%s/%s was changed:\n%s", n.GetKind(), n.GetName(), s)
			}
			continue
		}
		deployments = append(deployments, n.GetName())
		labels, _ := n.Pipe(yaml.Lookup("spec", "template", "metadata", "labels"))
		if got := labels.Field("conduit.io/proxy-deployment"); got == nil || got.Value.YNode().Value != n.GetName() {
			t.Errorf("%s: workload label missing", n.GetName())
		}
		inits, _ := n.Pipe(yaml.Lookup("spec", "template", "spec", "initContainers"))
		names, _ := inits.ElementValues("name")
		if !slices.Equal(names, []string{"conduit-init", "conduit-proxy"}) {
			t.Errorf("%s: init containers %v, want conduit-init then the native sidecar conduit-proxy", n.GetName(), names)
		}
		policy, _ := inits.Pipe(yaml.Lookup("[name=conduit-proxy]", "restartPolicy"))
		if policy == nil || policy.YNode().Value != "Always" {
			t.Errorf("%s: conduit-proxy is not a native sidecar", n.GetName())
		}
		env, _ := inits.Pipe(yaml.Lookup("[name=conduit-proxy]", "env", "[name=CONDUIT_WORKLOAD_NAME]", "value"))
		if env == nil || env.YNode().Value != n.GetName() {
			t.Errorf("%s: CONDUIT_WORKLOAD_NAME is not the deployment's name", n.GetName())
		}
	}
	slices.Sort(deployments)
	if want := []string{"emoji", "vote-bot", "voting", "web"}; !slices.Equal(deployments, want) {
		t.Errorf("deployments %v, want %v", deployments, want)
	}
}

// TestFunctionKeepsKustomizeAnnotations: the annotations kustomize puts on
// the items it sends come back unchanged, so kustomize can map them back.
func TestFunctionKeepsKustomizeAnnotations(t *testing.T) {
	in := `apiVersion: config.kubernetes.io/v1
kind: ResourceList
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: p
    annotations:
      config.kubernetes.io/index: '0'
      internal.config.kubernetes.io/index: '0'
      internal.config.kubernetes.io/annotations-migration-resource-id: '0'
      config.k8s.io/id: '1'
  spec:
    containers:
    - name: a
      image: a:v1
`
	r := runInject(nil, []byte(in))
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	for _, a := range []string{"config.kubernetes.io/index: '0'", "internal.config.kubernetes.io/index: '0'",
		"internal.config.kubernetes.io/annotations-migration-resource-id: '0'", "config.k8s.io/id: '1'"} {
		if !strings.Contains(r.stdout, a) {
			t.Errorf("lost %s:\n%s", a, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "- name: conduit-init") {
		t.Errorf("not injected:\n%s", r.stdout)
	}
}

// TestGeneratedFunctionConfig: the ProxyInjector the generator commits to
// base/injector is one conduit-inject accepts, field for field.
func TestGeneratedFunctionConfig(t *testing.T) {
	configs, err := filepath.Glob(filepath.Join("..", "..", "..", "base", "injector", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, path := range configs {
		if !strings.Contains(readFile(t, path), "kind: ProxyInjector") {
			continue
		}
		found = true
		r := runInject([]string{"--config", path, filepath.Join("testdata", "cases", "pod", "input.yaml")}, nil)
		if r.code != 0 || !strings.Contains(r.stdout, "name: conduit-proxy") {
			t.Errorf("%s: exit %d: %s", path, r.code, r.stderr)
		}
	}
	if !found {
		t.Fatal("no ProxyInjector in base/injector")
	}
}
