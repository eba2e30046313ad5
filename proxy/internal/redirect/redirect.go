// Package redirect builds and installs the nftables table that sends a
// pod's TCP traffic through its proxy.
//
// The table is built as data first (Build returns a Table of chains and
// rules). The same data renders two ways: as netlink expressions that Apply
// installs in one atomic batch, and as the nft script that `nft list table`
// prints for it, so a dry run shows exactly what the kernel will hold.
//
// The table is in family inet, so one set of rules covers IPv4 and IPv6
// (NAT in the inet family needs Linux 5.2 or later). A redirect sends a
// packet to an address of the interface it arrived on (inbound) or to loopback (outbound:
// 127.0.0.1 for IPv4, ::1 for IPv6), so the proxy listens on both
// families. Apply also removes the IPv4-only `table ip conduit` that
// earlier versions installed.
package redirect

import (
	"fmt"
	"strings"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
)

// TableName is the one nftables table conduit-init owns, in TableFamily.
const TableName = "conduit"

// TableFamily is the table's nftables family: inet, IPv4 and IPv6 alike.
const TableFamily = "inet"

// LegacyTableFamily is the family of the IPv4-only table earlier versions
// installed under TableName; Apply deletes it.
const LegacyTableFamily = "ip"

// LoopbackInterface is the interface whose outbound traffic is never
// redirected: it carries connections to 127.0.0.0/8, to ::1 and to the
// pod's own addresses.
const LoopbackInterface = "lo"

// Config says where traffic goes and what bypasses the proxy.
type Config struct {
	// InboundProxyPort receives redirected inbound TCP.
	InboundProxyPort uint16
	// OutboundProxyPort, on 127.0.0.1 and ::1, receives redirected
	// outbound TCP.
	OutboundProxyPort uint16
	// ProxyUID is the proxy's uid; its own connections are not redirected.
	ProxyUID uint32
	// SkipInboundPorts are destination ports of inbound TCP that go
	// straight to the application. The proxy's tap and admin ports are
	// always skipped.
	SkipInboundPorts ports.List
	// SkipOutboundPorts are destination ports of outbound TCP that leave
	// the pod without the proxy.
	SkipOutboundPorts ports.List
}

// DefaultConfig is the configuration with the contract's ports and uid and
// no skipped ports.
func DefaultConfig() Config {
	return Config{
		InboundProxyPort:  contract.ProxyInboundPort,
		OutboundProxyPort: contract.ProxyOutboundPort,
		ProxyUID:          contract.ProxyUID,
	}
}

// Validate reports a configuration that cannot be installed.
func (c Config) Validate() error {
	if c.InboundProxyPort == 0 {
		return fmt.Errorf("inbound proxy port must be 1-65535, got 0")
	}
	if c.OutboundProxyPort == 0 {
		return fmt.Errorf("outbound proxy port must be 1-65535, got 0")
	}
	if c.InboundProxyPort == contract.ProxyTapPort || c.InboundProxyPort == contract.ProxyAdminPort {
		return fmt.Errorf("inbound proxy port %d collides with the proxy's tap/admin ports %d,%d",
			c.InboundProxyPort, contract.ProxyTapPort, contract.ProxyAdminPort)
	}
	if c.SkipInboundPorts.Contains(c.InboundProxyPort) {
		return fmt.Errorf("skip-inbound ports %s contain the inbound proxy port %d", c.SkipInboundPorts, c.InboundProxyPort)
	}
	return nil
}

// Hook is a netfilter hook a chain attaches to.
type Hook string

// Hooks used by the table.
const (
	HookPrerouting Hook = "prerouting"
	HookOutput     Hook = "output"
)

// PriorityDstNAT is the priority of both chains: that of destination NAT.
const PriorityDstNAT = -100

// Table is the whole table as data.
type Table struct {
	Family string // as nft names it: "inet"
	Name   string
	Chains []Chain
}

