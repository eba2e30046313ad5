package soak

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// soakConfig is the run's settings, from the environment.
type soakConfig struct {
	duration  time.Duration  // SOAK_DURATION, 60s
	qps       int            // SOAK_QPS, 1000
	settle    time.Duration  // SOAK_SETTLE, 200s
	proxyArgs []string       // SOAK_PROXY_TIMEOUTS=1 and SOAK_PROXY_ARGS
	skip      *regexp.Regexp // SOAK_SKIP: scenarios left out, by name
}

// soakTimeoutFlags are the proxy's connection timeouts, short enough that
// what hangs is let go within the settle time. SOAK_PROXY_TIMEOUTS=1 passes
// them; a proxy without these flags refuses to start with them.
var soakTimeoutFlags = []string{
	"--head-read-timeout=5s",
	"--keepalive-timeout=10s",
	"--stream-idle-timeout=10s",
	"--opaque-idle-timeout=30s",
}

func soakConfigFromEnv() (soakConfig, error) {
	c := soakConfig{duration: 60 * time.Second, qps: 1000, settle: 200 * time.Second}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{"SOAK_DURATION", &c.duration}, {"SOAK_SETTLE", &c.settle}} {
		if v := os.Getenv(d.key); v != "" {
			got, err := time.ParseDuration(v)
			if err != nil || got <= 0 {
				return c, fmt.Errorf("%s=%q: want a positive duration", d.key, v)
			}
			*d.dst = got
		}
	}
	if v := os.Getenv("SOAK_QPS"); v != "" {
		got, err := strconv.Atoi(v)
		if err != nil || got <= 0 || got > 100000 {
			return c, fmt.Errorf("SOAK_QPS=%q: want requests per second, 1 to 100000", v)
		}
		c.qps = got
	}
	switch v := os.Getenv("SOAK_PROXY_TIMEOUTS"); v {
	case "", "0":
	case "1":
		c.proxyArgs = append(c.proxyArgs, soakTimeoutFlags...)
	default:
		return c, fmt.Errorf("SOAK_PROXY_TIMEOUTS=%q: want 0 or 1", v)
	}
	c.proxyArgs = append(c.proxyArgs, strings.Fields(os.Getenv("SOAK_PROXY_ARGS"))...)
	if v := os.Getenv("SOAK_SKIP"); v != "" {
		re, err := regexp.Compile(v)
		if err != nil {
			return c, fmt.Errorf("SOAK_SKIP=%q: %v", v, err)
		}
		c.skip = re
	}
	return c, nil
}

// The requests that should succeed that may fail: 0.1% of those sent. The
// requests that may be shed (not sent, as too many are in flight): 1% of
// those due.
const (
	soakMaxGoodFailureRate = 0.001
	soakMaxShedRate        = 0.01
)

