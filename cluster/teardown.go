package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Down stops the local node and undoes everything Up changed: processes (by
// pid), pods' sandboxes and network namespaces, mounts, bridges, routes,
// the guard table, iptables chains, cgroups, sysctls and files. Running it
// when nothing is up is not an error.
func Down(ctx context.Context, opts ...Option) error {
	o, err := newOptions(opts)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("tearing the local node down needs root")
	}
	unlock, err := lockPath(ctx, filepath.Join(o.CacheDir, "node.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	return down(ctx, o, opts)
}

// down is Down with the node lock held.
func down(ctx context.Context, o Options, opts []Option) error {
	n := &Node{o: o, bin: BinDir(o.CacheDir)}
	start := time.Now()
	base, haveBase := loadBaseline(o.StateDir)
	_, stateErr := os.Stat(o.StateDir)
	if stateErr != nil && len(Leftovers(ctx, opts...)) == 0 {
		n.step("node is already down")
		return nil
	}
	var problems []string
	note := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// Nothing may recreate or reschedule pods while they are deleted.
	for _, c := range []string{"kube-controller-manager", "kube-scheduler"} {
		n.comp(c).stop(10 * time.Second)
	}
	if n.comp("kube-apiserver").running() && n.comp("kubelet").running() {
		n.step("deleting pods")
		if err := n.deletePods(ctx, 60*time.Second); err != nil {
			n.step("pods were not all deleted cleanly (%v); killing what is left", err)
		}
	}
	n.step("stopping kube-proxy and kubelet")
	n.comp("kube-proxy").stop(10 * time.Second)
	n.comp("kubelet").stop(15 * time.Second)

	// Whatever still runs in a pod cgroup is killed directly, then the
	// containerd shims of this node (found by the node's socket path).
	killCgroupProcs("kubepods")
	n.step("stopping containerd and its shims")
	n.comp("containerd").stop(10 * time.Second)
	for _, pid := range pidsWithArg(n.sock()) {
		killAndWait(pid, 5*time.Second)
	}
	n.step("stopping kube-apiserver and etcd")
	n.comp("kube-apiserver").stop(15 * time.Second)
	n.comp("etcd").stop(10 * time.Second)

	n.step("removing mounts, network namespaces, chains, bridges, routes and cgroups")
	if haveBinaries(n.bin) {
		// Removes KUBE-* chains and rules of every proxy mode.
		_, _ = run(ctx, filepath.Join(n.bin, "kube-proxy"), "--cleanup", "--v=0")
	}
	unmountUnder(o.StateDir)
	for _, ns := range cniNetns() {
		if _, err := run(ctx, "ip", "netns", "delete", ns); err != nil {
			note("netns %s: %v", ns, err)
		}
	}
	deleteChains(ctx, "KUBE-", "CNI-")
	teardownNetwork(ctx)
	for _, ctl := range cgroupControllers() {
		removeCgroupTree(filepath.Join(ctl, "kubepods"))
	}

	if haveBase {
		for k, v := range base.Sysctls {
			if cur, err := readSysctl(k); err == nil && cur != v {
				if err := writeSysctl(k, v); err != nil {
					note("restoring sysctl %s: %v", k, err)
				}
			}
		}
		deleteNewIptablesTables(ctx, base.NftTables)
		for p, existed := range base.Paths {
			if existed {
				continue
			}
			// Shared with other tools: removed only when empty, or (for
			// containerd's folder) when no other containerd runs.
			if p == "/run/netns" || (p == "/run/containerd" && len(pidsWithExe("containerd", "containerd-shim-runc-v2")) > 0) {
				removeEmptyDirs(p)
				continue
			}
			unmountUnder(p)
			if err := os.RemoveAll(p); err != nil {
				note("removing %s: %v", p, err)
			}
		}
	}
	if err := os.RemoveAll(o.StateDir); err != nil {
		note("removing %s: %v", o.StateDir, err)
	}
	if left := Leftovers(ctx, opts...); len(left) > 0 {
		problems = append(problems, left...)
	}
	if len(problems) > 0 {
		return fmt.Errorf("teardown left things behind:\n  %s", strings.Join(problems, "\n  "))
	}
	n.step("node is down after %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// Leftovers lists anything of the node still present on the machine:
// processes, mounts, network namespaces, links, routes, nftables tables and
// chains, cgroups and the state folder. Empty means the machine is clean.
func Leftovers(ctx context.Context, opts ...Option) []string {
	o, err := newOptions(opts)
	if err != nil {
		return []string{err.Error()}
	}
	var left []string
	bin := BinDir(o.CacheDir)
	for _, pid := range allPids() {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if strings.HasPrefix(exe, bin+"/") {
			left = append(left, fmt.Sprintf("process %d (%s)", pid, exe))
		}
	}
	for _, pid := range pidsWithArg(filepath.Join(o.StateDir, "")) {
		left = append(left, fmt.Sprintf("process %d using %s", pid, o.StateDir))
	}
	for _, m := range mountsUnder(o.StateDir) {
		left = append(left, "mount "+m)
	}
	for _, ns := range cniNetns() {
		left = append(left, "netns "+ns)
	}
	for _, l := range []string{NodeBridge, PodBridge} {
		if linkExists(l) {
			left = append(left, "link "+l)
		}
	}
	if out, err := run(ctx, "ip", "route", "show", "type", "blackhole"); err == nil {
		for _, r := range blackholes {
			if strings.Contains(out, r) {
				left = append(left, "route blackhole "+r)
			}
		}
	}
	for _, t := range nftTables(ctx) {
		if t == "inet "+guardTable {
			left = append(left, "nft table "+t)
		}
	}
	for _, c := range chainsWithPrefix(ctx, "KUBE-", "CNI-") {
		left = append(left, "nft chain "+c)
	}
	for _, ctl := range cgroupControllers() {
		if _, err := os.Stat(filepath.Join(ctl, "kubepods")); err == nil {
			left = append(left, "cgroup "+filepath.Join(ctl, "kubepods"))
		}
	}
	if _, err := os.Stat(o.StateDir); err == nil {
		left = append(left, "folder "+o.StateDir)
	}
	return left
}

func allPids() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidsWithArg returns processes one of whose arguments contains s.
func pidsWithArg(s string) []int {
	var pids []int
	for _, pid := range allPids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a != "" && strings.Contains(a, s) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, strings.TrimSuffix(dir, "/")+"/") {
			ms = append(ms, mp)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	return ms
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

func unmountUnder(dir string) {
	for i := 0; i < 3; i++ {
		ms := mountsUnder(dir)
		if len(ms) == 0 {
			return
		}
		for _, m := range ms {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

// cniNetns are the network namespaces containerd made for pod sandboxes.
func cniNetns() []string {
	ents, _ := os.ReadDir("/run/netns")
	var ns []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "cni-") {
			ns = append(ns, e.Name())
		}
	}
	return ns
}

func cgroupControllers() []string {
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	var cs []string
	for _, e := range ents {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if st, err := os.Lstat(p); err == nil && st.IsDir() {
			cs = append(cs, p)
		}
	}
	return cs
}

// killCgroupProcs SIGKILLs every process in a cgroup named name (and below)
// in any controller, until none is left (or 5 s have passed), so that the
// cgroups can be removed.
func killCgroupProcs(name string) {
	kill := func() (left int) {
		for _, ctl := range cgroupControllers() {
			root := filepath.Join(ctl, name)
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						left++
					}
				}
				return nil
			})
		}
		return left
	}
	deadline := time.Now().Add(5 * time.Second)
	for kill() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCgroupTree removes a cgroup and its children, deepest first.
func removeCgroupTree(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		for i := 0; i < 20; i++ {
			if err := syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// chainsWithPrefix lists "family table chain" of chains named with one of
// prefixes, in the tables iptables-nft manages.
func chainsWithPrefix(ctx context.Context, prefixes ...string) []string {
	var chains []string
	for _, t := range nftTables(ctx) {
		f := strings.Fields(t)
		if !isIptablesTable(f[0], f[1]) {
			continue
		}
		out, err := run(ctx, "nft", "list", "table", f[0], f[1])
		if err != nil {
			continue
		}
		for _, l := range splitLines(out) {
			l = strings.TrimSpace(l)
			if !strings.HasPrefix(l, "chain ") {
				continue
			}
			name := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(l, "chain ")), " {")
			for _, p := range prefixes {
				if strings.HasPrefix(name, p) {
					chains = append(chains, t+" "+name)
				}
			}
		}
	}
	return chains
}

func isIptablesTable(family, name string) bool {
	if family != "ip" && family != "ip6" {
		return false
	}
	switch name {
	case "filter", "nat", "mangle", "raw", "security":
		return true
	}
	return false
}

// deleteChains removes chains named with the prefixes and every rule that
// jumps to them, using iptables so both the nft and rule views stay valid.
func deleteChains(ctx context.Context, prefixes ...string) {
	for _, c := range chainsWithPrefix(ctx, prefixes...) {
		f := strings.Fields(c) // family table chain
		ipt := "iptables"
		if f[0] == "ip6" {
			ipt = "ip6tables"
		}
		// Rules jumping to the chain from any chain of the table.
		out, _ := run(ctx, ipt, "-t", f[1], "-S")
		for _, l := range splitLines(out) {
			if strings.HasPrefix(l, "-A ") && (strings.Contains(l, " -j "+f[2]+" ") || strings.HasSuffix(l, " -j "+f[2])) {
				args := append([]string{"-t", f[1], "-D"}, strings.Fields(strings.TrimPrefix(l, "-A "))...)
				_, _ = run(ctx, ipt, args...)
			}
		}
		_, _ = run(ctx, ipt, "-t", f[1], "-F", f[2])
	}
	for _, c := range chainsWithPrefix(ctx, prefixes...) {
		f := strings.Fields(c)
		ipt := "iptables"
		if f[0] == "ip6" {
			ipt = "ip6tables"
		}
		_, _ = run(ctx, ipt, "-t", f[1], "-X", f[2])
	}
}

// deleteNewIptablesTables deletes iptables-nft tables that did not exist
// before Up and hold no rules now.
func deleteNewIptablesTables(ctx context.Context, before []string) {
	had := map[string]bool{}
	for _, t := range before {
		had[t] = true
	}
	for _, t := range nftTables(ctx) {
		f := strings.Fields(t)
		if had[t] || !isIptablesTable(f[0], f[1]) {
			continue
		}
		out, err := run(ctx, "nft", "list", "table", f[0], f[1])
		if err != nil || hasRules(out) {
			continue
		}
		_, _ = run(ctx, "nft", "delete", "table", f[0], f[1])
	}
}

func hasRules(listing string) bool {
	for _, l := range splitLines(listing) {
		l = strings.TrimSpace(l)
		switch {
		case l == "", l == "}", strings.HasPrefix(l, "table "), strings.HasPrefix(l, "chain "), strings.HasPrefix(l, "type "), strings.HasPrefix(l, "policy "):
		default:
			return true
		}
	}
	return false
}

// pidsWithExe lists processes whose executable's base name is one of names.
func pidsWithExe(names ...string) []int {
	var pids []int
	for _, pid := range allPids() {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		for _, n := range names {
			if filepath.Base(exe) == n {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeEmptyDirs removes root and the folders below it that are empty,
// deepest first; anything holding a file stays.
func removeEmptyDirs(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}
