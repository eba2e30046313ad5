package image

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd4a3f1000)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0a1c000000)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f0a1c3e0000)\n"
	libs, err := parseLdd("/bin/x", out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(libs, " ") != "/lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2" {
		t.Errorf("libs %v", libs)
	}
	_, err = parseLdd("/bin/x", "\tlibfoo.so.1 => not found\n")
	if err == nil || !strings.Contains(err.Error(), "libfoo.so.1 not found") {
		t.Errorf("missing lib: %v", err)
	}
}

// TestHostProgramRunsInEmptyRoot packs a small Debian binary with the
// libraries ldd lists, unpacks the image's layer into an empty directory and
// runs the binary chrooted there: it only starts if nothing is missing.
func TestHostProgramRunsInEmptyRoot(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("chroot needs root")
	}
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Fatal("ldd (Debian package libc-bin) is required: ", err)
	}
	files, err := HostProgram(context.Background(), "/usr/bin/printf")
	if err != nil {
		t.Fatal(err)
	}
	var sawLibc bool
	for _, f := range files {
		if strings.Contains(f.Path, "libc.so") {
			sawLibc = true
		}
	}
	if !sawLibc {
		t.Fatalf("no libc among %d files", len(files))
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	img, err := New(platform, WithFiles(files...), WithEntrypoint("/usr/bin/printf"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	hdrs, data := readLayer(t, layers[0])

	root := t.TempDir()
	for _, h := range hdrs {
		p := filepath.Join(root, h.Name)
		if strings.HasSuffix(h.Name, "/") {
			if err := os.MkdirAll(p, fs.FileMode(h.Mode)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, data[h.Name], fs.FileMode(h.Mode)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/usr/bin/printf", "packed %s", "ok")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("run in chroot: %v: %s", err, out.String())
	}
	if out.String() != "packed ok" {
		t.Errorf("output %q", out.String())
	}

	// Without the libraries the same chroot cannot start it, so the test
	// above really depended on them.
	for _, f := range files[1:] {
		os.Remove(filepath.Join(root, f.Path))
	}
	cmd = exec.Command("/usr/bin/printf", "x")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	if err := cmd.Run(); err == nil {
		t.Error("ran without its libraries")
	}
}

func TestHostFilesRejectsMissing(t *testing.T) {
	if _, err := HostFiles("/no/such/file"); err == nil || !strings.Contains(err.Error(), "/no/such/file") {
		t.Errorf("missing: %v", err)
	}
	if _, err := HostFiles("rel"); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative: %v", err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o750)
	os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("x"), 0o600)
	files, err := HostFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || files[2].Mode != 0o600 || string(files[2].Data) != "x" || !files[1].Mode.IsDir() {
		t.Errorf("files %+v", files)
	}
}
