package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"text/template"
	"time"

	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// Ports in the server namespace: the backend's, and the reference proxies'
// listeners per protocol.
const (
	backendHTTPPort = 8080
	backendGRPCPort = 8079
	refHTTP1Port    = 8081
	refH2CPort      = 8082
	refGRPCPort     = 8083
)

// env is what every scenario shares.
type env struct {
	opts    options
	dir     string
	bin     meshtest.Binaries
	fortio  string
	goproxy string
	log     io.Writer
}

// Run measures every target over every protocol and prints the table.
func Run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces")
	}
	need := []string{"ip", "setpriv", "taskset"}
	for _, t := range o.targets {
		if t == "nginx" || t == "haproxy" {
			need = append(need, t)
		}
	}
	for _, p := range need {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("needs the program %s: %w", p, err)
		}
	}
	dir, err := os.MkdirTemp("", "conduit-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e := &env{opts: o, dir: dir, log: stderr}
	fmt.Fprintln(stderr, "bench: building conduit-proxy, conduit-init and fortio")
	if e.bin, err = meshtest.Build(dir); err != nil {
		return err
	}
	e.fortio = filepath.Join(dir, "fortio")
	e.goproxy = filepath.Join(dir, "goproxy")
	for pkg, bin := range map[string]string{"fortio.org/fortio": e.fortio, "github.com/conduitmesh/conduit/bench/goproxy": e.goproxy} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", pkg, err, out)
		}
	}

	var rows []Row
	var failures []error
	// Rounds go over every target in turn, so that a noisy moment on the
	// machine spreads over the targets instead of landing on one.
	for round := 1; round <= o.rounds; round++ {
		for _, proto := range o.protocols {
			for _, target := range o.targets {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stderr, "bench: round %d/%d: %s over %s\n", round, o.rounds, target, proto)
				rs, err := e.measure(ctx, target, proto)
				if err != nil {
					failures = append(failures, fmt.Errorf("%s over %s: %w", target, proto, err))
					fmt.Fprintf(stderr, "bench: %s over %s failed: %v\n", target, proto, err)
					continue
				}
				rows = append(rows, rs...)
			}
		}
	}
	rows = Median(rows)
	fmt.Fprintf(stdout, "conduit bench: %d connections, %d-byte responses, %v per run after %v warm-up, fixed load %.0f qps and max, "+
		"median of %d round(s); load generator, backend and proxies on core %s with GOMAXPROCS=1; %d cores, %s\n",
		o.conns, o.size, o.duration, o.warmup, o.qps, o.rounds, o.cpu, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintln(stdout, "latency from fortio; +p50/+p99 vs direct at the same load; cpu is all proxy processes of the path; rss is the largest proxy process")
	if err := WriteTable(stdout, rows); err != nil {
		return err
	}
	WriteTargets(stdout, rows, strconv.Itoa(int(o.qps)))
	return errors.Join(failures...)
}

// measure sets up one target in fresh namespaces, warms up, and runs the
// fixed and the max load.
func (e *env) measure(ctx context.Context, target, proto string) (rows []Row, err error) {
	s := &scenario{name: target + "-" + proto, log: e.log}
	err = s.do(func() {
		pair := meshtest.NewPair(s)
		e.start(s, pair.Server, "backend", e.fortio, "server",
			"-http-port", fmt.Sprintf("0.0.0.0:%d", backendHTTPPort),
			"-grpc-port", fmt.Sprintf("0.0.0.0:%d", backendGRPCPort),
			"-redirect-port", "disabled", "-ui-path", "", "-loglevel", "warning")
		waitListening(s, pair.Server, backendHTTPPort, backendGRPCPort)

		port := backendHTTPPort
		if proto == "grpc" {
			port = backendGRPCPort
		}
		var proxies []int
		proxyOpts := []meshtest.ProxyOption{
			meshtest.WithWrapper("taskset", "-c", e.opts.cpu),
			meshtest.WithEnv("GOMAXPROCS=1"),
			meshtest.WithArgs("--log-level=warn"),
		}
		switch target {
		case "direct":
		case "conduit", "mesh":
			pair.Server.InstallRedirect(s, e.bin)
			proxies = append(proxies, pair.Server.StartProxy(s, e.bin, meshtest.ServerWorkload, proxyOpts...).PID())
			if target == "mesh" {
				pair.Client.InstallRedirect(s, e.bin)
				proxies = append(proxies, pair.Client.StartProxy(s, e.bin, meshtest.ClientWorkload, proxyOpts...).PID())
			}
		case "nginx", "haproxy", "httputil":
			var cmd *exec.Cmd
			switch target {
			case "nginx":
				cmd = e.start(s, pair.Server, "nginx", "nginx", "-p", e.dir+"/", "-c", e.writeConfig(s, target))
			case "haproxy":
				cmd = e.start(s, pair.Server, "haproxy", "haproxy", "-db", "-f", e.writeConfig(s, target))
			case "httputil":
				cmd = e.start(s, pair.Server, "goproxy", e.goproxy,
					"-http1", fmt.Sprintf("0.0.0.0:%d", refHTTP1Port), "-h2c", fmt.Sprintf("0.0.0.0:%d", refH2CPort),
					"-grpc", fmt.Sprintf("0.0.0.0:%d", refGRPCPort),
					"-backend", fmt.Sprintf("127.0.0.1:%d", backendHTTPPort), "-grpc-backend", fmt.Sprintf("127.0.0.1:%d", backendGRPCPort))
			}
			proxies = append(proxies, cmd.Process.Pid)
			waitListening(s, pair.Server, refHTTP1Port, refH2CPort, refGRPCPort)
			port = map[string]int{"http1": refHTTP1Port, "h2c": refH2CPort, "grpc": refGRPCPort}[proto]
		}
		addr := fmt.Sprintf("%s:%d", meshtest.ServerAddr, port)

		time.Sleep(time.Second)
		idle := maxRSS(s, proxies, false)
		if e.opts.warmup > 0 {
			e.load(ctx, s, pair.Client, proto, addr, 0, e.opts.warmup, "warmup")
		}
		for _, load := range []struct {
			name string
			qps  float64
		}{{strconv.Itoa(int(e.opts.qps)), e.opts.qps}, {"max", 0}} {
			cpu0 := cpuTime(s, proxies)
			res := e.load(ctx, s, pair.Client, proto, addr, load.qps, e.opts.duration, load.name)
			rows = append(rows, Row{
				Target: target, Protocol: proto, Load: load.name, Result: res,
				ProxyCPU: cpuTime(s, proxies) - cpu0,
				RSSIdle:  idle, RSSMax: maxRSS(s, proxies, true),
				HasProxy: len(proxies) > 0,
			})
		}
	})
	return rows, err
}

