// Package testutil holds helpers the tests of every component share: polling
// a condition with a deadline instead of sleeping, and golden files.
package testutil

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Poll calls cond until it returns nil, waiting interval between calls, and
// returns nil then. When timeout has passed it returns cond's last error.
// cond runs at least once.
func Poll(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Add(interval).Before(deadline) {
			return fmt.Errorf("still after %v: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// Eventually is Poll that fails t with cond's last error.
func Eventually(t testing.TB, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, interval, cond); err != nil {
		t.Fatal(err)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files with the output the tests got")

// Golden compares got with the file at path (relative to the test's
// package). With `go test -update` it writes got there instead, making
// any missing directories.
func Golden(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the output:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
