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

func baselinePath(stateDir string) string { return filepath.Join(stateDir, "baseline.json") }

// recordBaseline writes the baseline unless one exists (a second Up after a
// failed one must keep the first picture).
func recordBaseline(ctx context.Context, stateDir string) error {
	if _, err := os.Stat(baselinePath(stateDir)); err == nil {
		return nil
	}
	b := baseline{Sysctls: map[string]string{}, Paths: map[string]bool{}}
	for k := range nodeSysctls {
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
