// Package demo runs Conduit's walkthrough: the control plane and the
// injected emojivoto app on a cluster, then the mesh's view of the app.
//
// Up uses the cluster of the current kubeconfig context when one answers,
// otherwise it brings up the local node (package cluster) and remembers
// that it did, so Down can take it away again.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/conduitmesh/conduit/cluster"
	"github.com/conduitmesh/conduit/pkg/contract"
)

// Namespace is where emojivoto runs.
const Namespace = "emojivoto"

// Options say where the demo's pieces are. Build them with Defaults.
type Options struct {
	SourceDir  string        // the Conduit repository
	StateFile  string        // records what Up added, for Down
	Kubeconfig string        // empty: kubectl's own choice (KUBECONFIG, ~/.kube/config)
	Images     []string      // docker archives to load into the local node
	Wait       time.Duration // how long pods may take to become Ready
	TapFor     time.Duration // how long to show live requests
	Out        io.Writer
}

// Defaults returns the options `make demo` uses, rooted at the repository.
func Defaults(sourceDir string, out io.Writer) Options {
	dist := filepath.Join(sourceDir, "dist")
	var images []string
	for _, name := range []string{"conduit-proxy", "prometheus", "emojivoto-emoji", "emojivoto-voting", "emojivoto-web", "emojivoto-vote-bot"} {
		images = append(images, filepath.Join(dist, name+".tar"))
	}
	return Options{
		SourceDir:  sourceDir,
		StateFile:  filepath.Join(dist, "demo-state.json"),
		Kubeconfig: os.Getenv("KUBECONFIG"),
		Images:     images,
		Wait:       5 * time.Minute,
		TapFor:     5 * time.Second,
		Out:        out,
	}
}

func (o Options) validate() error {
	if o.Out == nil {
		return errors.New("no output writer")
	}
	for _, p := range o.Images {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("image %s is missing (make image prometheus-image emojivoto-images builds it): %w", p, err)
		}
	}
	return nil
}

// state is what Up added, for Down.
type state struct {
	Kubeconfig   string `json:"kubeconfig"`
	StartedLocal bool   `json:"startedLocalNode"`
	AddedDNS     bool   `json:"addedDNS"`
}

// step prints a stage and how long it took.
type stepper struct {
	out   io.Writer
	start time.Time
	name  string
}

func (s *stepper) begin(format string, args ...any) {
	s.end()
	s.name = fmt.Sprintf(format, args...)
	s.start = time.Now()
	fmt.Fprintf(s.out, "==> %s\n", s.name)
}

func (s *stepper) end() {
	if s.name != "" {
		fmt.Fprintf(s.out, "    %s: done in %s\n", s.name, time.Since(s.start).Round(100*time.Millisecond))
		s.name = ""
	}
}

// kube runs kubectl against the demo's cluster.
type kube struct {
	kubeconfig string
	stderr     io.Writer
}

func (k kube) cmd(ctx context.Context, stdin io.Reader, args ...string) *exec.Cmd {
	if k.kubeconfig != "" {
		args = append([]string{"--kubeconfig", k.kubeconfig}, args...)
	}
	c := exec.CommandContext(ctx, "kubectl", args...)
	c.Stdin = stdin
	return c
}

