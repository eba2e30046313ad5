package integration

import (
	"os"
	"sync"
	"testing"

	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

var (
	buildOnce sync.Once
	buildDir  string
	built     meshtest.Binaries
	buildErr  error
)

// binaries builds conduit-proxy and conduit-init once per test run.
func binaries(t *testing.T) meshtest.Binaries {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "conduit-integration-")
		if buildErr == nil {
			built, buildErr = meshtest.Build(buildDir)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
