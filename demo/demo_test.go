package demo

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadyCount(t *testing.T) {
	pods := `{"items":[
	 {"metadata":{"name":"a"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}},
	 {"metadata":{"name":"b"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"False"}]}},
	 {"metadata":{"name":"c"},"status":{"phase":"Pending"}},
	 {"metadata":{"name":"d"},"status":{"phase":"Succeeded","conditions":[{"type":"Ready","status":"False"}]}}]}`
	ready, total, err := readyCount([]byte(pods))
	if err != nil || ready != 1 || total != 3 {
		t.Fatalf("readyCount = %d/%d, %v; want 1/3 (a finished pod does not count)", ready, total, err)
	}
	if _, _, err := readyCount([]byte("not json")); err == nil {
		t.Error("bad JSON gave no error")
	}
}

func TestHasRates(t *testing.T) {
	rows := `[{"name":"emoji","rps":2},{"name":"voting","rps":1.5},{"name":"web","rps":0},{"name":"vote-bot","rps":null}]`
	if hasRates([]byte(rows), "emoji", "voting", "web") {
		t.Error("web has no traffic yet, but hasRates said it had")
	}
	if !hasRates([]byte(rows), "emoji", "voting") {
		t.Error("emoji and voting have traffic")
	}
	if hasRates([]byte("oops"), "emoji") {
		t.Error("bad JSON counted as traffic")
	}
}

func TestHasFailures(t *testing.T) {
	rows := `[{"name":"emoji","rps":2,"success_rate":1},{"name":"voting","rps":1.5,"success_rate":0.9},{"name":"web","rps":1,"success_rate":1},{"name":"vote-bot","rps":null,"success_rate":null}]`
	if hasFailures([]byte(rows), "voting", "web") {
		t.Error("web has not failed yet, but hasFailures said it had")
	}
	if !hasFailures([]byte(rows), "voting") {
		t.Error("voting is at 90% success")
	}
	if hasFailures([]byte(rows), "vote-bot") {
		t.Error("a row with no success rate counted as failing")
	}
}

func TestIndentPrefixesEveryLine(t *testing.T) {
	var b bytes.Buffer
	w := indent(&b)
	for _, s := range []string{"one\ntw", "o\n", "three\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if want := "    one\n    two\n    three\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestRenderInjectsEmojivoto(t *testing.T) {
	src, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// Render runs conduit-inject from <source>/bin; build it for this test
	// rather than depend on an earlier make build.
	tmp := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(tmp, "bin", "conduit-inject"), "./krm-functions/cmd/conduit-inject")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build conduit-inject: %v\n%s", err, out)
	}
	out, err := Render(tmp, filepath.Join(src, "examples", "emojivoto"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "name: conduit-init\n"); n != 4 {
		t.Errorf("%d injected workloads, want 4", n)
	}
}

func TestRenderFailsWithoutTheInjector(t *testing.T) {
	src, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(t.TempDir(), filepath.Join(src, "examples", "emojivoto")); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Render without bin/conduit-inject: %v, want an error saying to run make build", err)
	}
}
