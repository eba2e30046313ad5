package generator

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/conduitmesh/conduit/cluster"
)

// TestServerSideDryRun applies every overlay and base/ to a real API server
// (the local node's validation mode: etcd and kube-apiserver on loopback)
// with server-side dry-run, after creating the namespaces for real, so the
// API server validates every object and Pod Security admission judges the
// pods: the Prometheus pod must pass `restricted`, and a privileged pod in
// the same namespace must be refused (so the check is really on).
func TestServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	kubeconfig := cluster.StartValidation(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is required: %v", err)
	}
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, dir := range []string{"../base", "../overlays/ha", "../overlays/external-prometheus", "../overlays/local"} {
		t.Run(strings.TrimPrefix(dir, "../"), func(t *testing.T) {
			stream := kustomize(t, dir)
			var namespaces, pods []string
			for _, d := range docs(t, stream) {
				b, _ := yaml.Marshal(d)
				switch d["kind"] {
				case "Namespace":
					namespaces = append(namespaces, string(b))
				case "Deployment":
					pod := map[string]any{
						"apiVersion": "v1", "kind": "Pod",
						"metadata": map[string]any{"name": "dry-run-" + get(d, "metadata", "name").(string), "namespace": get(d, "metadata", "namespace")},
						"spec":     get(d, "spec", "template", "spec"),
					}
					pb, _ := yaml.Marshal(pod)
					pods = append(pods, string(pb))
				}
			}
			if out, err := run(strings.Join(namespaces, "---\n"), "apply", "--server-side", "-f", "-"); err != nil {
				t.Fatalf("create namespaces: %v\n%s", err, out)
			}
			out, err := run(stream, "apply", "--server-side", "--dry-run=server", "-f", "-")
			if err != nil {
				t.Fatalf("server-side dry-run of %s: %v\n%s", dir, err, out)
			}
			if n := strings.Count(out, "(server dry run)"); n != len(docs(t, stream)) {
				t.Errorf("%d objects dry-run, want %d:\n%s", n, len(docs(t, stream)), out)
			}
			for _, pod := range pods {
				if out, err := run(pod, "apply", "--server-side", "--dry-run=server", "-f", "-"); err != nil || strings.Contains(out, "Warning") {
					t.Errorf("pod of %s refused or warned under Pod Security restricted: %v\n%s", dir, err, out)
				}
			}
		})
	}

	// The control-plane namespace enforces restricted: a privileged pod is
	// refused, naming the profile.
	var bad bytes.Buffer
	bad.WriteString("apiVersion: v1\nkind: Pod\nmetadata:\n  name: privileged\n  namespace: conduit\nspec:\n  containers:\n  - name: c\n    image: ghcr.io/conduitmesh/x:v1\n    securityContext:\n      privileged: true\n")
	out, err := run(bad.String(), "apply", "--server-side", "--dry-run=server", "-f", "-")
	if err == nil || !strings.Contains(out, `violates PodSecurity "restricted`) {
		t.Errorf("privileged pod in the control-plane namespace: %v\n%s", err, out)
	}
}
