package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ErrNoNetAdmin is wrapped by Apply's error when the kernel refused the
// change for lack of privilege.
var ErrNoNetAdmin = errors.New("permission denied changing nftables: the init container needs the NET_ADMIN and NET_RAW capabilities")

// Option changes how Apply reaches the kernel.
type Option func(*applyOptions)

type applyOptions struct {
	netnsPath string
}

// InNetNS applies the table in the network namespace at path (such as
// /run/netns/NAME) instead of the caller's.
func InNetNS(path string) Option {
	return func(o *applyOptions) { o.netnsPath = path }
}

// Apply installs the table, replacing any table of the same name and family,
// in one netlink batch: the kernel holds either the old table or the new
// one, never a mix, and applying the same table twice leaves one copy. The
// same batch deletes the IPv4-only table of the same name in family
// LegacyTableFamily, so a pod set up by an earlier version does not keep
// its rules beside the new ones.
func Apply(t Table, opts ...Option) error {
	var o applyOptions
	for _, opt := range opts {
		opt(&o)
	}
	family, err := tableFamily(t.Family)
	if err != nil {
		return fmt.Errorf("install table %s: %w", t.ID(), err)
	}
	var connOpts []nftables.ConnOption
	if o.netnsPath != "" {
		f, err := os.Open(o.netnsPath)
		if err != nil {
			return fmt.Errorf("open network namespace: %w", err)
		}
		defer f.Close()
		connOpts = append(connOpts, nftables.WithNetNSFd(int(f.Fd())))
	}
	c, err := nftables.New(connOpts...)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	queue(c, t, family)
	if err := c.Flush(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("install table %s: %w (%v)", t.ID(), ErrNoNetAdmin, err)
		}
		return fmt.Errorf("install table %s: %w", t.ID(), err)
	}
	return nil
}

// tableFamily is the netlink family of an nft family name.
func tableFamily(name string) (nftables.TableFamily, error) {
	switch name {
	case "inet":
		return nftables.TableFamilyINet, nil
	case "ip":
		return nftables.TableFamilyIPv4, nil
	case "ip6":
		return nftables.TableFamilyIPv6, nil
	}
	return 0, fmt.Errorf("unknown nftables family %q (want inet, ip or ip6)", name)
}

// queue adds the batch to c: add the table (so deleting it cannot fail when
// absent), delete it with everything in it, then create it afresh. The
// legacy table goes the same way, unless it is the table being installed.
func queue(c *nftables.Conn, t Table, family nftables.TableFamily) {
	if t.Family != LegacyTableFamily {
		legacy := &nftables.Table{Name: t.Name, Family: nftables.TableFamilyIPv4} // LegacyTableFamily
		c.AddTable(legacy)
		c.DelTable(legacy)
	}
	nt := &nftables.Table{Name: t.Name, Family: family}
	c.AddTable(nt)
	c.DelTable(nt)
	c.AddTable(nt)
	accept := nftables.ChainPolicyAccept
	for _, ch := range t.Chains {
		prio := nftables.ChainPriority(ch.Priority)
		nc := c.AddChain(&nftables.Chain{
			Name:     ch.Name,
			Table:    nt,
			Type:     nftables.ChainTypeNAT,
			Hooknum:  hookNum(ch.Hook),
			Priority: &prio,
			Policy:   &accept,
		})
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: nt, Chain: nc, Exprs: Exprs(r)})
		}
	}
}

func hookNum(h Hook) *nftables.ChainHook {
	switch h {
	case HookPrerouting:
		return nftables.ChainHookPrerouting
	case HookOutput:
		return nftables.ChainHookOutput
	}
	panic(fmt.Sprintf("redirect: unknown hook %q", h))
}

// Exprs is the rule as the netlink expressions nft itself generates for its
// script form, so that `nft list` prints the rule back the same way.
func Exprs(r Rule) []expr.Any {
	var es []expr.Any
	switch m := r.Match.(type) {
	case AnyTCP:
		es = tcpOnly()
	case DestPorts:
		es = append(tcpOnly(), &expr.Payload{
			DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2,
		})
		if m.Range.First == m.Range.Last {
			es = append(es, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(m.Range.First)})
		} else {
			es = append(es,
				&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: be16(m.Range.First)},
				&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: be16(m.Range.Last)},
			)
		}
	case SocketUID:
		es = []expr.Any{
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(m.UID)},
		}
	case OutInterface:
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, m.Name)
		es = []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		}
	default:
		panic(fmt.Sprintf("redirect: unknown match %T", r.Match))
	}
	switch a := r.Action.(type) {
	case Return:
		es = append(es, &expr.Verdict{Kind: expr.VerdictReturn})
	case RedirectTo:
		es = append(es,
			&expr.Immediate{Register: 1, Data: be16(a.Port)},
			&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
		)
	default:
		panic(fmt.Sprintf("redirect: unknown action %T", r.Action))
	}
	return es
}

func tcpOnly() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
