// Package meshtest runs Conduit's proxies in network namespaces a test
// creates: a client namespace and a server namespace joined by a veth pair,
// each with conduit-init's redirect and a conduit-proxy running as the
// proxy uid, while the applications stay unchanged.
//
// Traffic stays inside the namespaces: the only addresses used are loopback
// and the pair's own private /30 (and, for IPv6 tests, its unique local
// /64), assigned inside the namespaces. Everything
// created (namespaces, which take their veth ends along, and processes) is
// removed by t.Cleanup, also when the test fails.
package meshtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// T is the part of testing.TB the harness uses, so that programs such as
// the benchmark can drive it too: Cleanup functions run last-in first-out
// when the test (or the benchmark scenario) ends, Fatal stops it.
type T interface {
	Helper()
	Cleanup(func())
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
	Skip(args ...any)
}

// RequireRoot skips the test on a developer machine without root, and fails
// it in CI (env CI set) or when one of the programs is missing.
func RequireRoot(t T, programs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("needs root for network namespaces (CI=1 makes this a failure)")
		}
		t.Fatal("needs root for network namespaces")
	}
	for _, p := range append([]string{"ip", "setpriv"}, programs...) {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("needs the program %s: %v", p, err)
		}
	}
}

// NetNS is a network namespace made by the test.
type NetNS struct {
	Name string
}

var (
	seq       atomic.Int32
	sweepOnce sync.Once
)

const nsPrefix = "cdmesh-"

// sweepStale deletes namespaces left by earlier runs whose process is gone
// (a run killed by a timeout never reaches its cleanups). Namespaces are
// named cdmesh-PID-N-ROLE.
func sweepStale() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its run is still going
		}
		_ = run("ip", "netns", "del", e.Name())
	}
}

// NewNetNS creates a namespace with loopback up and deletes it (and with it
// the veth ends inside it) when the test ends.
func NewNetNS(t T, role string) *NetNS {
	t.Helper()
	sweepOnce.Do(sweepStale)
	n := &NetNS{Name: fmt.Sprintf("%s%d-%d-%s", nsPrefix, os.Getpid(), seq.Add(1), role)}
	if err := run("ip", "netns", "add", n.Name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run("ip", "netns", "del", n.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := n.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	return n
}

// Path is the namespace's bind mount.
func (n *NetNS) Path() string { return "/run/netns/" + n.Name }

// Command prepares name args... to run inside the namespace.
func (n *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its output in the error.
func (n *NetNS) Run(name string, args ...string) error {
	out, err := n.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s in %s: %v: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return nil
}

// Do calls f on an OS thread that has entered the namespace. Sockets f
// creates belong to the namespace for their whole life, so the test process
// can be a client or a server inside it.
func (n *NetNS) Do(f func() error) error {
	target, err := os.Open(n.Path())
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		// The goroutine's thread is never unlocked: if restoring the original
		// namespace failed, the thread exits with the goroutine rather than
		// serving others from the wrong namespace.
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter %s: %w", n.Name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave %s: %w", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Dial connects from inside the namespace. The connection is subject to
// the namespace's redirect like any application's.
func (n *NetNS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens inside the namespace.
func (n *NetNS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// HTTPClient is a client whose connections start inside the namespace.
func (n *NetNS) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       n.Dial,
			DisableKeepAlives: true,
			Proxy:             nil,
		},
	}
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
