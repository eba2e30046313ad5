//go:build e2e

// Package e2e runs Conduit on the local single-node Kubernetes of package
// cluster. It is built only with the e2e tag (make e2e, and make test in CI):
// it needs root, the built Kubernetes binaries and the proxy image.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/cluster"
)

var (
	// repoRoot is the Conduit repository root (the tests run in e2e/).
	repoRoot string
	// kubectlCache is kubectl's --cache-dir for this run.
	kubectlCache string
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: the local node needs root")
		os.Exit(1)
	}
	root, err := cluster.FindSourceDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	repoRoot = root
	// kubectl's discovery cache goes here, not into the user's home.
	if kubectlCache, err = os.MkdirTemp("", "conduit-e2e-kubectl-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	// A node a developer brought up stays up; one this run started goes.
	wasUp := len(cluster.Leftovers(context.Background())) > 0
	code := m.Run()
	if !wasUp {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := cluster.Down(ctx, cluster.WithProgress(os.Stdout)); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: teardown:", err)
			code = 1
		}
	}
	os.RemoveAll(kubectlCache)
	os.Exit(code)
}

// logWriter sends progress lines to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
