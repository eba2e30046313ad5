package generator

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/conduitmesh/conduit/pkg/contract"
)

func TestRenderTwiceIsByteIdentical(t *testing.T) {
	a, b := mustRender(t, validConfig()), mustRender(t, validConfig())
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two renders of one config differ")
	}
	dirA, dirB := filepath.Join(t.TempDir(), "base"), filepath.Join(t.TempDir(), "base")
	if err := WriteDir(dirA, a); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(dirB, b); err != nil {
		t.Fatal(err)
	}
	for _, f := range a {
		x, _ := os.ReadFile(filepath.Join(dirA, f.Path))
		y, _ := os.ReadFile(filepath.Join(dirB, f.Path))
		if !bytes.Equal(x, y) || !bytes.Equal(x, f.Data) {
			t.Errorf("%s differs between two writes", f.Path)
		}
	}
	if diff, err := Diff(dirA, b); err != nil || len(diff) != 0 {
		t.Errorf("Diff of identical trees: %v %v", diff, err)
	}
	// Nothing that changes between runs or must stay secret.
	for _, f := range a {
		for _, bad := range []string{"creationTimestamp", "BEGIN ", "PRIVATE KEY", "status:", "checksum"} {
			if bytes.Contains(f.Data, []byte(bad)) {
				t.Errorf("%s contains %q", f.Path, bad)
			}
		}
	}
}

// TestBaseIsUpToDate fails when base/ differs from what
// generator/conduit.yaml renders: run `make manifests`.
func TestBaseIsUpToDate(t *testing.T) {
	c, err := Load("conduit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Render(c)
	if err != nil {
		t.Fatalf("conduit.yaml: %v", err)
	}
	diff, err := Diff("../base", files)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Errorf("base/ is stale; run `make manifests`:\n  %s", strings.Join(diff, "\n  "))
	}
}

func TestDiffReportsMissingChangedAndExtra(t *testing.T) {
	files := mustRender(t, validConfig())
	dir := filepath.Join(t.TempDir(), "base")
	if err := WriteDir(dir, files); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "namespace-conduit.yaml"))
	os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("edited"), 0o644)
	os.WriteFile(filepath.Join(dir, "old.yaml"), []byte("x"), 0o644)
	diff, err := Diff(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"changed: kustomization.yaml", "extra:   old.yaml", "missing: namespace-conduit.yaml"}
	if !reflect.DeepEqual(diff, want) {
		t.Errorf("diff %q, want %q", diff, want)
	}
	// WriteDir replaces the whole tree: the extra file goes.
	if err := WriteDir(dir, files); err != nil {
		t.Fatal(err)
	}
	if diff, _ := Diff(dir, files); len(diff) != 0 {
		t.Errorf("after WriteDir: %v", diff)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("temporary dirs left: %v", entries)
	}
}

func TestOneFilePerObjectListedInKustomization(t *testing.T) {
	files := mustRender(t, validConfig())
	var kust string
	var objects []string
	for _, f := range files {
		switch {
		case f.Path == "kustomization.yaml":
			kust = string(f.Data)
		case strings.HasPrefix(f.Path, InjectorDir+"/"):
		default:
			ds := docs(t, string(f.Data))
			if len(ds) != 1 {
				t.Errorf("%s holds %d objects", f.Path, len(ds))
				continue
			}
			kind, name := get(ds[0], "kind").(string), get(ds[0], "metadata", "name").(string)
			if f.Path != strings.ToLower(kind)+"-"+name+".yaml" {
				t.Errorf("%s holds %s %s", f.Path, kind, name)
			}
			objects = append(objects, f.Path)
		}
	}
	k := docs(t, kust)[0]
	var listed []string
	for _, r := range get(k, "resources").([]any) {
		listed = append(listed, r.(string))
	}
	if !slices.Equal(listed, objects) {
		t.Errorf("kustomization lists %v, files %v", listed, objects)
	}
	kinds := strings.Join(objects, " ")
	for _, want := range []string{"namespace-conduit", "deployment-conduit-prometheus", "service-conduit-prometheus",
		"configmap-conduit-prometheus-config", "serviceaccount-conduit-prometheus", "clusterrole-conduit-prometheus",
		"clusterrolebinding-conduit-prometheus", "clusterrole-conduit-meshstat", "clusterrolebinding-conduit-meshstat-viewers"} {
		if !strings.Contains(kinds, want+".yaml") {
			t.Errorf("no %s", want)
		}
	}
}

func fileDoc(t *testing.T, files []File, path string) map[string]any {
	t.Helper()
	for _, f := range files {
		if f.Path == path {
			return docs(t, string(f.Data))[0]
		}
	}
	t.Fatalf("no %s", path)
	return nil
}

