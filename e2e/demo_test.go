//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/cluster"
	"github.com/conduitmesh/conduit/demo"
)

// TestDemo runs the flow of `make demo` on the local node and checks what
// it shows: every pod 2/2 Ready, the stat rows of the seed (voting and web
// below 100% success, emoji at 100%, vote-bot all dashes), and tap showing
// VoteDoughnut failing.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out bytes.Buffer
	o := demo.Defaults(repoRoot, io.MultiWriter(&out, logWriter{t}))
	o.StateFile = filepath.Join(t.TempDir(), "demo-state.json")
	o.Kubeconfig = cluster.KubeconfigPath(cluster.DefaultStateDir)
	o.TapFor = 10 * time.Second
	t.Cleanup(func() {
		if err := demo.Down(context.Background(), o); err != nil {
			t.Errorf("demo down: %v", err)
		}
	})
	if err := demo.Up(ctx, o); err != nil {
		t.Fatalf("demo up: %v", err)
	}
	shown := out.String()

	for _, app := range []string{"emoji", "voting", "web", "vote-bot"} {
		if !regexp.MustCompile(`(?m)^` + app + `-\S+\s+2/2\s+Running`).MatchString(shown) {
			t.Errorf("no %s pod 2/2 Running in:\n%s", app, shown)
		}
	}
	stat := statRows(t, shown)
	if got := stat["emoji"]; len(got) < 3 || got[1] != "100.00%" {
		t.Errorf("emoji row %v, want 100.00%% success", got)
	}
	for _, app := range []string{"voting", "web"} {
		if rate := successRate(t, stat[app]); rate >= 100 || rate <= 0 {
			t.Errorf("%s success %v, want below 100%% (doughnut votes fail)", app, stat[app])
		}
	}
	if got := stat["vote-bot"]; len(got) < 7 || got[1] != "-" || got[2] != "-" || got[3] != "-" {
		t.Errorf("vote-bot row %v, want dashes (it receives no traffic)", got)
	}

	// Tap, filtered to the failing method so the test need not wait for the
	// bot to pick the doughnut during the demo's few seconds.
	tapCtx, stopTap := context.WithTimeout(ctx, 90*time.Second)
	defer stopTap()
	cmd := exec.CommandContext(tapCtx, filepath.Join(repoRoot, "bin", "meshstat"), "tap", "deploy/voting", "-n", demo.Namespace,
		"--path", "/emojivoto.v1.VotingService/VoteDoughnut", "--kubeconfig", o.Kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stopTap()
	var sawReq, sawFailedEnd bool
	scan := bufio.NewScanner(stdout)
	for scan.Scan() && !(sawReq && sawFailedEnd) {
		line := scan.Text()
		if strings.HasPrefix(line, "req ") && strings.Contains(line, ":path=/emojivoto.v1.VotingService/VoteDoughnut") {
			sawReq = true
		}
		if strings.HasPrefix(line, "end ") && strings.Contains(line, "grpc-status=") && !strings.Contains(line, "grpc-status=OK") {
			sawFailedEnd = true
		}
	}
	if !sawReq || !sawFailedEnd {
		t.Errorf("tap showed no failing VoteDoughnut within 90 s (req %v, failed end %v)", sawReq, sawFailedEnd)
	}
}

// statRows reads the table the demo printed after `meshstat stat`.
func statRows(t *testing.T, shown string) map[string][]string {
	t.Helper()
	_, table, ok := strings.Cut(shown, "$ meshstat stat deploy")
	if !ok {
		t.Fatalf("no meshstat stat output in:\n%s", shown)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(line, "$") {
			break
		}
		rows[f[0]] = f[1:]
	}
	return rows
}

func successRate(t *testing.T, row []string) float64 {
	t.Helper()
	if len(row) < 2 {
		t.Fatalf("short stat row %v", row)
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(row[1], "%"), 64)
	if err != nil {
		t.Fatalf("success %q: %v", row[1], err)
	}
	return v
}
