package meshtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// The pair's addresses: a private /30 that exists only inside the two
// namespaces.
var (
	ClientAddr = netip.MustParseAddr("10.254.0.1")
	ServerAddr = netip.MustParseAddr("10.254.0.2")
)

const pairPrefixLen = 30

// The pair's IPv6 addresses, given by AddIPv6: unique local addresses in a
// /64 that exists only inside the two namespaces.
var (
	ClientAddr6 = netip.MustParseAddr("fd00:c0d::1")
	ServerAddr6 = netip.MustParseAddr("fd00:c0d::2")
)

const pairPrefixLen6 = 64

// Pair is a client and a server namespace joined by a veth pair, eth0 in
// each.
type Pair struct {
	Client, Server *NetNS
}

// NewPair creates the two namespaces and the link between them.
func NewPair(t T) *Pair {
	t.Helper()
	p := &Pair{Client: NewNetNS(t, "c"), Server: NewNetNS(t, "s")}
	// Both ends are created directly inside the namespaces, so nothing is
	// ever added to the host's namespace.
	if err := run("ip", "link", "add", "eth0", "netns", p.Client.Name, "type", "veth",
		"peer", "name", "eth0", "netns", p.Server.Name); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		ns   *NetNS
		addr netip.Addr
	}{{p.Client, ClientAddr}, {p.Server, ServerAddr}} {
		if err := side.ns.Run("ip", "addr", "add", fmt.Sprintf("%s/%d", side.addr, pairPrefixLen), "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if err := side.ns.Run("ip", "link", "set", "eth0", "up"); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// AddIPv6 gives each end of the pair its IPv6 address as well (the pair is
// then dual-stack). The addresses skip duplicate address detection
// (nodad), so they are usable at once.
func (p *Pair) AddIPv6(t T) {
	t.Helper()
	for _, side := range []struct {
		ns   *NetNS
		addr netip.Addr
	}{{p.Client, ClientAddr6}, {p.Server, ServerAddr6}} {
		if err := side.ns.Run("ip", "-6", "addr", "add", fmt.Sprintf("%s/%d", side.addr, pairPrefixLen6), "dev", "eth0", "nodad"); err != nil {
			t.Fatal(err)
		}
	}
}

// Binaries are the mesh's programs, built for the test.
type Binaries struct {
	Proxy, Init string
}

// Build compiles conduit-proxy and conduit-init from this module into dir,
// which it makes readable to the proxy uid.
func Build(dir string) (Binaries, error) {
	root, err := moduleRoot()
	if err != nil {
		return Binaries{}, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return Binaries{}, err
	}
	b := Binaries{Proxy: filepath.Join(dir, "conduit-proxy"), Init: filepath.Join(dir, "conduit-init")}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./proxy/cmd/conduit-proxy", "./proxy/cmd/conduit-init")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build the proxy: %v: %s", err, out)
	}
	return b, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the Go module")
	}
	return filepath.Dir(mod), nil
}

// InstallRedirect runs conduit-init in the namespace with the given extra
// flags, such as --skip-inbound-ports=22.
func (n *NetNS) InstallRedirect(t T, b Binaries, flags ...string) {
	t.Helper()
	if err := n.Run(b.Init, flags...); err != nil {
		t.Fatal(err)
	}
}

// Workload is the identity the injector gives a proxy through its env.
type Workload struct {
	Namespace, Pod, Kind, Name string
}

// Proxy is a running conduit-proxy.
type Proxy struct {
	NS       *NetNS
	Workload Workload
	Cmd      *exec.Cmd
	log      *os.File
	done     chan struct{}
	waitErr  error
}

// ProxyOption changes how a proxy is started.
type ProxyOption func(*proxyConfig)

type proxyConfig struct {
	args    []string
	env     []string
	wrapper []string
}

// WithArgs adds flags to the proxy's command line.
func WithArgs(args ...string) ProxyOption {
	return func(c *proxyConfig) { c.args = append(c.args, args...) }
}

// WithEnv adds KEY=VALUE entries to the proxy's environment.
func WithEnv(kv ...string) ProxyOption {
	return func(c *proxyConfig) { c.env = append(c.env, kv...) }
}

// WithWrapper runs the proxy under a program such as `taskset -c 0`; the
// wrapper must exec the proxy so that the PID stays the proxy's.
func WithWrapper(argv ...string) ProxyOption {
	return func(c *proxyConfig) { c.wrapper = append(c.wrapper, argv...) }
}

