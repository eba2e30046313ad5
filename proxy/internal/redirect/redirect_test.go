package redirect

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables/expr"

	"github.com/conduitmesh/conduit/pkg/ports"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestBuildDefault(t *testing.T) {
	got := Build(DefaultConfig())
	want := Table{Family: "inet", Name: "conduit", Chains: []Chain{
		{Name: "prerouting", Hook: HookPrerouting, Priority: -100, Rules: []Rule{
			{DestPorts{ports.Range{First: 4190, Last: 4191}}, Return{}},
			{AnyTCP{}, RedirectTo{4143}},
		}},
		{Name: "output", Hook: HookOutput, Priority: -100, Rules: []Rule{
			{SocketUID{2102}, Return{}},
			{OutInterface{"lo"}, Return{}},
			{AnyTCP{}, RedirectTo{4140}},
		}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Build(default) =\n%#v\nwant\n%#v", got, want)
	}
}

func TestBuildSkipPorts(t *testing.T) {
	c := DefaultConfig()
	c.SkipInboundPorts = ports.MustParse("22, 4192, 8000-8010")
	c.SkipOutboundPorts = ports.MustParse("3306,25")
	tbl := Build(c)

	in := tbl.Chains[0].Rules
	// 4192 merges with the always-skipped 4190-4191.
	wantIn := []ports.Range{{First: 22, Last: 22}, {First: 4190, Last: 4192}, {First: 8000, Last: 8010}}
	if len(in) != len(wantIn)+1 {
		t.Fatalf("prerouting has %d rules, want %d: %#v", len(in), len(wantIn)+1, in)
	}
	for i, r := range wantIn {
		if in[i] != (Rule{DestPorts{r}, Return{}}) {
			t.Errorf("prerouting rule %d = %#v, want skip %v", i, in[i], r)
		}
	}
	if last := in[len(in)-1]; last != (Rule{AnyTCP{}, RedirectTo{4143}}) {
		t.Errorf("prerouting ends with %#v, want the redirect to 4143", last)
	}

	out := tbl.Chains[1].Rules
	// Order matters: the proxy's uid and loopback leave before any skip port
	// or the redirect is considered.
	want := []Rule{
		{SocketUID{2102}, Return{}},
		{OutInterface{"lo"}, Return{}},
		{DestPorts{ports.Range{First: 25, Last: 25}}, Return{}},
		{DestPorts{ports.Range{First: 3306, Last: 3306}}, Return{}},
		{AnyTCP{}, RedirectTo{4140}},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("output rules =\n%#v\nwant\n%#v", out, want)
	}
}

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		mod     func(*Config)
		wantErr string
	}{
		"default":                {func(*Config) {}, ""},
		"zero inbound":           {func(c *Config) { c.InboundProxyPort = 0 }, "inbound proxy port"},
		"zero outbound":          {func(c *Config) { c.OutboundProxyPort = 0 }, "outbound proxy port"},
		"inbound is admin":       {func(c *Config) { c.InboundProxyPort = 4191 }, "collides"},
		"skip the proxy port":    {func(c *Config) { c.SkipInboundPorts = ports.MustParse("4000-4200") }, "contain the inbound proxy port 4143"},
		"skip outbound is ok":    {func(c *Config) { c.SkipOutboundPorts = ports.MustParse("1-65535") }, ""},
		"other inbound port":     {func(c *Config) { c.InboundProxyPort = 15001 }, ""},
		"other outbound port":    {func(c *Config) { c.OutboundProxyPort = 15006 }, ""},
		"skip inbound elsewhere": {func(c *Config) { c.SkipInboundPorts = ports.MustParse("1-4142") }, ""},
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// goldenConfigs are the configurations whose scripts are kept in testdata.
func goldenConfigs() map[string]Config {
	skip := DefaultConfig()
	skip.SkipInboundPorts = ports.MustParse("22,8000-8010")
	skip.SkipOutboundPorts = ports.MustParse("3306,25,6379-6380")
	other := skip
	other.InboundProxyPort, other.OutboundProxyPort, other.ProxyUID = 15006, 15001, 1337
	return map[string]Config{"default": DefaultConfig(), "skip-ports": skip, "other-ports": other}
}

func TestScriptGolden(t *testing.T) {
	for name, c := range goldenConfigs() {
		t.Run(name, func(t *testing.T) {
			got := Build(c).Script()
			path := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Script() differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}

// The table covers both address families under one name; nft names it so
// in the script's first line.
func TestScriptNamesInetTable(t *testing.T) {
	tbl := Build(DefaultConfig())
	if tbl.ID() != "inet conduit" {
		t.Errorf("ID() = %q, want \"inet conduit\"", tbl.ID())
	}
	first, _, _ := strings.Cut(tbl.Script(), "\n")
	if first != "table inet conduit {" {
		t.Errorf("script starts %q, want \"table inet conduit {\"", first)
	}
	// Nothing in the rules is specific to one family: no addresses, no
	// ip/ip6 payload matches.
	for _, bad := range []string{"ip ", "ip6 ", "127.0.0.1", "::1"} {
		if strings.Contains(tbl.Script(), bad) {
			t.Errorf("script mentions %q:\n%s", bad, tbl.Script())
		}
	}
}

// An unknown family is refused before the kernel is asked.
func TestApplyUnknownFamily(t *testing.T) {
	tbl := Build(DefaultConfig())
	tbl.Family = "bridge"
	err := Apply(tbl)
	if err == nil || !strings.Contains(err.Error(), `install table bridge conduit: unknown nftables family "bridge"`) {
		t.Fatalf("Apply(family bridge) = %v, want an error naming the family", err)
	}
}

func TestExprsMatchNft(t *testing.T) {
	// The byte layouts below are what `nft --debug=netlink` shows for the
	// same rules; the kernel stores them and nft prints them back.
	rangeRule := Exprs(Rule{DestPorts{ports.Range{First: 4190, Last: 4191}}, Return{}})
	if len(rangeRule) != 6 {
		t.Fatalf("range rule has %d expressions, want 6: %#v", len(rangeRule), rangeRule)
	}
	if c := rangeRule[3].(*expr.Cmp); c.Op != expr.CmpOpGte || !reflect.DeepEqual(c.Data, []byte{0x10, 0x5e}) {
		t.Errorf("range lower bound = %#v, want gte 0x105e", c)
	}
	if c := rangeRule[4].(*expr.Cmp); c.Op != expr.CmpOpLte || !reflect.DeepEqual(c.Data, []byte{0x10, 0x5f}) {
		t.Errorf("range upper bound = %#v, want lte 0x105f", c)
	}

	single := Exprs(Rule{DestPorts{ports.Range{First: 22, Last: 22}}, Return{}})
	if c := single[3].(*expr.Cmp); c.Op != expr.CmpOpEq || !reflect.DeepEqual(c.Data, []byte{0, 22}) {
		t.Errorf("single port = %#v, want eq 0x0016", c)
	}

	redir := Exprs(Rule{AnyTCP{}, RedirectTo{4140}})
	if im := redir[2].(*expr.Immediate); !reflect.DeepEqual(im.Data, []byte{0x10, 0x2c}) {
		t.Errorf("redirect port = %#v, want 0x102c", im)
	}
	if _, ok := redir[3].(*expr.Redir); !ok {
		t.Errorf("redirect rule ends with %T, want *expr.Redir", redir[3])
	}

	lo := Exprs(Rule{OutInterface{"lo"}, Return{}})
	if c := lo[1].(*expr.Cmp); len(c.Data) != 16 || string(c.Data[:3]) != "lo\x00" {
		t.Errorf("oifname compare = %q, want \"lo\" padded to 16 bytes", c.Data)
	}
}
