// Command conduit-init installs the nftables redirect that sends a pod's
// TCP traffic, IPv4 and IPv6, through its conduit-proxy, then exits. It runs as the pod's
// init container with NET_ADMIN and NET_RAW.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/proxy/internal/redirect"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed flags.
type options struct {
	inboundProxyPort  int
	outboundProxyPort int
	proxyUID          uint32
	skipInboundPorts  string
	skipOutboundPorts string
	dryRun            bool
}

// validate checks the flags and turns them into the redirect configuration.
func (o options) validate() (redirect.Config, error) {
	var c redirect.Config
	for _, p := range []struct {
		flag string
		val  int
		dst  *uint16
	}{
		{contract.InitFlagInboundProxyPort, o.inboundProxyPort, &c.InboundProxyPort},
		{contract.InitFlagOutboundProxyPort, o.outboundProxyPort, &c.OutboundProxyPort},
	} {
		if p.val < 1 || p.val > 65535 {
			return c, fmt.Errorf("--%s=%d: a port must be 1-65535", p.flag, p.val)
		}
		*p.dst = uint16(p.val)
	}
	if o.proxyUID == 0 {
		return c, fmt.Errorf("--%s=0: uid 0 would exempt every root process from the redirect", contract.InitFlagProxyUID)
	}
	c.ProxyUID = o.proxyUID
	var err error
	if c.SkipInboundPorts, err = ports.Parse(o.skipInboundPorts); err != nil {
		return c, fmt.Errorf("--%s: %w", contract.InitFlagSkipInboundPorts, err)
	}
	if c.SkipOutboundPorts, err = ports.Parse(o.skipOutboundPorts); err != nil {
		return c, fmt.Errorf("--%s: %w", contract.InitFlagSkipOutboundPorts, err)
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// run parses args, then prints or installs the table. It returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("conduit-init", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.inboundProxyPort, contract.InitFlagInboundProxyPort, contract.ProxyInboundPort, "port inbound TCP is redirected to")
	fs.IntVar(&o.outboundProxyPort, contract.InitFlagOutboundProxyPort, contract.ProxyOutboundPort, "port on 127.0.0.1 and ::1 outbound TCP is redirected to")
	fs.Uint32Var(&o.proxyUID, contract.InitFlagProxyUID, contract.ProxyUID, "uid of the proxy, whose own traffic is not redirected")
	fs.StringVar(&o.skipInboundPorts, contract.InitFlagSkipInboundPorts, "", "inbound destination ports that bypass the proxy, e.g. 22,8000-8010")
	fs.StringVar(&o.skipOutboundPorts, contract.InitFlagSkipOutboundPorts, "", "outbound destination ports that bypass the proxy, e.g. 3306")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the table as an nft script and change nothing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "conduit-init: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "conduit-init: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := o.validate()
	if err != nil {
		fmt.Fprintf(stderr, "conduit-init: %v\n", err)
		return 2
	}
	if err := Run(cfg, o.dryRun, stdout); err != nil {
		fmt.Fprintf(stderr, "conduit-init: %v\n", err)
		return 1
	}
	return 0
}

// Run prints the table (dry run) or installs it and says so.
func Run(cfg redirect.Config, dryRun bool, stdout io.Writer) error {
	t := redirect.Build(cfg)
	if dryRun {
		_, err := io.WriteString(stdout, t.Script())
		return err
	}
	if err := redirect.Apply(t); err != nil {
		return err
	}
	n := 0
	for _, c := range t.Chains {
		n += len(c.Rules)
	}
	_, err := fmt.Fprintf(stdout, "conduit-init: installed table %s (%d chains, %d rules; IPv4 and IPv6)\n", t.ID(), len(t.Chains), n)
	return err
}
