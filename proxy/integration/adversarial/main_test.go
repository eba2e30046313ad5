// Package adversarial attacks the proxy as a hostile client, a hostile or
// failing upstream and a failing network would, with real programs in
// network namespaces (root; skipped without root unless CI is set). Each
// file is one class of attack; each test failed on the proxy before the
// fix it guards.
package adversarial

import (
	"os"
	"testing"

	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// binaries builds conduit-proxy and conduit-init once per test run.
func binaries(t *testing.T) meshtest.Binaries { return meshtest.SharedBinaries(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	meshtest.RemoveSharedBinaries()
	os.Exit(code)
}
