package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// HostFiles reads files from this machine into Files at the same paths,
// following symlinks (the content of the target is stored under the listed
// path) and keeping permission bits. Directories are read recursively.
func HostFiles(paths ...string) ([]File, error) {
	var out []File
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("host file %q: not an absolute path", p)
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("host file: %w", err)
		}
		if !st.IsDir() {
			f, err := hostFile(p, st)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
			continue
		}
		err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			st, err := os.Stat(q)
			if err != nil {
				return err
			}
			if st.IsDir() {
				out = append(out, File{Path: q, Mode: fs.ModeDir | st.Mode().Perm()})
				return nil
			}
			f, err := hostFile(q, st)
			if err != nil {
				return err
			}
			out = append(out, f)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("host dir %s: %w", p, err)
		}
	}
	return out, nil
}

func hostFile(p string, st fs.FileInfo) (File, error) {
	if !st.Mode().IsRegular() {
		return File{}, fmt.Errorf("host file %s: not a regular file (%s)", p, st.Mode().Type())
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return File{}, fmt.Errorf("host file: %w", err)
	}
	return File{Path: p, Mode: st.Mode().Perm(), Data: data}, nil
}

// SharedLibraries returns the absolute paths of the shared libraries and the
// dynamic loader that `ldd binary` lists, in ldd's order. A static binary
// has none. A library ldd cannot find is an error naming it.
func SharedLibraries(ctx context.Context, binary string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "ldd", binary)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	text := stdout.String() + stderr.String()
	if strings.Contains(text, "not a dynamic executable") || strings.Contains(text, "statically linked") {
		return nil, nil
	}
	if runErr != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", binary, runErr, strings.TrimSpace(text))
	}
	return parseLdd(binary, stdout.String())
}

// parseLdd reads lines such as
//
//	linux-vdso.so.1 (0x00007ffc...)
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
//	/lib64/ld-linux-x86-64.so.2 (0x...)
func parseLdd(binary, out string) ([]string, error) {
	var libs []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var p string
		if soname, target, ok := strings.Cut(line, "=>"); ok {
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, "not found") {
				return nil, fmt.Errorf("ldd %s: library %s not found", binary, strings.TrimSpace(soname))
			}
			p, _, _ = strings.Cut(target, " (")
		} else {
			p, _, _ = strings.Cut(line, " (")
		}
		p = strings.TrimSpace(p)
		if !filepath.IsAbs(p) || seen[p] {
			continue // the vDSO has no file
		}
		seen[p] = true
		libs = append(libs, p)
	}
	return libs, sc.Err()
}

// HostProgram returns the files a program installed on this machine (for
// example from a Debian package) needs to run in an otherwise empty image:
// the binary and every shared library and loader ldd lists, at their paths.
// Pass them to WithFiles, with any data files the program reads.
func HostProgram(ctx context.Context, binary string) ([]File, error) {
	abs, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("host program %s: %w", binary, err)
	}
	abs, err = filepath.Abs(abs)
	if err != nil {
		return nil, err
	}
	libs, err := SharedLibraries(ctx, abs)
	if err != nil {
		return nil, err
	}
	return HostFiles(append([]string{abs}, libs...)...)
}
