package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/internal/app"
)

func TestFlagDefaultsFromEnv(t *testing.T) {
	t.Setenv(contract.EnvProxyInboundPorts, "8080,9000-9002")
	t.Setenv(contract.EnvProxyOpaquePorts, "5432")
	t.Setenv(contract.EnvProxyLogLevel, "debug")
	t.Setenv(contract.EnvPodName, "web-1")
	t.Setenv(contract.EnvPodNamespace, "shop")
	t.Setenv(contract.EnvWorkloadKind, "deployment")
	t.Setenv(contract.EnvWorkloadName, "web")
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	if a.InboundAddr != "0.0.0.0:4143" || a.OutboundAddr != "127.0.0.1:4140" || a.AdminAddr != "0.0.0.0:4191" || a.TapAddr != "0.0.0.0:4190" {
		t.Errorf("addresses %s %s %s %s", a.InboundAddr, a.OutboundAddr, a.AdminAddr, a.TapAddr)
	}
	if a.OutboundAddrIPv6 != "[::1]:4140" {
		t.Errorf("IPv6 outbound address %s", a.OutboundAddrIPv6)
	}
	if a.InboundPorts.String() != "8080,9000-9002" || a.OpaquePorts.String() != "5432" {
		t.Errorf("ports %s / %s", a.InboundPorts, a.OpaquePorts)
	}
	if a.LogLevel.String() != "DEBUG" || a.DetectTimeout != 5*time.Second || a.DrainTimeout != 20*time.Second {
		t.Errorf("log level %s, timeouts %v %v", a.LogLevel, a.DetectTimeout, a.DrainTimeout)
	}
	if w := a.Workload; w.Pod != "web-1" || w.Namespace != "shop" || w.Kind != "deployment" || w.Name != "web" {
		t.Errorf("workload %+v", w)
	}
}

func TestDefaultsWithoutEnv(t *testing.T) {
	for _, k := range []string{contract.EnvProxyOpaquePorts, contract.EnvProxyInboundPorts, contract.EnvProxyLogLevel, contract.EnvWorkloadKind, contract.EnvWorkloadName} {
		t.Setenv(k, "")
	}
	o, err := parseFlags([]string{"--opaque-ports", contract.DefaultOpaquePorts, "--log-level", "info"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	if a.OpaquePorts.String() != contract.DefaultOpaquePorts {
		t.Errorf("opaque ports %s, want %s", a.OpaquePorts, contract.DefaultOpaquePorts)
	}
}

// Flags win over the environment.
func TestFlagsOverrideEnv(t *testing.T) {
	t.Setenv(contract.EnvProxyOpaquePorts, "5432")
	o, err := parseFlags([]string{"--opaque-ports=6379", "--inbound-addr=127.0.0.1:1", "--drain-timeout=3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	if a.OpaquePorts.String() != "6379" || a.InboundAddr != "127.0.0.1:1" || a.DrainTimeout != 3*time.Second {
		t.Errorf("got %s %s %v", a.OpaquePorts, a.InboundAddr, a.DrainTimeout)
	}
}

func TestBadInputNamed(t *testing.T) {
	tests := []struct {
		env     map[string]string
		args    []string
		mention string
	}{
		{map[string]string{contract.EnvProxyOpaquePorts: "25,x"}, nil, contract.EnvProxyOpaquePorts},
		{map[string]string{contract.EnvProxyInboundPorts: "70000"}, nil, contract.EnvProxyInboundPorts},
		{map[string]string{contract.EnvProxyLogLevel: "loud"}, nil, `"loud"`},
		{map[string]string{contract.EnvWorkloadKind: "Deployment", contract.EnvWorkloadName: "web"}, nil, contract.EnvWorkloadKind},
		{map[string]string{contract.EnvWorkloadKind: "deployment"}, nil, contract.EnvWorkloadName},
		{nil, []string{"--detect-timeout=0s"}, "--detect-timeout"},
		{nil, []string{"--outbound-addr-ipv6=127.0.0.1:4140"}, `--outbound-addr-ipv6 "127.0.0.1:4140"`},
		{nil, []string{"--outbound-addr-ipv6=[::ffff:127.0.0.1]:4140"}, `--outbound-addr-ipv6 "[::ffff:127.0.0.1]:4140"`},
		{nil, []string{"--outbound-addr-ipv6=::1"}, `--outbound-addr-ipv6 "::1"`},
	}
	for _, tt := range tests {
		for _, k := range []string{contract.EnvProxyOpaquePorts, contract.EnvProxyInboundPorts, contract.EnvProxyLogLevel, contract.EnvWorkloadKind, contract.EnvWorkloadName} {
			t.Setenv(k, tt.env[k])
		}
		o, err := parseFlags(tt.args, io.Discard)
		if err == nil {
			_, err = o.validate()
		}
		if err == nil || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("env %v args %v: error %v, want one naming %s", tt.env, tt.args, err, tt.mention)
		}
	}
	if _, err := parseFlags([]string{"--no-such-flag"}, io.Discard); err == nil {
		t.Error("unknown flag accepted")
	}
}

// The IPv6 outbound listener can be moved or turned off (empty).
func TestOutboundAddrIPv6Flag(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"--outbound-addr-ipv6=[::1]:14140", "[::1]:14140"},
		{"--outbound-addr-ipv6=", ""},
	} {
		o, err := parseFlags([]string{tc.arg}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		a, err := o.validate()
		if err != nil || a.OutboundAddrIPv6 != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.arg, a.OutboundAddrIPv6, err, tc.want)
		}
	}
}