// StartProxy runs conduit-proxy in the namespace as the proxy uid and waits
// until its admin port reports ready. It is stopped when the test ends; on
// failure its log is shown.
func (n *NetNS) StartProxy(t T, b Binaries, w Workload, opts ...ProxyOption) *Proxy {
	t.Helper()
	var cfg proxyConfig
	for _, o := range opts {
		o(&cfg)
	}
	uid := strconv.Itoa(contract.ProxyUID)
	// --pdeathsig: if the test process dies without its cleanups (a test
	// timeout), the proxy dies too instead of outliving it.
	argv := []string{"netns", "exec", n.Name, "setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", "--pdeathsig=KILL"}
	argv = append(argv, cfg.wrapper...)
	argv = append(argv, b.Proxy, "--log-level=info", "--drain-timeout=2s")
	argv = append(argv, cfg.args...)
	cmd := exec.Command("ip", argv...)
	cmd.Env = append(os.Environ(),
		contract.EnvPodNamespace+"="+w.Namespace,
		contract.EnvPodName+"="+w.Pod,
		contract.EnvWorkloadKind+"="+w.Kind,
		contract.EnvWorkloadName+"="+w.Name,
	)
	cmd.Env = append(cmd.Env, cfg.env...)
	logf, err := os.CreateTemp("", "conduit-proxy-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.Remove(logf.Name())
		t.Fatalf("start conduit-proxy: %v", err)
	}
	p := &Proxy{NS: n, Workload: w, Cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("conduit-proxy in %s (pid %d) log:\n%s", n.Name, cmd.Process.Pid, p.Log())
		}
		logf.Close()
		os.Remove(logf.Name())
	})
	if err := p.waitReady(10 * time.Second); err != nil {
		t.Fatalf("conduit-proxy in %s: %v\nlog:\n%s", n.Name, err, p.Log())
	}
	return p
}

// PID is the proxy's process id (ip netns exec and setpriv exec it).
func (p *Proxy) PID() int { return p.Cmd.Process.Pid }

// Log is what the proxy wrote so far.
func (p *Proxy) Log() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}

// Exited reports whether the proxy has exited.
func (p *Proxy) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the proxy to exit and returns whether it
// did and its exit error.
func (p *Proxy) Wait(timeout time.Duration) (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	case <-time.After(timeout):
		return false, nil
	}
}

// Stop sends SIGTERM, waits for the drain, then kills. It returns the
// proxy's exit error, nil for a clean exit.
func (p *Proxy) Stop() error {
	if p.Exited() {
		return p.waitErr
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	return p.waitErr
}

func (p *Proxy) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := p.NS.HTTPClient(time.Second)
	url := fmt.Sprintf("http://127.0.0.1:%d%s", contract.ProxyAdminPort, contract.AdminReadyPath)
	var last error
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("exited before ready: %v", p.waitErr)
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

// Mesh is a Pair with the redirect and a proxy in each namespace.
type Mesh struct {
	*Pair
	Bin                      Binaries
	ClientProxy, ServerProxy *Proxy
}

// The workloads of the two sides.
var (
	ClientWorkload = Workload{Namespace: "test", Pod: "client-0", Kind: "deployment", Name: "client"}
	ServerWorkload = Workload{Namespace: "test", Pod: "server-0", Kind: "deployment", Name: "server"}
)

// MeshOptions configure NewMesh.
type MeshOptions struct {
	// IPv6 makes the pair dual-stack (Pair.AddIPv6) before the redirects
	// and proxies start.
	IPv6 bool
	// ClientInit and ServerInit are extra conduit-init flags.
	ClientInit, ServerInit []string
	// ClientProxy and ServerProxy are extra proxy options.
	ClientProxy, ServerProxy []ProxyOption
}

// NewMesh builds the pair with redirects and proxies on both sides.
func NewMesh(t T, b Binaries, o MeshOptions) *Mesh {
	t.Helper()
	m := &Mesh{Pair: NewPair(t), Bin: b}
	if o.IPv6 {
		m.AddIPv6(t)
	}
	m.Client.InstallRedirect(t, b, o.ClientInit...)
	m.Server.InstallRedirect(t, b, o.ServerInit...)
	m.ClientProxy = m.Client.StartProxy(t, b, ClientWorkload, o.ClientProxy...)
	m.ServerProxy = m.Server.StartProxy(t, b, ServerWorkload, o.ServerProxy...)
	return m
}

// Output runs a command in the namespace and returns stdout, with stderr in
// the error.
func (n *NetNS) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := n.Command(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

var (
	sharedOnce sync.Once
	sharedDir  string
	shared     Binaries
	sharedErr  error
)

// SharedBinaries builds conduit-proxy and conduit-init once per test
// process; RemoveSharedBinaries deletes them (call it from TestMain).
func SharedBinaries(t T) Binaries {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "conduit-integration-")
		if sharedErr == nil {
			shared, sharedErr = Build(sharedDir)
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// RemoveSharedBinaries deletes what SharedBinaries built, if anything.
func RemoveSharedBinaries() {
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}

// DialServer connects from the client namespace to port on the server's
// IPv4 address (through the client's redirect, so through both proxies);
// the connection is closed when the test ends.
func (m *Mesh) DialServer(t T, port int) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := m.Client.Dial(ctx, "tcp4", fmt.Sprintf("%s:%d", ServerAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Terminate sends SIGTERM and waits up to limit for the proxy to exit
// cleanly; it returns how long the exit took.
func (p *Proxy) Terminate(t T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited, err := p.Wait(limit)
	if !exited {
		t.Fatalf("proxy still running %v after SIGTERM", limit)
	}
	if err != nil {
		t.Errorf("proxy exit after SIGTERM: %v, want a clean exit", err)
	}
	return time.Since(start)
}
