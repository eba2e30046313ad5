//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/cluster"
)

// checkGuard verifies the node's network hygiene while it is up: blackhole
// routes for the cluster ranges, and the API server's port unreachable from
// an interface other than loopback and the node's bridges. The "outside" is
// a network namespace this test makes, joined to the host by a veth pair;
// a host port outside the guarded list answers there, 6443 must not.
func checkGuard(t *testing.T) {
	t.Helper()
	routes := runOK(t, "ip", "route", "show", "type", "blackhole")
	for _, r := range []string{cluster.ServiceRange, cluster.PodRange} {
		if !strings.Contains(routes, r) {
			t.Errorf("no blackhole route for %s:\n%s", r, routes)
		}
	}

	ns := fmt.Sprintf("conduit-guard-%d", os.Getpid())
	hostIf, nsIf := fmt.Sprintf("cg%dh", os.Getpid()%100000), fmt.Sprintf("cg%dn", os.Getpid()%100000)
	const hostIP, nsIP = "192.168.251.1", "192.168.251.2"
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostIf).Run()
		exec.Command("ip", "netns", "delete", ns).Run()
	})
	runOK(t, "ip", "netns", "add", ns)
	runOK(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	runOK(t, "ip", "link", "set", nsIf, "netns", ns)
	runOK(t, "ip", "addr", "add", hostIP+"/30", "dev", hostIf)
	runOK(t, "ip", "link", "set", hostIf, "up")
	runOK(t, "ip", "netns", "exec", ns, "ip", "addr", "add", nsIP+"/30", "dev", nsIf)
	runOK(t, "ip", "netns", "exec", ns, "ip", "link", "set", nsIf, "up")

	// Control: an unguarded port on the host answers from the namespace.
	l, err := net.Listen("tcp", hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "open") }), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	defer srv.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-s", "--max-time", "5", fmt.Sprintf("http://%s:%d/", hostIP, port)).CombinedOutput(); err != nil || string(out) != "open" {
		t.Fatalf("control: unguarded host port %d not reachable from the test namespace: %v %s", port, err, out)
	}
	// The API server listens on every address, yet from outside it is dropped.
	out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-sk", "--max-time", "3", fmt.Sprintf("https://%s:%d/healthz", hostIP, cluster.APIServerPort)).CombinedOutput()
	if err == nil {
		t.Errorf("kube-apiserver reachable from a non-node interface: %s", out)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 28 {
		t.Errorf("want a timeout (dropped), got %v: %s", err, out)
	}
}
