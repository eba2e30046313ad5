package cluster_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/conduitmesh/conduit/cluster"
)

const podWithPortName = `apiVersion: v1
kind: Pod
metadata:
  name: port-names
  namespace: default
spec:
  containers:
  - name: app
    image: conduit.local/pause:v1
    ports:
    - name: PORTNAME
      containerPort: 8080
`

// TestValidationDryRun checks that the validation control plane validates
// for real: a container port name over 15 characters is rejected by the API
// server, while the same pod with a short name passes.
func TestValidationDryRun(t *testing.T) {
	kubeconfig := cluster.StartValidation(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is required: %v", err)
	}
	apply := func(manifest string) (string, error) {
		cmd := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "--dry-run=server", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := apply(strings.Replace(podWithPortName, "PORTNAME", "http-admin", 1))
	if err != nil {
		t.Fatalf("valid pod rejected: %v\n%s", err, out)
	}
	if !strings.Contains(out, "serverside-applied (server dry run)") {
		t.Errorf("valid pod: want a server dry-run result, got %q", out)
	}

	out, err = apply(strings.Replace(podWithPortName, "PORTNAME", "a-much-too-long-port-name", 1))
	if err == nil {
		t.Fatalf("pod with a 25-character port name accepted:\n%s", out)
	}
	if !strings.Contains(out, "spec.containers[0].ports[0].name") || !strings.Contains(out, "15") {
		t.Errorf("rejection should name the field and the 15-character limit, got:\n%s", out)
	}
}
