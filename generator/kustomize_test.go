package generator

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/conduitmesh/conduit/pkg/contract"
)

var (
	kustomizeOnce sync.Once
	kustomizeBin  string
	kustomizeErr  error
)

// kustomize runs the pinned kustomize (`go tool kustomize`) build on dir.
func kustomize(t *testing.T, dir string) string {
	t.Helper()
	kustomizeOnce.Do(func() {
		cmd := exec.Command("go", "tool", "-n", "kustomize")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		out, err := cmd.Output()
		kustomizeBin, kustomizeErr = strings.TrimSpace(string(out)), err
	})
	if kustomizeErr != nil {
		t.Fatalf("go tool -n kustomize: %v", kustomizeErr)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kustomizeBin, "build", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kustomize build %s: %v\n%s", dir, err, stderr.String())
	}
	return stdout.String()
}

// kustomizations are every kustomization this repository ships for the
// control plane.
var kustomizations = []string{
	"../base", "../base/injector",
	"../overlays/ha", "../overlays/external-prometheus", "../overlays/local", "../overlays/local/injector",
}

func TestEveryKustomizationBuilds(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(strings.TrimPrefix(dir, "../"), func(t *testing.T) {
			out := kustomize(t, dir)
			if len(docs(t, out)) == 0 {
				t.Errorf("%s builds to nothing", dir)
			}
		})
	}
}

func byKind(t *testing.T, stream, kind string) []map[string]any {
	var out []map[string]any
	for _, d := range docs(t, stream) {
		if d["kind"] == kind {
			out = append(out, d)
		}
	}
	return out
}

// TestEveryPodPassesRestricted checks each pod template against the Pod
// Security Standards' restricted profile (v1.32): non-root, no privilege
// escalation, all capabilities dropped (none added beyond
// NET_BIND_SERVICE), RuntimeDefault seccomp, no host namespaces, ports or
// paths, only the allowed volume types.
func TestEveryPodPassesRestricted(t *testing.T) {
	allowedVolumes := []string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
	for _, dir := range []string{"../base", "../overlays/ha", "../overlays/local"} {
		for _, d := range byKind(t, kustomize(t, dir), "Deployment") {
			name := dir + " " + get(d, "metadata", "name").(string)
			spec := get(d, "spec", "template", "spec")
			podSC := get(spec, "securityContext")
			for _, host := range []string{"hostNetwork", "hostPID", "hostIPC"} {
				if get(spec, host) == true {
					t.Errorf("%s: %s", name, host)
				}
			}
			for _, v := range asAny(get(spec, "volumes")) {
				vm := v.(map[string]any)
				for k := range vm {
					if k != "name" && !slices.Contains(allowedVolumes, k) {
						t.Errorf("%s: volume type %s", name, k)
					}
				}
			}
			podNonRoot := get(podSC, "runAsNonRoot") == true
			podSeccomp := get(podSC, "seccompProfile", "type")
			if u, ok := get(podSC, "runAsUser").(int); ok && u == 0 {
				t.Errorf("%s: pod runAsUser 0", name)
			}
			all := append(asAny(get(spec, "initContainers")), asAny(get(spec, "containers"))...)
			if len(all) == 0 {
				t.Errorf("%s: no containers", name)
			}
			for _, c := range all {
				cname := name + "/" + get(c, "name").(string)
				sc := get(c, "securityContext")
				if get(sc, "allowPrivilegeEscalation") != false {
					t.Errorf("%s: allowPrivilegeEscalation must be false", cname)
				}
				if get(sc, "privileged") == true {
					t.Errorf("%s: privileged", cname)
				}
				if !podNonRoot && get(sc, "runAsNonRoot") != true {
					t.Errorf("%s: runAsNonRoot unset", cname)
				}
				if u, ok := get(sc, "runAsUser").(int); ok && u == 0 {
					t.Errorf("%s: runAsUser 0", cname)
				}
				seccomp := get(sc, "seccompProfile", "type")
				if seccomp == nil {
					seccomp = podSeccomp
				}
				if seccomp != "RuntimeDefault" && seccomp != "Localhost" {
					t.Errorf("%s: seccomp %v", cname, seccomp)
				}
				if drop := asList(get(sc, "capabilities", "drop")); !slices.Contains(drop, "ALL") {
					t.Errorf("%s: capabilities.drop %v lacks ALL", cname, drop)
				}
				for _, add := range asList(get(sc, "capabilities", "add")) {
					if add != "NET_BIND_SERVICE" {
						t.Errorf("%s: adds capability %s", cname, add)
					}
				}
				for _, p := range asAny(get(c, "ports")) {
					if get(p, "hostPort") != nil {
						t.Errorf("%s: hostPort", cname)
					}
				}
				if get(c, "resources", "limits", "memory") == nil {
					t.Errorf("%s: no memory limit", cname)
				}
			}
		}
	}
}

