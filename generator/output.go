package generator

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// WriteDir makes dir hold exactly files. It writes a sibling directory and
// renames it over dir, so dir is the old tree or the whole new one, never a
// mix, and files no longer rendered disappear.
func WriteDir(dir string, files []File) error {
	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(tmp, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// Diff compares dir with files and lists what differs: files missing,
// changed, or present but no longer rendered. An empty list means dir is up
// to date.
func Diff(dir string, files []File) ([]string, error) {
	want := map[string][]byte{}
	for _, f := range files {
		want[f.Path] = f.Data
	}
	var out []string
	have := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		have[rel] = true
		data, ok := want[rel]
		if !ok {
			out = append(out, "extra:   "+rel)
			return nil
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			out = append(out, "changed: "+rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("compare %s: %w", dir, err)
	}
	for p := range want {
		if !have[p] {
			out = append(out, "missing: "+p)
		}
	}
	sort.Strings(out)
	return out, nil
}