// TestSoak drives SOAK_DURATION of paced mixed load at SOAK_QPS through
// both proxies: keep-alive HTTP/1.1, h2c, gRPC, new connections, opaque
// and detected TCP, slow backends and slow clients, clients that leave
// mid-response, and backends that reset or hang. It then waits (up to
// SOAK_SETTLE) for each proxy's file descriptors, goroutines and
// tcp_open_connections to return to their baseline, and fails if they do
// not, if resident memory reached 20 MiB at any sample, if more than 0.1%
// of the requests that should succeed failed, if more than 1% of the
// requests due were shed (not sent because 1024 were in flight), or if a
// request to a resetting or hanging backend succeeded.
func TestSoak(t *testing.T) {
	meshtest.RequireRoot(t)
	cfg, err := soakConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--pprof", fmt.Sprintf("--opaque-ports=%d", soakOpaquePort)}, cfg.proxyArgs...)
	m := meshtest.NewMesh(t, binaries(t), meshtest.MeshOptions{
		ClientProxy: []meshtest.ProxyOption{meshtest.WithArgs(args...)},
		ServerProxy: []meshtest.ProxyOption{meshtest.WithArgs(args...)},
	})
	listen := func(port int) net.Listener {
		l, err := m.Server.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	app := &soakApp{}
	t.Cleanup(soakServeHTTP(listen(soakHTTPPort), app))
	t.Cleanup(soakServeGRPC(listen(soakGRPCPort)))
	t.Cleanup(soakServeEcho(listen(soakOpaquePort)))
	t.Cleanup(soakServeEcho(listen(soakDetectedPort)))

	states := []*soakProxyState{{name: "client", proxy: m.ClientProxy}, {name: "server", proxy: m.ServerProxy}}
	read := func(s *soakProxyState) soakSample {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		x, err := soakRead(ctx, s.proxy)
		if err != nil {
			t.Fatalf("%s proxy: %v", s.name, err)
		}
		return x
	}
	for _, s := range states {
		s.before = read(s)
		s.observe(s.before)
	}

	clients, err := newSoakClients(m.Client)
	if err != nil {
		t.Fatal(err)
	}
	var scs, skipped []soakScenario
	for _, sc := range clients.soakScenarios() {
		if cfg.skip != nil && cfg.skip.MatchString(sc.name) {
			skipped = append(skipped, sc)
			continue
		}
		scs = append(scs, sc)
	}
	if len(scs) == 0 {
		t.Fatalf("SOAK_SKIP=%q leaves no scenario", cfg.skip)
	}
	outcomes := newSoakOutcomes(scs)

	// Sample both proxies every 2 s while the load runs.
	var (
		sampleErr error
		sampling  sync.WaitGroup
	)
	ctx, stopSampling := context.WithCancel(context.Background())
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, s := range states {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				x, err := soakRead(rctx, s.proxy)
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						sampleErr = fmt.Errorf("%s proxy during the load: %w", s.name, err)
					}
					return
				}
				s.observe(x)
			}
		}
	}()
	start := time.Now()
	selfCPU, _ := meshtest.ReadCPUTime(os.Getpid())
	soakDrive(context.Background(), scs, outcomes, cfg.qps, cfg.duration)
	loadTime := time.Since(start)
	if cpu, err := meshtest.ReadCPUTime(os.Getpid()); err == nil {
		selfCPU = cpu - selfCPU
	}
	clients.Close()
	stopSampling()
	sampling.Wait()
	if sampleErr != nil {
		t.Fatal(sampleErr)
	}

	// Let the proxies settle: poll until every count is back or the
	// deadline passes. The HTTP/1 pools close connections idle for 60 s
	// within another 30 s, and the server proxy's pooled upstream goes
	// back to its pool only when the client proxy's pool closes the
	// connection it sticks to: two pools in a row take up to 180 s, so the
	// default deadline is 200 s.
	settleStart := time.Now()
	settled := false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		settled = true
		for _, s := range states {
			s.observe(read(s))
			if len(soakProblems(s.before, s.after, 0, soakDefaultLimits)) > 0 {
				settled = false
			}
		}
		if settled || time.Since(settleStart) >= cfg.settle {
			break
		}
		<-tick.C
	}
	settleTime := time.Since(settleStart).Round(time.Second)

	var report strings.Builder
	fmt.Fprintf(&report, "soak: %v of load at %d QPS (took %v), proxy flags %q\n", cfg.duration, cfg.qps, loadTime.Round(time.Second), args)
	for _, sc := range skipped {
		fmt.Fprintf(&report, "left out (SOAK_SKIP): %s\n", sc.name)
	}
	if settled {
		fmt.Fprintf(&report, "settled after %v\n", settleTime)
	} else {
		fmt.Fprintf(&report, "not settled after %v\n", settleTime)
	}
	soakTable(&report, states, soakDefaultLimits)
	if !settled {
		// What the proxies still hold, for whoever reads the failure.
		for _, s := range states {
			if kinds, err := soakFDKinds(s.proxy.PID()); err == nil {
				fmt.Fprintf(&report, "%s proxy descriptors by kind:\n%s", s.name, soakCounts(kinds, 10))
			}
			if socks, err := soakSockets(s.proxy); err == nil {
				fmt.Fprintf(&report, "%s proxy TCP sockets (ss -tanp):\n%s", s.name, soakCounts(socks, 15))
			} else {
				fmt.Fprintf(&report, "%s proxy TCP sockets: %v\n", s.name, err)
			}
		}
	}
	fmt.Fprintf(&report, "load generator and backend (this process): %.1f CPU seconds during the load\n", selfCPU.Seconds())
	fmt.Fprintf(&report, "backend /hang handlers still waiting: %d\n", app.Hung())
	outcomes.write(&report)
	failed, sent := outcomes.goodRate()
	fmt.Fprintf(&report, "requests that should succeed: %d failed of %d sent (%.3f%%, limit %.1f%%)\n",
		failed, sent, 100*float64(failed)/float64(max(sent, 1)), 100*soakMaxGoodFailureRate)
	shed, due := outcomes.shedRate()
	fmt.Fprintf(&report, "requests shed with %d in flight: %d of %d due (%.3f%%, limit %.1f%%)\n",
		soakMaxInFlight, shed, due, 100*float64(shed)/float64(max(due, 1)), 100*soakMaxShedRate)
	t.Log("\n" + report.String())

	for _, s := range states {
		for _, p := range soakProblems(s.before, s.after, s.peak.RSS, soakDefaultLimits) {
			t.Errorf("%s proxy: %s", s.name, p)
		}
	}
	if sent == 0 || float64(failed) > soakMaxGoodFailureRate*float64(sent) {
		t.Errorf("%d of %d requests that should succeed failed (more than %.1f%%)", failed, sent, 100*soakMaxGoodFailureRate)
	}
	if float64(shed) > soakMaxShedRate*float64(due) {
		t.Errorf("the load was not delivered: %d of %d requests shed because %d were in flight (the proxies stalled, or the machine is too busy to run the soak)",
			shed, due, soakMaxInFlight)
	}
	if n := outcomes.unexpectedSuccesses(); n > 0 {
		t.Errorf("%d requests to a resetting or hanging backend succeeded", n)
	}
}
