package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
	"github.com/conduitmesh/conduit/proxy/internal/origdst"
)

// buildInit builds only conduit-init, so the redirect can be tested on its
// own.
func buildInit(t *testing.T) meshtest.Binaries {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "conduit-init")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/conduit-init").CombinedOutput(); err != nil {
		t.Fatalf("go build conduit-init: %v: %s", err, out)
	}
	return meshtest.Binaries{Init: bin}
}

// TestRedirect checks conduit-init's rules with the traffic itself: test
// listeners stand where the proxies listen and report each connection's
// original destination, so every rule is seen to send traffic where it
// should.
func TestRedirect(t *testing.T) {
	meshtest.RequireRoot(t, "curl")
	p := meshtest.NewPair(t)
	checkRedirect(t, p, redirectFamily{
		network: "tcp4", loopback: "127.0.0.1", any: "0.0.0.0",
		server: func(port int) string { return net.JoinHostPort(meshtest.ServerAddr.String(), strconv.Itoa(port)) },
	})
}

// TestRedirectIPv6 is TestRedirect with IPv6 traffic alone: the inet table
// redirects it by the same rules.
func TestRedirectIPv6(t *testing.T) {
	meshtest.RequireRoot(t, "curl")
	p := meshtest.NewPair(t)
	p.AddIPv6(t)
	checkRedirect(t, p, redirectFamily{
		network: "tcp6", loopback: "::1", any: "::", server: authority6,
		curlArgs: []string{"-g"}, // an IPv6 literal in the URL is not a glob
	})
}

// redirectFamily is what checkRedirect needs to know of an address family.
type redirectFamily struct {
	network       string // "tcp4" or "tcp6"
	loopback, any string
	server        func(port int) string // host:port in the server namespace
	curlArgs      []string
}

func checkRedirect(t *testing.T, p *meshtest.Pair, f redirectFamily) {
	bin := buildInit(t)
	p.Client.InstallRedirect(t, bin, "--skip-outbound-ports=9000-9001,4191")
	p.Server.InstallRedirect(t, bin, "--skip-inbound-ports=9001")
	at := func(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

	// Where connections can land, each answering with its name and the
	// connection's original destination.
	landing := map[string]struct {
		ns   *meshtest.NetNS
		addr string
	}{
		"client-outbound": {p.Client, at(f.loopback, contract.ProxyOutboundPort)},
		"client-local":    {p.Client, at(f.loopback, 7000)},
		"server-inbound":  {p.Server, at(f.any, contract.ProxyInboundPort)},
		"server-app-9001": {p.Server, at(f.any, 9001)},
		"server-admin":    {p.Server, at(f.any, contract.ProxyAdminPort)},
	}
	for name, l := range landing {
		ln, err := l.ns.Listen(f.network, l.addr)
		if err != nil {
			t.Fatalf("listen %s: %v", name, err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveOrigDst(ln, name)
	}

	for _, tc := range []struct {
		dial, wantAt, wantOrig string
	}{
		// Outbound TCP goes to the client's outbound proxy port, which sees
		// where it was going.
		{f.server(8080), "client-outbound", f.server(8080)},
		// A skipped outbound port leaves the pod and meets the server's
		// inbound redirect.
		{f.server(9000), "server-inbound", f.server(9000)},
		// Skipped on both sides: straight to the application.
		{f.server(9001), "server-app-9001", f.server(9001)},
		// The proxy's admin port is never redirected inbound.
		{f.server(4191), "server-admin", f.server(4191)},
		// Loopback is never redirected.
		{at(f.loopback, 7000), "client-local", at(f.loopback, 7000)},
	} {
		t.Run(tc.dial, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := p.Client.Dial(ctx, f.network, tc.dial)
			if err != nil {
				t.Fatalf("dial %s: %v", tc.dial, err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatalf("read from %s: %v", tc.dial, err)
			}
			if want := tc.wantAt + " " + tc.wantOrig + "\n"; line != want {
				t.Errorf("connection to %s landed as %q, want %q", tc.dial, line, want)
			}
		})
	}

	// The proxy's own uid is exempt from the outbound redirect: curl as
	// that uid reaches the server side's inbound port instead of the
	// client's outbound port.
	t.Run("proxy uid", func(t *testing.T) {
		uid := strconv.Itoa(contract.ProxyUID)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, as := range []struct {
			args   []string
			wantAt string
		}{
			{[]string{"setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups"}, "server-inbound"},
			{nil, "client-outbound"},
		} {
			args := append(append(as.args, "curl"), f.curlArgs...)
			args = append(args, "-sS", "--max-time", "5", "telnet://"+f.server(8080))
			out, err := p.Client.Output(ctx, args[0], args[1:]...)
			if err != nil && !strings.Contains(err.Error(), "exit status 28") {
				t.Fatalf("%v: %v", args, err)
			}
			if want := as.wantAt + " " + f.server(8080) + "\n"; string(out) != want {
				t.Errorf("%v landed as %q, want %q", args, out, want)
			}
		}
	})
}

// serveOrigDst writes "NAME ORIGINAL-DESTINATION\n" on each connection and
// closes it; a connection that was not redirected reports its local
// address, where it was going.
func serveOrigDst(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		dst, err := origdst.Lookup(c)
		switch {
		case errors.Is(err, origdst.ErrNotRedirected):
			fmt.Fprintf(c, "%s %s\n", name, c.LocalAddr())
		case err != nil:
			fmt.Fprintf(c, "%s error %v\n", name, err)
		default:
			fmt.Fprintf(c, "%s %s\n", name, dst)
		}
		go lingerClose(c)
	}
}

// lingerClose half-closes c and reads until the peer closes (5 s at most)
// before closing: a close with unread bytes (curl's telnet negotiation)
// sends a reset, which can reach curl before it has read the line.
func lingerClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c)
	c.Close()
}
