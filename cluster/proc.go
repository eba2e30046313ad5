package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func splitLines(s string) []string {
	return strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
}

// ComponentError says which component failed and carries the tail of its log.
type ComponentError struct {
	Component string
	LogPath   string
	Err       error
}

func (e *ComponentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed: %v", e.Component, e.Err)
	if e.LogPath != "" {
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", e.LogPath, tailFile(e.LogPath, 25))
	}
	return b.String()
}

func (e *ComponentError) Unwrap() error { return e.Err }

// tailFile returns the last n lines of a file, or a note why it cannot.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := splitLines(strings.TrimRight(string(b), "\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// component is one long-running program of the cluster. Its pid file holds
// the pid and the process start time, so a reused pid is never signalled.
type component struct {
	name string
	dir  string // state dir
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits (only for processes this process started)
}

func (c *component) logPath() string { return filepath.Join(c.dir, "logs", c.name+".log") }
func (c *component) pidPath() string { return filepath.Join(c.dir, "pids", c.name+".pid") }

func (c *component) fail(err error) error {
	return &ComponentError{Component: c.name, LogPath: c.logPath(), Err: err}
}

// start runs argv in its own session with output to the component's log.
func (c *component) start(argv []string, env ...string) error {
	for _, d := range []string{filepath.Dir(c.logPath()), filepath.Dir(c.pidPath())} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return c.fail(err)
		}
	}
	logf, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return c.fail(err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(withoutProxyEnv(os.Environ()), env...)
	// A new session: the daemons outlive the command that started them and
	// never receive the terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return c.fail(err)
	}
	c.cmd = cmd
	c.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(c.done) }()
	st, err := procStartTime(cmd.Process.Pid)
	if err != nil {
		return c.fail(err)
	}
	rec := fmt.Sprintf("%d %d\n", cmd.Process.Pid, st)
	if err := os.WriteFile(c.pidPath(), []byte(rec), 0o600); err != nil {
		return c.fail(err)
	}
	return nil
}

// pid returns the live pid of the component from its pid file, or 0.
func (c *component) pid() int {
	b, err := os.ReadFile(c.pidPath())
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	pid, err1 := strconv.Atoi(f[0])
	st, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 1 {
		return 0
	}
	if now, err := procStartTime(pid); err != nil || now != st {
		return 0
	}
	if isZombie(pid) {
		return 0
	}
	return pid
}

func (c *component) running() bool { return c.pid() != 0 }

// exited reports whether a process started by this process has ended.
func (c *component) exited() bool {
	if c.done == nil {
		return !c.running()
	}
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL, and removes the pid file.
func (c *component) stop(grace time.Duration) {
	pid := c.pid()
	if pid != 0 {
		killAndWait(pid, grace)
	}
	if c.done != nil {
		select {
		case <-c.done:
		case <-time.After(2 * time.Second):
		}
	}
	_ = os.Remove(c.pidPath())
}

// killAndWait stops one process by pid: SIGTERM, then SIGKILL after grace.
func killAndWait(pid int, grace time.Duration) {
	st, err := procStartTime(pid)
	if err != nil {
		return
	}
	same := func() bool {
		now, err := procStartTime(pid)
		return err == nil && now == st && !isZombie(pid)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !same() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if same() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 50 && same(); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// procStartTime is field 22 of /proc/PID/stat: start time in clock ticks.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces; fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && len(b) > i+2 && b[i+2] == 'Z'
}

// waitFor polls check until it succeeds, the component exits, or the
// timeout passes; failures name the component and show its log.
func (c *component) waitFor(ctx context.Context, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if c.exited() {
			return c.fail(fmt.Errorf("exited before it was %s", what))
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return c.fail(fmt.Errorf("not %s after %s: %v", what, timeout, last))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// run executes a short helper command and returns its combined output; the
// error includes the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// withoutProxyEnv drops proxy settings: the node's programs talk only to
// loopback and the node's own addresses.
func withoutProxyEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// lockPath takes an exclusive flock on path (created if needed), waiting
// until it is free or ctx ends. The returned function releases it.
func lockPath(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s (another run holds it): %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
