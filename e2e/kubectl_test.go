//go:build e2e

package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// kubectl runs kubectl with the kubeconfig and fails the test on error. An
// argument "<<" followed by a document feeds that document on stdin.
func kubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := kubectlErr(kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(stripStdin(args), " "), err, out)
	}
	return out
}

func kubectlErr(kubeconfig string, args ...string) (string, error) {
	var stdin string
	for i, a := range args {
		if a == "<<" && i+1 < len(args) {
			stdin = args[i+1]
			args = append(append([]string(nil), args[:i]...), args[i+2:]...)
			break
		}
	}
	cmd := exec.Command("/usr/bin/kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", kubectlCache}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func stripStdin(args []string) []string {
	for i, a := range args {
		if a == "<<" {
			return args[:i]
		}
	}
	return args
}
