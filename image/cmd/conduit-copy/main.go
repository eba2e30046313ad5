// Command conduit-copy copies files into a directory, keeping their
// permission bits. The proxy image has no shell or cp; an init container
// runs this to hand a binary from the image to another container through a
// shared volume, e.g. conduit-inject to Argo CD's repo-server:
//
//	/conduit-copy /conduit-inject /custom-tools
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Run copies each of srcs into dir. Each file is written beside its target
// and renamed, so a reader never sees half a binary.
func Run(srcs []string, dir string, stdout io.Writer) error {
	if len(srcs) == 0 {
		return fmt.Errorf("usage: conduit-copy FILE... DIR")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("target %s is not a directory", dir)
	}
	for _, src := range srcs {
		if err := copyFile(src, filepath.Join(dir, filepath.Base(src))); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "copied %s to %s\n", src, dir)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func main() {
	args := os.Args[1:]
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: conduit-copy FILE... DIR")
		os.Exit(2)
	}
	if err := Run(args[:len(args)-1], args[len(args)-1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-copy:", err)
		os.Exit(1)
	}
}