// TestNamespaceOverlayMovesEverything builds base/ under an overlay that
// only sets `namespace: other`: every namespaced object, the Namespace
// itself and every ServiceAccount subject move, and "conduit" is left
// nowhere a namespace could hide.
func TestNamespaceOverlayMovesEverything(t *testing.T) {
	overlay := t.TempDir()
	base, _ := filepath.Abs("../base")
	rel, err := filepath.Rel(overlay, base)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(overlay, "kustomization.yaml"),
		[]byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: other\nresources:\n  - "+rel+"\n"), 0o644)
	out := kustomize(t, overlay)
	clusterScoped := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}
	for _, d := range docs(t, out) {
		kind, name := d["kind"].(string), get(d, "metadata", "name").(string)
		ns, _ := get(d, "metadata", "namespace").(string)
		switch {
		case kind == "Namespace":
			if name != "other" {
				t.Errorf("Namespace %s not renamed", name)
			}
		case clusterScoped[kind]:
			if ns != "" {
				t.Errorf("%s %s: namespace %q on a cluster-scoped object", kind, name, ns)
			}
		case ns != "other":
			t.Errorf("%s %s in namespace %q", kind, name, ns)
		}
		for _, s := range asAny(get(d, "subjects")) {
			if get(s, "kind") == "ServiceAccount" && get(s, "namespace") != "other" {
				t.Errorf("%s %s: subject %v", kind, name, s)
			}
		}
	}
	// Any remaining "conduit" value must be a label value or a name prefix.
	for i, line := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		if strings.HasSuffix(trimmed, ": conduit") && trimmed != "app.kubernetes.io/part-of: conduit" {
			t.Errorf("line %d still says conduit: %s", i+1, line)
		}
		if strings.Contains(line, "conduit.svc") || strings.Contains(line, "namespace=conduit") {
			t.Errorf("line %d bakes the namespace: %s", i+1, line)
		}
	}
}

func TestHAOverlay(t *testing.T) {
	out := kustomize(t, "../overlays/ha")
	d := byKind(t, out, "Deployment")[0]
	if get(d, "spec", "replicas") != 2 {
		t.Errorf("replicas %v", get(d, "spec", "replicas"))
	}
	term := get(d, "spec", "template", "spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "podAffinityTerm")
	if get(term, "topologyKey") != "kubernetes.io/hostname" || get(term, "labelSelector", "matchLabels", "app.kubernetes.io/name") != PrometheusName {
		t.Errorf("anti-affinity %v", term)
	}
	pdbs := byKind(t, out, "PodDisruptionBudget")
	if len(pdbs) != 1 || get(pdbs[0], "spec", "minAvailable") != 1 ||
		get(pdbs[0], "spec", "selector", "matchLabels", "app.kubernetes.io/name") != PrometheusName {
		t.Errorf("PDBs %v", pdbs)
	}
	// The PDB's selector matches the pods it protects.
	if get(d, "spec", "template", "metadata", "labels", "app.kubernetes.io/name") != PrometheusName {
		t.Error("pod labels do not match the PDB selector")
	}
}

func TestExternalPrometheusOverlay(t *testing.T) {
	out := kustomize(t, "../overlays/external-prometheus")
	for _, d := range docs(t, out) {
		if strings.Contains(get(d, "metadata", "name").(string), "prometheus") {
			t.Errorf("bundled %s %s left", d["kind"], get(d, "metadata", "name"))
		}
	}
	roles := byKind(t, out, "ClusterRole")
	if len(roles) != 1 {
		t.Fatalf("%d ClusterRoles", len(roles))
	}
	rules := asAny(get(roles[0], "rules"))
	last := rules[len(rules)-1]
	if !slices.Equal(asList(get(last, "resources")), []string{"services/proxy"}) ||
		!slices.Equal(asList(get(last, "resourceNames")), []string{"prometheus", "prometheus:http", "prometheus:9090"}) {
		t.Errorf("meshstat's Prometheus rule %v", last)
	}
}

// TestLocalOverlayMatchesConfig checks that the local node's images are
// the tags of the images generator/conduit.yaml pins, never pulled.
func TestLocalOverlayMatchesConfig(t *testing.T) {
	c, err := Load("conduit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tagged := func(ref string) string { return repoOf(ref) + ":" + tagOf(ref) }
	out := kustomize(t, "../overlays/local")
	d := byKind(t, out, "Deployment")[0]
	containers := asAny(get(d, "spec", "template", "spec", "containers"))
	want := map[string]string{"prometheus": tagged(c.Prometheus.Image), "discovery": tagged(c.Proxy.Image)}
	for _, ctr := range containers {
		n := get(ctr, "name").(string)
		if get(ctr, "image") != want[n] || get(ctr, "imagePullPolicy") != "Never" {
			t.Errorf("%s: image %v pull %v, want %s Never", n, get(ctr, "image"), get(ctr, "imagePullPolicy"), want[n])
		}
	}
	inj := docs(t, kustomize(t, "../overlays/local/injector"))[0]
	if get(inj, "spec", "image") != tagged(c.Proxy.Image) {
		t.Errorf("local injector image %v, want %s", get(inj, "spec", "image"), tagged(c.Proxy.Image))
	}
	if get(inj, "spec", "controlPlaneNamespace") != contract.DefaultControlPlaneNamespace {
		t.Errorf("local injector namespace %v", get(inj, "spec", "controlPlaneNamespace"))
	}
}