// load runs fortio in the client namespace and parses its report.
func (e *env) load(ctx context.Context, s *scenario, client *meshtest.NetNS, proto, addr string, qps float64, d time.Duration, name string) Result {
	report := filepath.Join(e.dir, fmt.Sprintf("%s-%s.json", s.name, name))
	args := []string{"taskset", "-c", e.opts.cpu, "env", "GOMAXPROCS=1", e.fortio, "load", "-quiet",
		"-qps", strconv.FormatFloat(qps, 'f', -1, 64), "-c", strconv.Itoa(e.opts.conns), "-t", d.String(),
		"-r", "0.00001", "-p", "50,99,99.9", "-json", report}
	switch proto {
	case "http1":
		args = append(args, fmt.Sprintf("http://%s/?size=%d", addr, e.opts.size))
	case "h2c":
		args = append(args, "-h2", fmt.Sprintf("http://%s/?size=%d", addr, e.opts.size))
	case "grpc":
		args = append(args, "-grpc", "-ping", "-payload-size", strconv.Itoa(e.opts.size), addr)
	}
	rctx, cancel := context.WithTimeout(ctx, d+time.Minute)
	defer cancel()
	if out, err := client.Command(rctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		s.Fatalf("fortio load %s: %v: %s", name, err, tail(out))
	}
	f, err := os.Open(report)
	if err != nil {
		s.Fatal(err)
	}
	defer f.Close()
	res, err := ParseResult(f)
	if err != nil {
		s.Fatalf("%s: %v", report, err)
	}
	if e.opts.keepJSON != "" {
		if err := os.MkdirAll(e.opts.keepJSON, 0o755); err == nil {
			if b, err := os.ReadFile(report); err == nil {
				os.WriteFile(filepath.Join(e.opts.keepJSON, filepath.Base(report)), b, 0o644)
			}
		}
	}
	return res
}

// start runs a program pinned to the core in the namespace, stopped by PID
// when the scenario ends.
func (e *env) start(s *scenario, ns *meshtest.NetNS, name string, argv ...string) *exec.Cmd {
	logPath := filepath.Join(e.dir, s.name+"-"+name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		s.Fatal(err)
	}
	args := append([]string{"taskset", "-c", e.opts.cpu, "env", "GOMAXPROCS=1"}, argv...)
	cmd := ns.Command(context.Background(), args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the benchmark dies without its cleanups, so does the process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if s.Failed() {
			b, _ := os.ReadFile(logPath)
			s.Logf("%s log:\n%s", name, tail(b))
		}
	})
	return cmd
}

