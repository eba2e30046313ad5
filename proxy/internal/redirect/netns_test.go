package redirect

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/nftables"
)

// requireRoot skips the test only on a developer machine without root; in
// CI (env CI set) a test that cannot run fails.
func requireRoot(t *testing.T, programs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("needs root to create network namespaces (set CI=1 to make this a failure)")
		}
		t.Fatal("needs root to create network namespaces")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("needs %s: %v", p, err)
		}
	}
}

var netnsSeq atomic.Int32

// newNetNS creates a fresh network namespace and deletes it when the test ends.
func newNetNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("cdredir-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

var handleComment = regexp.MustCompile(` # handle \d+`)

// nftList is `nft list table inet conduit` in the namespace, with only what
// nft adds on its own (handle comments) removed.
func nftList(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", TableFamily, TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return handleComment.ReplaceAllString(string(out), "")
}

func TestApplyInNetNS(t *testing.T) {
	requireRoot(t, "ip", "nft")
	for name, c := range goldenConfigs() {
		t.Run(name, func(t *testing.T) {
			ns := newNetNS(t)
			tbl := Build(c)
			if err := Apply(tbl, InNetNS("/run/netns/"+ns)); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			first := nftList(t, ns)
			if first != tbl.Script() {
				t.Fatalf("nft list after Apply differs from the dry-run script:\n--- nft\n%s--- script\n%s", first, tbl.Script())
			}
			// Idempotent: the same table again, no rule twice.
			if err := Apply(tbl, InNetNS("/run/netns/"+ns)); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if again := nftList(t, ns); again != first {
				t.Fatalf("second Apply changed the table:\n--- before\n%s--- after\n%s", first, again)
			}
			assertRuleCounts(t, ns, tbl)
		})
	}
}

func TestApplyReplacesOldTable(t *testing.T) {
	requireRoot(t, "ip", "nft")
	ns := newNetNS(t)
	cfgs := goldenConfigs()
	wide, narrow := Build(cfgs["skip-ports"]), Build(cfgs["default"])
	if err := Apply(wide, InNetNS("/run/netns/"+ns)); err != nil {
		t.Fatal(err)
	}
	if err := Apply(narrow, InNetNS("/run/netns/"+ns)); err != nil {
		t.Fatal(err)
	}
	if got := nftList(t, ns); got != narrow.Script() {
		t.Fatalf("after replacing, nft list =\n%s\nwant\n%s", got, narrow.Script())
	}
	if got := nftTables(t, ns); got != "table inet conduit" {
		t.Errorf("tables in the namespace = %q, want only table inet conduit", got)
	}
}

// nftTables is `nft list tables` in the namespace, one table a line.
func nftTables(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// legacyScript is the IPv4-only table earlier versions of conduit-init
// installed.
const legacyScript = `table ip conduit {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 4190-4191 return
		meta l4proto tcp redirect to :4143
	}

	chain output {
		type nat hook output priority -100; policy accept;
		meta skuid 2102 return
		oifname "lo" return
		meta l4proto tcp redirect to :4140
	}
}
`

// A pod set up by an earlier version holds table ip conduit: Apply removes
// it in the same batch, and leaves tables it does not own alone.
func TestApplyRemovesLegacyTable(t *testing.T) {
	requireRoot(t, "ip", "nft")
	ns := newNetNS(t)
	other := "table ip other {\n\tchain c {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
	for _, script := range []string{legacyScript, other} {
		cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v: %s", err, out)
		}
	}
	if got := nftTables(t, ns); got != "table ip conduit\ntable ip other" {
		t.Fatalf("before Apply, tables = %q", got)
	}
	tbl := Build(DefaultConfig())
	if err := Apply(tbl, InNetNS("/run/netns/"+ns)); err != nil {
		t.Fatal(err)
	}
	if got := nftTables(t, ns); got != "table ip other\ntable inet conduit" {
		t.Errorf("after Apply, tables = %q, want table ip other and table inet conduit", got)
	}
	if got := nftList(t, ns); got != tbl.Script() {
		t.Errorf("after Apply, nft list =\n%s\nwant\n%s", got, tbl.Script())
	}
	// Applying again with no legacy table present works too.
	if err := Apply(tbl, InNetNS("/run/netns/"+ns)); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
}

// assertRuleCounts reads the rules back over netlink and checks each chain
// holds exactly the rules built, once.
func assertRuleCounts(t *testing.T, ns string, tbl Table) {
	t.Helper()
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	nt := &nftables.Table{Name: tbl.Name, Family: nftables.TableFamilyINet}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != len(tbl.Chains) {
		t.Fatalf("namespace has %d chains, want %d", len(chains), len(tbl.Chains))
	}
	for _, ch := range tbl.Chains {
		rules, err := c.GetRules(nt, &nftables.Chain{Name: ch.Name, Table: nt})
		if err != nil {
			t.Fatalf("rules of %s: %v", ch.Name, err)
		}
		if len(rules) != len(ch.Rules) {
			t.Errorf("chain %s holds %d rules, want %d", ch.Name, len(rules), len(ch.Rules))
		}
	}
}
