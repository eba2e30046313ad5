package cluster

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// guardTable is the nftables table of the network hygiene rules.
const guardTable = "conduit_cluster_guard"

// controlPorts are the node's listening ports that must never be reached
// from outside the machine.
const controlPorts = "2379, 2380, 6443, 10248-10259, 30000-32767"

// blackholes keep anything addressed to the cluster ranges from leaving
// through the default route while kube-proxy or CNI is not ready; the pod
// /24 on cni0 and the node address stay more specific.
var blackholes = []string{ServiceRange, PodRange, NodeRange}

// sysctls the node needs; their previous values are restored at teardown.
var nodeSysctls = map[string]string{
	"net/ipv4/ip_forward":                 "1",
	"net/bridge/bridge-nf-call-iptables":  "1",
	"net/bridge/bridge-nf-call-ip6tables": "1",
}

// setupNetwork creates the node bridge and address, the blackhole routes and
// the guard table, and sets the forwarding sysctls.
func setupNetwork(ctx context.Context) error {
	if !linkExists(NodeBridge) {
		if _, err := run(ctx, "ip", "link", "add", NodeBridge, "type", "bridge"); err != nil {
			return err
		}
	}
	if out, _ := run(ctx, "ip", "-o", "addr", "show", "dev", NodeBridge); !strings.Contains(out, " "+NodeIP+"/32") {
		if _, err := run(ctx, "ip", "addr", "add", NodeIP+"/32", "dev", NodeBridge); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "ip", "link", "set", NodeBridge, "up"); err != nil {
		return err
	}
	for _, r := range blackholes {
		if _, err := run(ctx, "ip", "route", "replace", "blackhole", r); err != nil {
			return err
		}
	}
	// Both chains run before the filter tables kube-proxy and CNI write, and
	// a drop in any base chain is final.
	rules := fmt.Sprintf(`table inet %[1]s {
	chain input {
		type filter hook input priority -10; policy accept;
		iifname != { "lo", %[2]q, %[3]q } tcp dport { %[4]s } drop
		iifname != { "lo", %[2]q, %[3]q } udp dport { 30000-32767 } drop
	}
	chain forward {
		type filter hook forward priority -10; policy accept;
		iifname %[3]q oifname != %[3]q drop
		iifname %[2]q drop
	}
}
`, guardTable, NodeBridge, PodBridge, controlPorts)
	_, _ = run(ctx, "nft", "delete", "table", "inet", guardTable)
	if err := nftApply(ctx, rules); err != nil {
		return err
	}
	for k, v := range nodeSysctls {
		if err := writeSysctl(k, v); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(k, "/", "."), v, err)
		}
	}
	return nil
}

// teardownNetwork removes what setupNetwork and the node created. Missing
// pieces are not errors.
func teardownNetwork(ctx context.Context) {
	_, _ = run(ctx, "nft", "delete", "table", "inet", guardTable)
	for _, r := range blackholes {
		_, _ = run(ctx, "ip", "route", "del", "blackhole", r)
	}
	for _, l := range []string{PodBridge, NodeBridge} {
		if linkExists(l) {
			_, _ = run(ctx, "ip", "link", "del", l)
		}
	}
}

func nftApply(ctx context.Context, rules string) error {
	f, err := os.CreateTemp("", "conduit-nft-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(rules); err != nil {
		return err
	}
	f.Close()
	_, err = run(ctx, "nft", "-f", f.Name())
	return err
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + key)
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(key, value string) error {
	return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
}
