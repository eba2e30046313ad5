package cluster

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// baseline is what the machine looked like before the first Up, so Down can
// put back exactly that.
type baseline struct {
	Sysctls   map[string]string `json:"sysctls"`
	Paths     map[string]bool   `json:"paths"` // path → existed before
	NftTables []string          `json:"nftTables"`
}

// hostPaths are folders outside the state dir that the node's programs
// create on their own (kubelet's pod log links, CNI's cache, containerd's
// shim sockets, the netns mount folder).
var hostPaths = []string{
	"/var/log/pods", "/var/log/containers", "/var/lib/cni", "/run/containerd",
	"/run/netns", "/var/lib/kubelet", "/var/lib/containerd", "/opt/containerd", "/etc/cni",
}

// tunedSysctls are host settings the kubelet (kernel tunables) and
// kube-proxy (conntrack) may change on their own; Down puts them back.
var tunedSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
	"net/ipv4/conf/all/route_localnet",
}

// WatchedSysctls are every sysctl (as a /proc/sys path) the node may change
// and Down restores, sorted.
func WatchedSysctls() []string {
	keys := append([]string(nil), tunedSysctls...)
	for k := range nodeSysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func baselinePath(stateDir string) string { return filepath.Join(stateDir, "baseline.json") }

// recordBaseline writes the baseline unless one exists (a second Up after a
// failed one must keep the first picture).
func recordBaseline(ctx context.Context, stateDir string) error {
	if _, err := os.Stat(baselinePath(stateDir)); err == nil {
		return nil
	}
	b := baseline{Sysctls: map[string]string{}, Paths: map[string]bool{}}
	for _, k := range WatchedSysctls() {
		v, err := readSysctl(k)
		if err == nil {
			b.Sysctls[k] = v
		}
	}
	for _, p := range hostPaths {
		_, err := os.Lstat(p)
		b.Paths[p] = err == nil
	}
	b.NftTables = nftTables(ctx)
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(baselinePath(stateDir), data, 0o600)
}

func loadBaseline(stateDir string) (baseline, bool) {
	var b baseline
	data, err := os.ReadFile(baselinePath(stateDir))
	if err != nil {
		return b, false
	}
	return b, json.Unmarshal(data, &b) == nil
}

// nftTables lists "family name" of every nftables table, sorted.
func nftTables(ctx context.Context) []string {
	out, err := run(ctx, "nft", "list", "tables")
	if err != nil {
		return nil
	}
	var ts []string
	for _, l := range splitLines(out) {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "table" {
			ts = append(ts, f[1]+" "+f[2])
		}
	}
	sort.Strings(ts)
	return ts
}
