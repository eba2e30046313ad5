package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunCopiesKeepingMode(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tool")
	os.WriteFile(src, []byte("#!binary"), 0o755)
	dst := t.TempDir()
	if err := Run([]string{src}, dst, io.Discard); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dst, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("mode %o", st.Mode().Perm())
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "tool")); string(b) != "#!binary" {
		t.Errorf("content %q", b)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 1 {
		t.Errorf("left %v", entries)
	}
}

func TestRunNamesBadInput(t *testing.T) {
	dst := t.TempDir()
	if err := Run([]string{"/no/such"}, dst, io.Discard); err == nil || !strings.Contains(err.Error(), "/no/such") {
		t.Errorf("missing source: %v", err)
	}
	if err := Run([]string{dst}, dst, io.Discard); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory source: %v", err)
	}
	f := filepath.Join(dst, "file")
	os.WriteFile(f, nil, 0o644)
	if err := Run([]string{f}, f, io.Discard); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file target: %v", err)
	}
}