// Chain is a base NAT chain with policy accept.
type Chain struct {
	Name     string
	Hook     Hook
	Priority int32
	Rules    []Rule
}

// Rule matches a packet and applies a verdict.
type Rule struct {
	Match  Match
	Action Action
}

// Match is one condition on the first packet of a connection.
type Match interface {
	// nft prints the match as `nft list` does.
	nft() string
	isMatch()
}

// Action is what a rule does with a matching packet.
type Action interface {
	nft() string
	isAction()
}

// AnyTCP matches every TCP packet.
type AnyTCP struct{}

// DestPorts matches TCP packets whose destination port is in the range.
type DestPorts struct{ Range ports.Range }

// SocketUID matches packets sent by a socket owned by the uid.
type SocketUID struct{ UID uint32 }

// OutInterface matches packets routed out of the named interface.
type OutInterface struct{ Name string }

func (AnyTCP) isMatch()       {}
func (DestPorts) isMatch()    {}
func (SocketUID) isMatch()    {}
func (OutInterface) isMatch() {}

func (AnyTCP) nft() string { return "meta l4proto tcp" }
func (m DestPorts) nft() string {
	return "tcp dport " + m.Range.String()
}
func (m SocketUID) nft() string    { return fmt.Sprintf("meta skuid %d", m.UID) }
func (m OutInterface) nft() string { return fmt.Sprintf("oifname %q", m.Name) }

// Return leaves the chain: the packet is not redirected.
type Return struct{}

// RedirectTo rewrites the destination to a local address and the port.
type RedirectTo struct{ Port uint16 }

func (Return) isAction()     {}
func (RedirectTo) isAction() {}

func (Return) nft() string       { return "return" }
func (a RedirectTo) nft() string { return fmt.Sprintf("redirect to :%d", a.Port) }

// Build returns the table for the configuration. It assumes c is valid.
func Build(c Config) Table {
	in := Chain{Name: "prerouting", Hook: HookPrerouting, Priority: PriorityDstNAT}
	skipIn := c.SkipInboundPorts.Union(ports.Of(contract.ProxyTapPort, contract.ProxyAdminPort))
	for _, r := range skipIn.Ranges() {
		in.Rules = append(in.Rules, Rule{DestPorts{r}, Return{}})
	}
	in.Rules = append(in.Rules, Rule{AnyTCP{}, RedirectTo{c.InboundProxyPort}})

	out := Chain{Name: "output", Hook: HookOutput, Priority: PriorityDstNAT}
	out.Rules = append(out.Rules,
		Rule{SocketUID{c.ProxyUID}, Return{}},
		Rule{OutInterface{LoopbackInterface}, Return{}},
	)
	for _, r := range c.SkipOutboundPorts.Ranges() {
		out.Rules = append(out.Rules, Rule{DestPorts{r}, Return{}})
	}
	out.Rules = append(out.Rules, Rule{AnyTCP{}, RedirectTo{c.OutboundProxyPort}})

	return Table{Family: TableFamily, Name: TableName, Chains: []Chain{in, out}}
}

// Script renders the table in the canonical form `nft list table FAMILY
// NAME` prints. nft accepts it as input too.
func (t Table) Script() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s {\n", t.ID())
	for i, c := range t.Chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		fmt.Fprintf(&b, "\t\ttype nat hook %s priority %s; policy accept;\n", c.Hook, priorityName(c.Hook, c.Priority))
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s %s\n", r.Match.nft(), r.Action.nft())
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// ID is how nft names the table: "inet conduit".
func (t Table) ID() string { return t.Family + " " + t.Name }

// priorityName is how nft prints a priority: by name where nft has one for
// the hook (dstnat exists for prerouting only), else as a number.
func priorityName(h Hook, p int32) string {
	if h == HookPrerouting && p == PriorityDstNAT {
		return "dstnat"
	}
	return fmt.Sprint(p)
}