// run runs kubectl and returns its stdout; its stderr is in the error.
func (k kube) run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	c := k.cmd(ctx, stdin, args...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

// reachable reports whether the cluster answers within a few seconds.
func (k kube) reachable(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := k.run(ctx, nil, "--request-timeout=5s", "get", "--raw", "/readyz")
	return err == nil
}

// Up runs the walkthrough. It is safe to run again.
func Up(ctx context.Context, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	s := &stepper{out: o.Out}
	defer s.end()
	st := loadState(o.StateFile)

	s.begin("finding a cluster")
	k := kube{kubeconfig: o.Kubeconfig, stderr: o.Out}
	local := cluster.KubeconfigPath(cluster.DefaultStateDir)
	switch {
	case st.StartedLocal || o.Kubeconfig == local:
		k.kubeconfig = local
		fallthrough
	case !k.reachable(ctx):
		if k.kubeconfig != local {
			fmt.Fprintln(o.Out, "    no cluster answers in the current kubeconfig context: bringing up the local node")
		}
		wasUp := len(cluster.Leftovers(ctx)) > 0
		kubeconfig, err := cluster.Up(ctx, cluster.WithImages(o.Images...), cluster.WithProgress(indent(o.Out)),
			cluster.WithSourceDir(o.SourceDir))
		if err != nil {
			return err
		}
		if !wasUp {
			st.StartedLocal = true
		}
		k.kubeconfig = kubeconfig
	default:
		fmt.Fprintln(o.Out, "    using the cluster of the current kubeconfig context (images must be pullable there)")
	}
	st.Kubeconfig = k.kubeconfig
	if err := saveState(o.StateFile, st); err != nil {
		return err
	}

	if k.kubeconfig == local {
		s.begin("cluster DNS on the local node")
		added, err := cluster.EnsureDNS(ctx, k.kubeconfig, cluster.WithProgress(indent(o.Out)), cluster.WithSourceDir(o.SourceDir))
		if err != nil {
			return err
		}
		if added {
			st.AddedDNS = true
			if err := saveState(o.StateFile, st); err != nil {
				return err
			}
		}
	}

	s.begin("applying the control plane (overlays/local)")
	if err := apply(ctx, k, o.SourceDir, filepath.Join(o.SourceDir, "overlays", "local")); err != nil {
		return err
	}
	s.begin("applying emojivoto, injected by conduit-inject")
	if err := apply(ctx, k, o.SourceDir, filepath.Join(o.SourceDir, "examples", "emojivoto")); err != nil {
		return err
	}

	s.begin("waiting for the pods to be Ready")
	for _, ns := range []string{contract.DefaultControlPlaneNamespace, Namespace} {
		if err := waitReady(ctx, k, ns, o.Wait, o.Out); err != nil {
			return err
		}
	}

	s.begin("waiting for Prometheus to see the app's traffic")
	stat, err := waitForTraffic(ctx, k, o)
	if err != nil {
		return err
	}
	s.end()

	for _, ns := range []string{contract.DefaultControlPlaneNamespace, Namespace} {
		fmt.Fprintf(o.Out, "\n$ kubectl get pods -n %s\n", ns)
		out, err := k.run(ctx, nil, "get", "pods", "-n", ns)
		if err != nil {
			return err
		}
		fmt.Fprint(o.Out, out)
	}
	fmt.Fprintf(o.Out, "\n$ meshstat stat deploy -n %s\n%s", Namespace, stat)
	fmt.Fprintf(o.Out, "\n$ meshstat tap deploy/voting -n %s   (%s)\n", Namespace, o.TapFor)
	if err := tap(ctx, k, o); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, `
emojivoto is running, meshed by Conduit.
  Open it:      kubectl%s -n emojivoto port-forward svc/web-svc 8080:80   then http://localhost:8080
  Watch it:     bin/meshstat stat deploy -n emojivoto;  bin/meshstat tap deploy/web -n emojivoto
  Tear down:    make demo-down
`, kubeconfigFlag(k.kubeconfig))
	return nil
}

func kubeconfigFlag(path string) string {
	if path == "" {
		return ""
	}
	return " --kubeconfig " + path
}

// Down removes what Up added: emojivoto, the control plane, the DNS addon
// it added, and the local node if Up brought it up.
func Down(ctx context.Context, o Options) error {
	st := loadState(o.StateFile)
	s := &stepper{out: o.Out}
	defer s.end()
	k := kube{kubeconfig: st.Kubeconfig, stderr: o.Out}
	if st.StartedLocal {
		s.begin("tearing down the local node the demo brought up")
		if err := cluster.Down(ctx, cluster.WithProgress(indent(o.Out))); err != nil {
			return err
		}
	} else if k.reachable(ctx) {
		s.begin("deleting emojivoto and the control plane")
		for _, dir := range []string{filepath.Join("examples", "emojivoto"), filepath.Join("overlays", "local")} {
			if err := deleteRendered(ctx, k, o.SourceDir, filepath.Join(o.SourceDir, dir)); err != nil {
				return err
			}
		}
		if st.AddedDNS {
			if err := cluster.RemoveDNS(ctx, k.kubeconfig); err != nil {
				return err
			}
		}
	}
	s.begin("forgetting the demo's state")
	if err := os.Remove(o.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func loadState(path string) state {
	var st state
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

func saveState(path string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// indent prefixes every line written with four spaces.
func indent(w io.Writer) io.Writer { return &prefixWriter{w: w, prefix: "    ", atStart: true} }

type prefixWriter struct {
	w       io.Writer
	prefix  string
	atStart bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var buf bytes.Buffer
	for _, c := range b {
		if p.atStart {
			buf.WriteString(p.prefix)
		}
		buf.WriteByte(c)
		p.atStart = c == '\n'
	}
	if _, err := p.w.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
