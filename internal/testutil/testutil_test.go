package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	err := Poll(5*time.Second, time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Poll = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestPollGivesUpAtTheDeadlineWithTheLastError(t *testing.T) {
	start, calls := time.Now(), 0
	err := Poll(50*time.Millisecond, 10*time.Millisecond, func() error {
		calls++
		return errors.New("pod not ready")
	})
	if err == nil || !strings.Contains(err.Error(), "pod not ready") {
		t.Fatalf("Poll = %v, want the condition's error", err)
	}
	if d := time.Since(start); d > time.Second || calls < 2 {
		t.Errorf("gave up after %v and %d calls", d, calls)
	}
}

// fakeT records a failure instead of ending the test.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper()                   {}
func (f *fakeT) Errorf(s string, a ...any) { f.failed = s }

func TestGoldenFailsOnADifference(t *testing.T) {
	path := filepath.Join(t.TempDir(), "want.txt")
	if err := os.WriteFile(path, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ft := &fakeT{TB: t}
	Golden(ft, path, "one\n")
	if ft.failed != "" {
		t.Errorf("equal output failed: %s", ft.failed)
	}
	Golden(ft, path, "two\n")
	if ft.failed == "" {
		t.Error("a different output passed")
	}
	*update = true
	defer func() { *update = false }()
	Golden(ft, filepath.Join(filepath.Dir(path), "new", "x.txt"), "two\n")
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "new", "x.txt")); err != nil || string(b) != "two\n" {
		t.Errorf("-update wrote %q, %v", b, err)
	}
}
