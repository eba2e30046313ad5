package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
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
	bin := buildInit(t)
	p := meshtest.NewPair(t)
	p.Client.InstallRedirect(t, bin, "--skip-outbound-ports=9000-9001,4191")
	p.Server.InstallRedirect(t, bin, "--skip-inbound-ports=9001")

	// Where connections can land, each answering with its name and the
	// connection's original destination.
	landing := map[string]struct {
		ns   *meshtest.NetNS
		addr string
	}{
		"client-outbound": {p.Client, fmt.Sprintf("127.0.0.1:%d", contract.ProxyOutboundPort)},
		"client-local":    {p.Client, "127.0.0.1:7000"},
		"server-inbound":  {p.Server, fmt.Sprintf("0.0.0.0:%d", contract.ProxyInboundPort)},
		"server-app-9001": {p.Server, "0.0.0.0:9001"},
		"server-admin":    {p.Server, fmt.Sprintf("0.0.0.0:%d", contract.ProxyAdminPort)},
	}
	for name, l := range landing {
		ln, err := l.ns.Listen("tcp4", l.addr)
		if err != nil {
			t.Fatalf("listen %s: %v", name, err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveOrigDst(ln, name)
	}

	server := meshtest.ServerAddr.String()
	for _, tc := range []struct {
		dial, wantAt, wantOrig string
	}{
		// Outbound TCP goes to the client's outbound proxy port, which sees
		// where it was going.
		{server + ":8080", "client-outbound", server + ":8080"},
		// A skipped outbound port leaves the pod and meets the server's
		// inbound redirect.
		{server + ":9000", "server-inbound", server + ":9000"},
		// Skipped on both sides: straight to the application.
		{server + ":9001", "server-app-9001", server + ":9001"},
		// The proxy's admin port is never redirected inbound.
		{server + ":4191", "server-admin", server + ":4191"},
		// Loopback is never redirected.
		{"127.0.0.1:7000", "client-local", "127.0.0.1:7000"},
	} {
		t.Run(tc.dial, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := p.Client.Dial(ctx, "tcp4", tc.dial)
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
			args := append(as.args, "curl", "-sS", "--max-time", "5", "telnet://"+server+":8080")
			out, err := p.Client.Output(ctx, args[0], args[1:]...)
			if err != nil && !strings.Contains(err.Error(), "exit status 28") {
				t.Fatalf("%v: %v", args, err)
			}
			if want := as.wantAt + " " + server + ":8080\n"; string(out) != want {
				t.Errorf("%v landed as %q, want %q", args, out, want)
			}
		}
	})
}

// serveOrigDst writes "NAME ORIGINAL-DESTINATION\n" on each connection and
// closes it.
func serveOrigDst(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		dst, err := originalDst(c.(*net.TCPConn))
		if err != nil {
			fmt.Fprintf(c, "%s error %v\n", name, err)
		} else {
			fmt.Fprintf(c, "%s %s\n", name, dst)
		}
		c.Close()
	}
}

// originalDst is the destination before NAT (SO_ORIGINAL_DST); for a
// connection that was not redirected it is the local address.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var addr netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		var mreq *unix.IPv6Mreq
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if serr != nil {
			return
		}
		// The option fills a sockaddr_in: family, port (big-endian), address.
		b := mreq.Multiaddr
		port := uint16(b[2])<<8 | uint16(b[3])
		addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), port)
	})
	if err != nil {
		return addr, err
	}
	if serr != nil {
		// Not NATed: conntrack has no entry to report; the local address is
		// where the connection was going.
		return c.LocalAddr().(*net.TCPAddr).AddrPort(), nil
	}
	return addr, nil
}