func (e *env) writeConfig(s *scenario, target string) string {
	var tmpl string
	switch target {
	case "nginx":
		tmpl = nginxConf
		for _, d := range []string{"ngx-body", "ngx-proxy", "ngx-fastcgi", "ngx-uwsgi", "ngx-scgi"} {
			if err := os.MkdirAll(filepath.Join(e.dir, d), 0o755); err != nil {
				s.Fatal(err)
			}
		}
	case "haproxy":
		tmpl = haproxyConf
	}
	path := filepath.Join(e.dir, s.name+"."+target+".conf")
	f, err := os.Create(path)
	if err != nil {
		s.Fatal(err)
	}
	defer f.Close()
	err = template.Must(template.New(target).Parse(tmpl)).Execute(f, map[string]any{
		"Dir": e.dir, "Name": s.name,
		"BackendHTTP": backendHTTPPort, "BackendGRPC": backendGRPCPort,
		"HTTP1": refHTTP1Port, "H2C": refH2CPort, "GRPC": refGRPCPort,
	})
	if err != nil {
		s.Fatal(err)
	}
	return path
}

// nginxConf is one process (no master), no access log, keep-alive to the
// backend and to clients without a request limit.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{.Dir}}/{{.Name}}.nginx.pid;
error_log {{.Dir}}/{{.Name}}.nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 100000000;
	client_body_temp_path {{.Dir}}/ngx-body;
	proxy_temp_path {{.Dir}}/ngx-proxy;
	fastcgi_temp_path {{.Dir}}/ngx-fastcgi;
	uwsgi_temp_path {{.Dir}}/ngx-uwsgi;
	scgi_temp_path {{.Dir}}/ngx-scgi;
	upstream backend { server 127.0.0.1:{{.BackendHTTP}}; keepalive 64; keepalive_requests 100000000; }
	upstream grpcbackend { server 127.0.0.1:{{.BackendGRPC}}; keepalive 64; keepalive_requests 100000000; }
	server {
		listen {{.HTTP1}};
		location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
	server {
		listen {{.H2C}} http2;
		location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
	server {
		listen {{.GRPC}} http2;
		location / { grpc_pass grpc://grpcbackend; }
	}
}
`

// haproxyConf is one thread, keep-alive and connection reuse to the
// backend, h2c prior knowledge on the h2c and gRPC listeners.
const haproxyConf = `global
	nbthread 1
	maxconn 4096
defaults
	mode http
	timeout connect 5s
	timeout client 120s
	timeout server 120s
	timeout http-keep-alive 120s
	option http-keep-alive
	http-reuse always
frontend h1
	bind 0.0.0.0:{{.HTTP1}}
	default_backend be
frontend h2c
	bind 0.0.0.0:{{.H2C}} proto h2
	default_backend be
frontend grpc
	bind 0.0.0.0:{{.GRPC}} proto h2
	default_backend begrpc
backend be
	server s1 127.0.0.1:{{.BackendHTTP}}
backend begrpc
	server s1 127.0.0.1:{{.BackendGRPC}} proto h2
`

// waitListening waits until the ports accept connections on loopback in
// the namespace.
func waitListening(s *scenario, ns *meshtest.NetNS, ports ...int) {
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range ports {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c, err := ns.Dial(ctx, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			cancel()
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				s.Fatalf("port %d in %s never accepted: %v", p, ns.Name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func cpuTime(s *scenario, pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		d, err := meshtest.ReadCPUTime(pid)
		if err != nil {
			s.Fatal(err)
		}
		total += d
	}
	return total
}

// maxRSS is the largest VmRSS (or VmHWM, the peak) among the processes.
func maxRSS(s *scenario, pids []int, peak bool) int64 {
	var m int64
	for _, pid := range pids {
		st, err := meshtest.ReadProcStatus(pid)
		if err != nil {
			s.Fatal(err)
		}
		v := st.VmRSS
		if peak {
			v = st.VmHWM
		}
		m = max(m, v)
	}
	return m
}

func tail(b []byte) string {
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// scenario implements meshtest.T for one measurement: cleanups run when it
// ends, Fatal aborts it.
type scenario struct {
	name     string
	log      io.Writer
	cleanups []func()
	failed   bool
}

type abort struct{ msg string }

func (s *scenario) do(f func()) (err error) {
	defer func() {
		for i := len(s.cleanups) - 1; i >= 0; i-- {
			s.cleanups[i]()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			err = errors.New(a.msg)
		}
	}()
	f()
	if s.failed {
		return errors.New("failed (see the log above)")
	}
	return nil
}

func (s *scenario) Helper()           {}
func (s *scenario) Cleanup(f func())  { s.cleanups = append(s.cleanups, f) }
func (s *scenario) Failed() bool      { return s.failed }
func (s *scenario) Fatal(args ...any) { s.failed = true; panic(abort{fmt.Sprint(args...)}) }
func (s *scenario) Skip(args ...any) {
	s.failed = true
	panic(abort{"skipped: " + fmt.Sprint(args...)})
}
func (s *scenario) Logf(f string, a ...any) {
	fmt.Fprintf(s.log, "bench: %s: %s\n", s.name, fmt.Sprintf(f, a...))
}
func (s *scenario) Fatalf(f string, a ...any) {
	s.failed = true
	panic(abort{fmt.Sprintf(f, a...)})
}
func (s *scenario) Errorf(f string, a ...any) {
	s.failed = true
	s.Logf(f, a...)
}
