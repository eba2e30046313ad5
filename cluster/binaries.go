package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Components built from the nested k8sbin module.
var kubeBinaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// BinDir is where the built binaries of the harness's Kubernetes version live.
func BinDir(cacheDir string) string {
	return filepath.Join(cacheDir, "k8s-"+KubernetesVersion, "bin")
}

// EnsureBinaries builds the Kubernetes binaries into the cache unless they
// are there already, and returns their folder. The cold build takes minutes
// on two cores; progress goes to opts' Progress writer every 15 seconds.
func EnsureBinaries(ctx context.Context, opts ...Option) (string, error) {
	o, err := newOptions(opts)
	if err != nil {
		return "", err
	}
	return ensureBinaries(ctx, o)
}

func ensureBinaries(ctx context.Context, o Options) (string, error) {
	bin := BinDir(o.CacheDir)
	if haveBinaries(bin) {
		return bin, nil
	}
	// Parallel test packages may all find the cache empty: one builds, the
	// others wait and then use its result.
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	unlock, err := lockPath(ctx, filepath.Join(filepath.Dir(bin), "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if haveBinaries(bin) {
		return bin, nil
	}
	src := filepath.Join(o.SourceDir, "cluster", "k8sbin")
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return "", fmt.Errorf("kubernetes build: no module at %s: %w", src, err)
	}
	tmp := bin + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	pkgs := make([]string, len(kubeBinaries))
	for i, b := range kubeBinaries {
		pkgs[i] = "./" + b
	}
	env := append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	total := countDeps(ctx, src, env, pkgs)

	ld := "-s -w"
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld += fmt.Sprintf(" -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=1 -X %[1]s.gitMinor=32 -X %[1]s.gitTreeState=clean -X %[1]s.buildDate=1970-01-01T00:00:00Z", p, KubernetesVersion)
	}
	args := append([]string{"build", "-p", "2", "-trimpath", "-v", "-ldflags", ld, "-o", tmp + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = src, env
	logPath := filepath.Join(filepath.Dir(bin), "build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var built atomic.Int64
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			built.Add(1)
		}
	}()
	start := time.Now()
	fmt.Fprintf(o.Progress, "building Kubernetes %s (%s) into %s; the first build takes about 8 minutes on 2 cores\n",
		KubernetesVersion, strings.Join(kubeBinaries, ", "), bin)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return "", &ComponentError{Component: "kubernetes build", LogPath: logPath, Err: err}
			}
			if err := os.Rename(tmp, bin); err != nil {
				return "", err
			}
			fmt.Fprintf(o.Progress, "built Kubernetes %s in %s\n", KubernetesVersion, time.Since(start).Round(time.Second))
			return bin, nil
		case <-tick.C:
			n := built.Load()
			if total > 0 {
				fmt.Fprintf(o.Progress, "  build: %d/%d packages compiled, %s elapsed (linking comes last)\n", n, total, time.Since(start).Round(time.Second))
			} else {
				fmt.Fprintf(o.Progress, "  build: %d packages compiled, %s elapsed\n", n, time.Since(start).Round(time.Second))
			}
		}
	}
}

func haveBinaries(dir string) bool {
	for _, b := range kubeBinaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// countDeps is the number of packages the build may compile (for progress).
func countDeps(ctx context.Context, dir string, env, pkgs []string) int {
	cmd := exec.CommandContext(ctx, "go", append([]string{"list", "-deps"}, pkgs...)...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.Output()
	if err != nil {
		return 0
	}
	return strings.Count(string(out), "\n")
}
