//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/cluster"
	"github.com/conduitmesh/conduit/internal/testutil"
)

// machineState is what the harness may touch on the host, as seen from
// outside the harness's own bookkeeping.
type machineState struct {
	Links     string
	Routes    string
	NftTables string
	Netns     string
	Sysctls   string
	Mounts    int
}

func snapshot(t *testing.T) machineState {
	t.Helper()
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return string(b)
	}
	var s machineState
	for _, l := range strings.Split(out("ip", "-o", "link", "show"), "\n") {
		// Other tools' short-lived veths come and go; the harness's links
		// are the bridges and their veths.
		if strings.Contains(l, cluster.NodeBridge) || strings.Contains(l, cluster.PodBridge) || strings.Contains(l, "master "+cluster.PodBridge) {
			s.Links += l + "\n"
		}
	}
	for _, r := range strings.Split(out("ip", "route", "show", "table", "all"), "\n") {
		for _, pfx := range []string{"10.96.", "10.244.", "10.200."} {
			if strings.Contains(r, pfx) {
				s.Routes += r + "\n"
			}
		}
	}
	s.NftTables = out("nft", "list", "tables")
	for _, e := range mustReadDir("/run/netns") {
		if strings.HasPrefix(e, "cni-") {
			s.Netns += e + "\n"
		}
	}
	for _, k := range cluster.WatchedSysctls() {
		b, _ := os.ReadFile("/proc/sys/" + k)
		s.Sysctls += k + "=" + string(b)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	s.Mounts = strings.Count(string(mi), cluster.DefaultStateDir)
	return s
}

func mustReadDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestHarnessIdempotent brings the node up twice and down twice: no step
// fails, the second up reuses the running node, and afterwards the machine
// looks as it did before (no process, mount, netns, link, route, nftables
// table, chain, cgroup, sysctl or folder of the node is left).
func TestHarnessIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if left := cluster.Leftovers(ctx); len(left) > 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("a node is already up before the test (%d leftovers):\n%s", len(left), strings.Join(left, "\n"))
		}
		t.Skipf("a node is already up on this machine (%d leftovers); run make cluster-down first", len(left))
	}
	before := snapshot(t)
	progress := cluster.WithProgress(logWriter{t})

	start := time.Now()
	kc1, err := cluster.Up(ctx, progress)
	if err != nil {
		t.Fatalf("first up: %v", err)
	}
	t.Logf("first up took %s", time.Since(start).Round(100*time.Millisecond))
	pidBefore, _ := os.ReadFile(cluster.DefaultStateDir + "/pids/kube-apiserver.pid")
	start = time.Now()
	kc2, err := cluster.Up(ctx, progress)
	if err != nil {
		t.Fatalf("second up: %v", err)
	}
	t.Logf("second up took %s", time.Since(start).Round(100*time.Millisecond))
	if kc1 != kc2 {
		t.Errorf("kubeconfig changed between ups: %s, %s", kc1, kc2)
	}
	pidAfter, _ := os.ReadFile(cluster.DefaultStateDir + "/pids/kube-apiserver.pid")
	if string(pidBefore) != string(pidAfter) || len(pidBefore) == 0 {
		t.Errorf("second up restarted kube-apiserver (pid file %q, then %q)", pidBefore, pidAfter)
	}
	// A running pod gives teardown a sandbox, netns, veth, mounts and
	// cgroups to remove.
	kubectl(t, kc1, "apply", "-f", "-", "<<", pausePod)
	kubectl(t, kc1, "wait", "--for=condition=Ready", "pod/hello", "--timeout=90s")
	checkGuard(t)
	checkNoPull(t, kc1)
	during := snapshot(t)
	if during.Netns == "" || !strings.Contains(during.Links, "master "+cluster.PodBridge) {
		t.Errorf("a running pod should have a cni- netns and a veth on %s: %+v", cluster.PodBridge, during)
	}
	if reflect.DeepEqual(before, during) {
		t.Errorf("the node changed nothing visible on the host while up: %+v", during)
	}

	start = time.Now()
	if err := cluster.Down(ctx, progress); err != nil {
		t.Fatalf("first down: %v", err)
	}
	t.Logf("first down took %s", time.Since(start).Round(100*time.Millisecond))
	if err := cluster.Down(ctx, progress); err != nil {
		t.Fatalf("second down: %v", err)
	}
	if left := cluster.Leftovers(ctx); len(left) > 0 {
		t.Errorf("leftovers after down:\n%s", strings.Join(left, "\n"))
	}
	after := snapshot(t)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("machine differs after down:\nbefore %+v\nafter  %+v", before, after)
	}
}

const pausePod = `apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: default
spec:
  containers:
  - name: pause
    image: ` + cluster.PauseImage + `
    imagePullPolicy: Never
`

// checkNoPull wants a pull of an image the node lacks to fail at once on the
// loopback proxy containerd is given, never trying a registry.
func checkNoPull(t *testing.T, kc string) {
	t.Helper()
	kubectl(t, kc, "run", "nopull", "--image=conduit.local/absent:v1", "--restart=Never")
	testutil.Eventually(t, 60*time.Second, time.Second, func() error {
		ev := kubectl(t, kc, "get", "events", "--field-selector", "involvedObject.name=nopull", "-o", "jsonpath={.items[*].message}")
		if !strings.Contains(ev, "proxyconnect tcp: dial tcp 127.0.0.1:9") {
			return fmt.Errorf("pull of a missing image did not fail on the loopback proxy; events: %s", ev)
		}
		return nil
	})
	kubectl(t, kc, "delete", "pod", "nopull", "--wait=false")
}