func TestRBACIsLeastPrivilege(t *testing.T) {
	files := mustRender(t, validConfig())
	rules := func(path string) []string {
		var out []string
		for _, r := range get(fileDoc(t, files, path), "rules").([]any) {
			rm := r.(map[string]any)
			line := ""
			for _, key := range []string{"apiGroups", "resources", "resourceNames", "verbs"} {
				line += key + "=" + strings.Join(asList(rm[key]), ",") + " "
			}
			out = append(out, strings.TrimSpace(line))
		}
		return out
	}
	wantProm := []string{"apiGroups= resources=pods resourceNames= verbs=list"}
	if got := rules("clusterrole-conduit-prometheus.yaml"); !slices.Equal(got, wantProm) {
		t.Errorf("prometheus rules %q", got)
	}
	wantMeshstat := []string{
		"apiGroups= resources=pods resourceNames= verbs=get,list,watch",
		"apiGroups=apps resources=daemonsets,deployments,statefulsets resourceNames= verbs=get,list,watch",
		"apiGroups=batch resources=jobs resourceNames= verbs=get,list,watch",
		"apiGroups= resources=pods/proxy resourceNames= verbs=get",
		"apiGroups= resources=services/proxy resourceNames=conduit-prometheus,conduit-prometheus:http,conduit-prometheus:9090 verbs=get",
	}
	if got := rules("clusterrole-conduit-meshstat.yaml"); !slices.Equal(got, wantMeshstat) {
		t.Errorf("meshstat rules\n%s", strings.Join(got, "\n"))
	}
	b := fileDoc(t, files, "clusterrolebinding-conduit-meshstat-viewers.yaml")
	if get(b, "subjects", 0, "kind") != "Group" || get(b, "subjects", 0, "name") != "conduit-meshstat-viewers" || get(b, "roleRef", "name") != "conduit-meshstat" {
		t.Errorf("meshstat binding %v", b)
	}
	// meshstat names this file in its permission errors.
	if fileDoc(t, files, contract.MeshstatBindingFile)["kind"] != "ClusterRoleBinding" {
		t.Errorf("%s is not the meshstat binding", contract.MeshstatBindingFile)
	}
	sa := fileDoc(t, files, "serviceaccount-conduit-prometheus.yaml")
	if get(sa, "automountServiceAccountToken") != false {
		t.Error("the service account should not mount its token by default")
	}
}

func asList(v any) []string {
	var out []string
	for _, x := range asAny(v) {
		out = append(out, x.(string))
	}
	return out
}

func asAny(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestPrometheusScrapesDiscoveredAdminPorts(t *testing.T) {
	c := validConfig()
	files := mustRender(t, c)
	cm := fileDoc(t, files, "configmap-conduit-prometheus-config.yaml")
	prom := docs(t, get(cm, "data", "prometheus.yml").(string))[0]
	if get(prom, "global", "scrape_interval") != "10s" {
		t.Errorf("scrape interval %v", get(prom, "global", "scrape_interval"))
	}
	job := get(prom, "scrape_configs", 0)
	if get(job, "honor_labels") != true || get(job, "metrics_path") != contract.AdminMetricsPath {
		t.Errorf("job %v", job)
	}
	if url := get(job, "http_sd_configs", 0, "url"); url != "http://127.0.0.1:9091/targets" {
		t.Errorf("discovery url %v", url)
	}
	d := fileDoc(t, files, "deployment-conduit-prometheus.yaml")
	containers := asAny(get(d, "spec", "template", "spec", "containers"))
	if len(containers) != 2 {
		t.Fatalf("%d containers", len(containers))
	}
	args := strings.Join(asList(get(containers[0], "args")), " ")
	for _, want := range []string{"--storage.tsdb.retention.time=6h", "--storage.tsdb.retention.size=1GB", "--web.listen-address=:9090"} {
		if !strings.Contains(args, want) {
			t.Errorf("prometheus args %q lack %q", args, want)
		}
	}
	if get(containers[0], "image") != testPrometheusImage || get(containers[1], "image") != testProxyImage {
		t.Errorf("images %v %v", get(containers[0], "image"), get(containers[1], "image"))
	}
	if cmd := asList(get(containers[1], "command")); !slices.Equal(cmd, []string{contract.DiscoveryBinaryPath}) {
		t.Errorf("discovery command %v", cmd)
	}
}

// TestNoNamespaceInArgs renders with a distinctive namespace and checks it
// appears only where kustomize's namespace field rewrites it.
func TestNoNamespaceInArgs(t *testing.T) {
	c := validConfig()
	c.Namespace = "zz-distinct-ns"
	for _, f := range mustRender(t, c) {
		for i, line := range strings.Split(string(f.Data), "\n") {
			if !strings.Contains(line, c.Namespace) {
				continue
			}
			trimmed := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
			switch {
			case trimmed == "namespace: "+c.Namespace:
			case trimmed == "name: "+c.Namespace && strings.HasPrefix(f.Path, "namespace-"):
			case trimmed == "controlPlaneNamespace: "+c.Namespace && strings.HasPrefix(f.Path, InjectorDir):
			case trimmed == "namespace-"+c.Namespace+".yaml" && f.Path == "kustomization.yaml":
			default:
				t.Errorf("%s:%d bakes the namespace in: %s", f.Path, i+1, line)
			}
		}
	}
}

func TestInjectorFunctionConfig(t *testing.T) {
	c := validConfig()
	c.Proxy.SkipInboundPorts = "22"
	files := mustRender(t, c)
	fc := fileDoc(t, files, InjectorDir+"/proxy-injector.yaml")
	if get(fc, "apiVersion") != "conduit.io/v1alpha1" || get(fc, "kind") != "ProxyInjector" {
		t.Errorf("type %v %v", get(fc, "apiVersion"), get(fc, "kind"))
	}
	want := map[string]any{
		"image": testProxyImage, "controlPlaneNamespace": "conduit", "skipInboundPorts": "22",
		"opaquePorts": contract.DefaultOpaquePorts, "logLevel": "info", "nativeSidecar": true,
		"resources": map[string]any{"cpuRequest": "10m", "cpuLimit": "1", "memoryRequest": "20Mi", "memoryLimit": "250Mi"},
	}
	if got := get(fc, "spec"); !reflect.DeepEqual(got, want) {
		t.Errorf("spec\n got %v\nwant %v", got, want)
	}
	fn := get(fc, "metadata", "annotations", "config.kubernetes.io/function").(string)
	if !strings.Contains(fn, "exec:") || !strings.Contains(fn, "path: conduit-inject") {
		t.Errorf("function annotation %q", fn)
	}
}
