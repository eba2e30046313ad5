package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
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