func TestTapAddrFlag(t *testing.T) {
	o, err := parseFlags([]string{"--tap-addr", "127.0.0.1:14190"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.validate()
	if err != nil || a.TapAddr != "127.0.0.1:14190" {
		t.Fatalf("--tap-addr: %q %v", a.TapAddr, err)
	}
}

// The timeouts and the loopback ports come from the environment, and
// flags win over it.
func TestTimeoutFlagsAndEnv(t *testing.T) {
	t.Setenv(contract.EnvProxyHeadReadTimeout, "7s")
	t.Setenv(contract.EnvProxyKeepAliveTimeout, "2m")
	t.Setenv(contract.EnvProxyStreamIdleTimeout, "3m")
	t.Setenv(contract.EnvProxyOpaqueIdleTimeout, "45m")
	t.Setenv(contract.EnvProxyDrainTimeout, "9s")
	t.Setenv(contract.EnvProxyInboundLoopbackPorts, "8080,9090-9091")
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	if a.HeadReadTimeout != 7*time.Second || a.KeepAliveTimeout != 2*time.Minute || a.StreamIdleTimeout != 3*time.Minute ||
		a.OpaqueIdleTimeout != 45*time.Minute || a.DrainTimeout != 9*time.Second {
		t.Errorf("from env: %v %v %v %v %v", a.HeadReadTimeout, a.KeepAliveTimeout, a.StreamIdleTimeout, a.OpaqueIdleTimeout, a.DrainTimeout)
	}
	if a.InboundLoopbackPorts.String() != "8080,9090-9091" {
		t.Errorf("loopback ports from env: %s", a.InboundLoopbackPorts)
	}
	o, err = parseFlags([]string{"--head-read-timeout=1s", "--keepalive-timeout=2s", "--stream-idle-timeout=3s",
		"--opaque-idle-timeout=4s", "--drain-timeout=0s", "--inbound-loopback-ports=6060"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a, err = o.validate(); err != nil {
		t.Fatal(err)
	}
	if a.HeadReadTimeout != time.Second || a.KeepAliveTimeout != 2*time.Second || a.StreamIdleTimeout != 3*time.Second ||
		a.OpaqueIdleTimeout != 4*time.Second || a.DrainTimeout != 0 || a.InboundLoopbackPorts.String() != "6060" {
		t.Errorf("from flags: %v %v %v %v %v %s", a.HeadReadTimeout, a.KeepAliveTimeout, a.StreamIdleTimeout,
			a.OpaqueIdleTimeout, a.DrainTimeout, a.InboundLoopbackPorts)
	}
}

func TestTimeoutDefaults(t *testing.T) {
	for _, k := range []string{contract.EnvProxyHeadReadTimeout, contract.EnvProxyKeepAliveTimeout, contract.EnvProxyStreamIdleTimeout,
		contract.EnvProxyOpaqueIdleTimeout, contract.EnvProxyDrainTimeout, contract.EnvProxyInboundLoopbackPorts} {
		t.Setenv(k, "")
	}
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	d := app.Defaults()
	if a.HeadReadTimeout != d.HeadReadTimeout || a.KeepAliveTimeout != d.KeepAliveTimeout || a.StreamIdleTimeout != d.StreamIdleTimeout ||
		a.OpaqueIdleTimeout != d.OpaqueIdleTimeout || a.DrainTimeout != d.DrainTimeout || a.InboundLoopbackPorts.String() != "" {
		t.Errorf("defaults %+v", a)
	}
}

// Bad timeouts and port lists name the flag, the variable and the value.
func TestBadTimeoutsNamed(t *testing.T) {
	for _, tc := range []struct{ env, flag, value string }{
		{contract.EnvProxyHeadReadTimeout, "--head-read-timeout", "10"},
		{contract.EnvProxyHeadReadTimeout, "--head-read-timeout", "0s"},
		{contract.EnvProxyKeepAliveTimeout, "--keepalive-timeout", "-1s"},
		{contract.EnvProxyStreamIdleTimeout, "--stream-idle-timeout", "soon"},
		{contract.EnvProxyOpaqueIdleTimeout, "--opaque-idle-timeout", "0"},
		{contract.EnvProxyDrainTimeout, "--drain-timeout", "-5s"},
		{contract.EnvProxyDrainTimeout, "--drain-timeout", "20"},
		{contract.EnvProxyInboundLoopbackPorts, "--inbound-loopback-ports", "70000"},
	} {
		for _, viaEnv := range []bool{true, false} {
			t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
				var args []string
				if viaEnv {
					t.Setenv(tc.env, tc.value)
				} else {
					args = []string{tc.flag + "=" + tc.value}
				}
				o, err := parseFlags(args, io.Discard)
				if err == nil {
					_, err = o.validate()
				}
				if err == nil || !strings.Contains(err.Error(), tc.flag) || !strings.Contains(err.Error(), tc.env) ||
					!strings.Contains(err.Error(), tc.value) {
					t.Errorf("error %v, want one naming %s, %s and %q", err, tc.flag, tc.env, tc.value)
				}
			})
		}
	}
}

// A bad value makes the command exit 2 with the flag named on stderr.
func TestBadValueExits2(t *testing.T) {
	if os.Getenv("CONDUIT_PROXY_TEST_RUN_MAIN") == "1" {
		os.Args = []string{"conduit-proxy"}
		main()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadValueExits2$")
	cmd.Env = append(os.Environ(), "CONDUIT_PROXY_TEST_RUN_MAIN=1", contract.EnvProxyOpaqueIdleTimeout+"=forever")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2; stderr %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "--opaque-idle-timeout") || !strings.Contains(stderr.String(), `"forever"`) {
		t.Errorf("stderr %q does not name the flag and the value", stderr.String())
	}
}
