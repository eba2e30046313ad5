package soak

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// soakFDKinds counts the proxy's descriptors by what they are: socket,
// anon_inode:[eventpoll], pipe, a path.
func soakFDKinds(pid int) (map[string]int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	kinds := map[string]int{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if i := strings.IndexByte(target, ':'); i > 0 && !strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "anon_inode") {
			target = target[:i] // socket:[123] and pipe:[456] by kind
		}
		kinds[target]++
	}
	return kinds, nil
}

// soakSockets groups the proxy's TCP sockets, as `ss -tanp` inside its
// namespace lists them, by state, local and peer address; a port that is
// neither the proxy's nor an application's (an ephemeral one) is shown as *.
func soakSockets(p *meshtest.Proxy) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := p.NS.Output(ctx, "ss", "-Htanp")
	if err != nil {
		return nil, err
	}
	return soakGroupSockets(string(out), p.PID()), nil
}

func soakGroupSockets(ss string, pid int) map[string]int {
	groups := map[string]int{}
	mark := "pid=" + strconv.Itoa(pid) + ","
	for _, line := range strings.Split(ss, "\n") {
		if !strings.Contains(line, mark) {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		groups[fmt.Sprintf("%-10s %s -> %s", f[0], soakEphemeral(f[3]), soakEphemeral(f[4]))]++
	}
	return groups
}

// soakKnownPorts are the ports shown in socket groups.
var soakKnownPorts = map[uint16]bool{
	contract.ProxyInboundPort: true, contract.ProxyOutboundPort: true,
	contract.ProxyTapPort: true, contract.ProxyAdminPort: true,
	soakHTTPPort: true, soakGRPCPort: true, soakOpaquePort: true, soakDetectedPort: true,
}

func soakEphemeral(addr string) string {
	ap, err := netip.ParseAddrPort(strings.ReplaceAll(addr, "*", "0.0.0.0"))
	if err != nil || soakKnownPorts[ap.Port()] {
		return addr
	}
	if ap.Addr().Is6() {
		return "[" + ap.Addr().String() + "]:*"
	}
	return ap.Addr().String() + ":*"
}

// soakCounts prints counts largest first, at most max lines.
func soakCounts(m map[string]int, limit int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i == limit {
			fmt.Fprintf(&b, "  ... %d more\n", len(keys)-limit)
			break
		}
		fmt.Fprintf(&b, "  %6d  %s\n", m[k], k)
	}
	return b.String()
}
