package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/conduitmesh/conduit"

// Each top-level directory of the module is one of these.
const (
	shared    = "shared"    // imported by all, imports only shared
	component = "component" // imports shared and itself only
	harness   = "harness"   // drives components; may import anything
)

var kinds = map[string]string{
	"pkg": shared, "internal": shared,
	"krm-functions": component, "proxy": component, "generator": component,
	"meshstat": component, "discovery": component, "image": component,
	"examples": component,
	"demo":     harness, "e2e": harness, "bench": harness, "cluster": harness,
}

// testExceptions are the imports a component's tests make of another
// component or a harness: tests that check two components against each
// other. Production code has none. Keep this list short and say why.
var testExceptions = []struct{ importer, imported, why string }{
	{"generator", "image", "builds OCI layouts as `make image` does, to pin from them"},
	{"generator", "discovery", "runs Prometheus with the rendered config against the real discovery server"},
	{"generator", "cluster", "validates the rendered manifests on the harness's API server"},
	{"proxy/integration", "meshstat/tap", "checks the proxies' tap stream as meshstat prints it"},
}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// topDir returns the module-relative path of an import path inside the
// module and its top-level directory; ok is false outside the module.
func topDir(path string) (rel, top string, ok bool) {
	rel, ok = strings.CutPrefix(path, module+"/")
	if !ok {
		return "", "", false
	}
	rel = strings.TrimSuffix(rel, "_test")
	top, _, _ = strings.Cut(rel, "/")
	return rel, top, true
}

func under(rel, dir string) bool { return rel == dir || strings.HasPrefix(rel, dir+"/") }

// violation says why importer may not import imported, or "" if it may.
func violation(importer, imported string, test bool) string {
	from, fromTop, _ := topDir(importer)
	to, toTop, ok := topDir(imported)
	if !ok || fromTop == toTop {
		return ""
	}
	fromKind, toKind := kinds[fromTop], kinds[toTop]
	switch {
	case fromKind == "":
		return "the top-level directory " + fromTop + "/ is not classified in internal/archtest and ARCHITECTURE.md"
	case toKind == "":
		return "the top-level directory " + toTop + "/ is not classified in internal/archtest and ARCHITECTURE.md"
	case fromKind == harness || toKind == shared:
		return ""
	}
	if test {
		for _, e := range testExceptions {
			if under(from, e.importer) && under(to, e.imported) {
				return ""
			}
		}
	}
	return fromKind + " " + fromTop + "/ may import only its own packages, pkg/ and internal/, not the " + toKind + " " + toTop + "/"
}

func TestComponentsImportOnlyTheContractAndSharedPackages(t *testing.T) {
	// -tags e2e: the end-to-end tests' files count too.
	cmd := exec.Command("go", "list", "-e", "-tags", "e2e", "-json=ImportPath,Imports,TestImports,XTestImports", module+"/...")
	cmd.Dir = "../.."
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		for _, imp := range p.Imports {
			if why := violation(p.ImportPath, imp, false); why != "" {
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
			}
		}
		for _, imp := range slices.Concat(p.TestImports, p.XTestImports) {
			if why := violation(p.ImportPath, imp, true); why != "" {
				t.Errorf("%s (its tests) imports %s: %s", p.ImportPath, imp, why)
			}
		}
	}
	if n < 20 {
		t.Fatalf("go list found only %d packages", n)
	}
}

func TestViolation(t *testing.T) {
	for _, c := range []struct {
		from, to string
		test     bool
		bad      bool
	}{
		{"proxy/internal/app", "pkg/contract", false, false},
		{"proxy/internal/app", "proxy/internal/conn", false, false},
		{"proxy/internal/app", "meshstat/tap", false, true},
		{"generator", "image", false, true},
		{"generator", "image", true, false},
		{"proxy/integration", "meshstat/tap", true, false},
		{"proxy/internal/tap", "meshstat/tap", true, true},
		{"meshstat/tap", "internal/testutil", true, false},
		{"pkg/contract", "proxy/internal/app", false, true},
		{"demo", "cluster", false, false},
		{"e2e", "proxy/internal/app", true, false},
		{"newdir/x", "pkg/contract", false, true},
		{"proxy", "github.com/other/module", false, false},
	} {
		to := c.to
		if !strings.Contains(to, ".") {
			to = module + "/" + to
		}
		if got := violation(module+"/"+c.from, to, c.test) != ""; got != c.bad {
			t.Errorf("violation(%s, %s, test=%v) = %v, want %v", c.from, c.to, c.test, got, c.bad)
		}
	}
}
