package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conduitmesh/conduit/pkg/ports"
	"github.com/conduitmesh/conduit/proxy/internal/redirect"
)

func TestDryRunPrintsScript(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"--dry-run", "--skip-inbound-ports=8000-8010, 22", "--skip-outbound-ports", "3306",
		"--inbound-proxy-port=15006", "--outbound-proxy-port=15001", "--proxy-uid=1337"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	want := redirect.Build(redirect.Config{
		InboundProxyPort: 15006, OutboundProxyPort: 15001, ProxyUID: 1337,
		SkipInboundPorts:  ports.MustParse("22,8000-8010"),
		SkipOutboundPorts: ports.MustParse("3306"),
	}).Script()
	if stdout.String() != want {
		t.Errorf("dry run printed\n%s\nwant\n%s", stdout.String(), want)
	}
	if stderr.Len() != 0 {
		t.Errorf("dry run wrote to stderr: %s", stderr.String())
	}
}

func TestDryRunDefaults(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--dry-run"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "table inet conduit {\n") {
		t.Errorf("default dry run does not start with the inet table (IPv4 and IPv6):\n%s", stdout.String())
	}
	for _, s := range []string{"redirect to :4143", "redirect to :4140", "meta skuid 2102 return", "tcp dport 4190-4191 return"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("default dry run lacks %q:\n%s", s, stdout.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--skip-inbound-ports=80,http"}, `--skip-inbound-ports: port list item "http"`},
		{[]string{"--skip-outbound-ports=90-80"}, `--skip-outbound-ports: port range "90-80"`},
		{[]string{"--skip-outbound-ports=70000"}, "port 70000 is outside 1-65535"},
		{[]string{"--inbound-proxy-port=0"}, "--inbound-proxy-port=0: a port must be 1-65535"},
		{[]string{"--outbound-proxy-port=65536"}, "--outbound-proxy-port=65536: a port must be 1-65535"},
		{[]string{"--proxy-uid=-1"}, `invalid argument "-1" for "--proxy-uid"`},
		{[]string{"--proxy-uid=0"}, "--proxy-uid=0"},
		{[]string{"--skip-inbound-ports=4143"}, "contain the inbound proxy port 4143"},
		{[]string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"--dry-run", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// --dry-run keeps a wrongly accepted configuration off the host.
			code := run(append([]string{"--dry-run"}, tc.args...), &stdout, &stderr)
			if code == 0 {
				t.Fatalf("exit 0 for %v, want non-zero", tc.args)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q despite the error", stdout.String())
			}
		})
	}
}

// TestInstallInNetNS runs the real binary in a fresh network namespace: it
// installs the table that --dry-run prints, twice without change, and
// explains a missing NET_ADMIN.
func TestInstallInNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("needs root to create network namespaces (set CI=1 to make this a failure)")
		}
		t.Fatal("needs root to create network namespaces")
	}
	for _, p := range []string{"ip", "nft", "setpriv"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("needs %s: %v", p, err)
		}
	}
	bin := filepath.Join(t.TempDir(), "conduit-init")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	ns := fmt.Sprintf("cdinit-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	args := []string{"--skip-inbound-ports=22,8080-8090", "--skip-outbound-ports=3306"}
	dry, err := exec.Command(bin, append(args, "--dry-run")...).Output()
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}

	// Without privilege: a clear error, non-zero exit, nothing installed.
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("unprivileged run succeeded: %s", out)
	}
	if !strings.Contains(string(out), "needs the NET_ADMIN and NET_RAW capabilities") {
		t.Errorf("unprivileged run said %q, want it to name NET_ADMIN and NET_RAW", out)
	}
	if out, _ := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput(); len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("failed run left tables: %s", out)
	}

	for i := range 2 {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v: %s", i+1, err, out)
		}
		if want := "conduit-init: installed table inet conduit (2 chains, 8 rules; IPv4 and IPv6)\n"; string(out) != want {
			t.Errorf("run %d said %q, want %q", i+1, out, want)
		}
		listed, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "conduit").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, listed)
		}
		if string(listed) != string(dry) {
			t.Fatalf("after run %d nft lists\n%s\nbut --dry-run printed\n%s", i+1, listed, dry)
		}
	}
}
