package soak

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
