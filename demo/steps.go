package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Render builds a kustomization the way Argo CD does, in process, with
// exec functions enabled and the repository's bin/ (conduit-inject) first
// on PATH.
func Render(sourceDir, dir string) ([]byte, error) {
	bin := filepath.Join(sourceDir, "bin")
	if _, err := os.Stat(filepath.Join(bin, "conduit-inject")); err != nil {
		return nil, fmt.Errorf("%s: conduit-inject is missing (make build): %w", bin, err)
	}
	if !strings.HasPrefix(os.Getenv("PATH"), bin+string(os.PathListSeparator)) {
		os.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	opts := krusty.MakeDefaultOptions()
	opts.PluginConfig = types.EnabledPluginConfig(types.BploUseStaticallyLinked)
	opts.PluginConfig.FnpLoadingOptions.EnableExec = true
	res, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return res.AsYaml()
}

// apply renders dir and applies it: Namespaces first, since the API server
// refuses objects in a namespace that does not exist yet.
func apply(ctx context.Context, k kube, sourceDir, dir string) error {
	manifests, err := Render(sourceDir, dir)
	if err != nil {
		return err
	}
	var namespaces []string
	for _, doc := range strings.Split(string(manifests), "\n---\n") {
		if strings.Contains("\n"+doc, "\nkind: Namespace\n") {
			namespaces = append(namespaces, doc)
		}
	}
	for _, docs := range []string{strings.Join(namespaces, "\n---\n"), string(manifests)} {
		if strings.TrimSpace(docs) == "" {
			continue
		}
		if _, err := k.run(ctx, strings.NewReader(docs), "apply", "--server-side", "--force-conflicts", "-f", "-"); err != nil {
			return err
		}
	}
	return nil
}

func deleteRendered(ctx context.Context, k kube, sourceDir, dir string) error {
	manifests, err := Render(sourceDir, dir)
	if err != nil {
		return err
	}
	_, err = k.run(ctx, strings.NewReader(string(manifests)), "delete", "--ignore-not-found", "--wait=false", "-f", "-")
	return err
}

// podList is the part of `kubectl get pods -o json` the demo reads.
type podList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Phase      string `json:"phase"`
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

// readyCount counts the pods that are Ready, of those that should be.
func readyCount(b []byte) (ready, total int, err error) {
	var pods podList
	if err := json.Unmarshal(b, &pods); err != nil {
		return 0, 0, err
	}
	for _, p := range pods.Items {
		if p.Status.Phase == "Succeeded" {
			continue
		}
		total++
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				ready++
			}
		}
	}
	return ready, total, nil
}

// waitReady waits until every pod in ns is Ready, printing progress.
func waitReady(ctx context.Context, k kube, ns string, limit time.Duration, out io.Writer) error {
	deadline := time.Now().Add(limit)
	last := ""
	for {
		b, err := k.run(ctx, nil, "get", "pods", "-n", ns, "-o", "json")
		if err != nil {
			return err
		}
		ready, total, err := readyCount([]byte(b))
		if err != nil {
			return err
		}
		line := fmt.Sprintf("    %s: %d/%d pods Ready", ns, ready, total)
		if line != last {
			fmt.Fprintln(out, line)
			last = line
		}
		if total > 0 && ready == total {
			return nil
		}
		if time.Now().After(deadline) {
			pods, _ := k.run(ctx, nil, "get", "pods", "-n", ns, "-o", "wide")
			events, _ := k.run(ctx, nil, "get", "events", "-n", ns, "--sort-by=.lastTimestamp")
			return fmt.Errorf("pods in %s not Ready after %s:\n%s\n%s", ns, limit, pods, tail(events, 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// meshstat runs bin/meshstat against the demo's cluster.
func meshstat(ctx context.Context, k kube, o Options, args ...string) *exec.Cmd {
	if k.kubeconfig != "" {
		args = append(args, "--kubeconfig", k.kubeconfig)
	}
	c := exec.CommandContext(ctx, filepath.Join(o.SourceDir, "bin", "meshstat"), args...)
	// Stop it as a user would, with Ctrl-C.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGINT) }
	c.WaitDelay = 5 * time.Second
	return c
}

// statRow is the part of `meshstat stat -o json` the demo reads.
type statRow struct {
	Name        string   `json:"name"`
	RPS         *float64 `json:"rps"`
	SuccessRate *float64 `json:"success_rate"`
}

// waitForTraffic waits until Prometheus shows what the demo is about: rates
// for emoji, voting and web, with voting and web below 100% success once a
// doughnut vote has failed. The bot picks the doughnut about one vote in
// ten, so the first scrapes can hold none; after the deadline the table is
// shown as it is, as long as there is traffic at all.
func waitForTraffic(ctx context.Context, k kube, o Options) (string, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := meshstat(ctx, k, o, "stat", "deploy", "-n", Namespace, "-o", "json").Output()
		traffic := err == nil && hasRates(out, "emoji", "voting", "web")
		if traffic && (hasFailures(out, "voting", "web") || time.Now().After(deadline)) {
			table, err := meshstat(ctx, k, o, "stat", "deploy", "-n", Namespace).CombinedOutput()
			if err != nil {
				return "", fmt.Errorf("meshstat stat: %v\n%s", err, table)
			}
			return string(table), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no traffic seen by Prometheus after 3 minutes (meshstat: %v, %s)", err, out)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

// hasRates says whether every named row has a request rate above zero.
func hasRates(statJSON []byte, names ...string) bool {
	return every(statJSON, names, func(r statRow) bool { return r.RPS != nil && *r.RPS > 0 })
}

// hasFailures says whether every named row has a success rate below 100%.
func hasFailures(statJSON []byte, names ...string) bool {
	return every(statJSON, names, func(r statRow) bool { return r.SuccessRate != nil && *r.SuccessRate < 1 })
}

func every(statJSON []byte, names []string, ok func(statRow) bool) bool {
	var rows []statRow
	if err := json.Unmarshal(statJSON, &rows); err != nil {
		return false
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if ok(r) {
			seen[r.Name] = true
		}
	}
	for _, n := range names {
		if !seen[n] {
			return false
		}
	}
	return true
}

// tap shows a few seconds of live requests to voting.
func tap(ctx context.Context, k kube, o Options) error {
	ctx, cancel := context.WithTimeout(ctx, o.TapFor)
	defer cancel()
	c := meshstat(ctx, k, o, "tap", "deploy/voting", "-n", Namespace)
	c.Stdout, c.Stderr = o.Out, o.Out
	if err := c.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("meshstat tap: %w", err)
	}
	return nil
}
