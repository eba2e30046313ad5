package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Validation is a running validation-only control plane: etcd and
// kube-apiserver on loopback, enough for `kubectl apply --server-side
// --dry-run=server` and other API checks. No pod ever runs.
type Validation struct {
	// Kubeconfig is the path of an admin kubeconfig for this API server.
	Kubeconfig string
	// Server is the API server URL.
	Server string
	cp     controlPlane
}

// StartValidationCluster starts etcd and kube-apiserver on free loopback
// ports with their files under dir. Stop it with Stop.
func StartValidationCluster(ctx context.Context, dir string, opts ...Option) (*Validation, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if !o.SkipPackages {
		if err := EnsurePackages(ctx, func(s string) { fmt.Fprintln(o.Progress, s) }, ValidationPackages...); err != nil {
			return nil, err
		}
	}
	bin, err := ensureBinaries(ctx, o)
	if err != nil {
		return nil, err
	}
	ports, err := freeLoopbackPorts(3)
	if err != nil {
		return nil, err
	}
	v := &Validation{cp: controlPlane{
		stateDir: dir, binDir: bin,
		etcdClient: ports[0], etcdPeer: ports[1], apiPort: ports[2],
		bindAddress: "127.0.0.1", advertiseAddr: "127.0.0.1", loopbackOnly: true,
	}}
	v.Server = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	v.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	specs := []certSpec{
		{name: "apiserver", cn: "kube-apiserver", server: true, ips: []string{"127.0.0.1"}, dns: []string{"localhost"}},
		{name: "admin", cn: "conduit-admin", orgs: []string{"system:masters"}, client: true},
	}
	if err := writePKI(v.cp.pkiDir(), specs); err != nil {
		return nil, err
	}
	if err := writeKubeconfig(v.Kubeconfig, v.cp.pkiDir(), "admin", v.Server); err != nil {
		return nil, err
	}
	if err := v.cp.startEtcd(ctx); err != nil {
		v.Stop()
		return nil, err
	}
	if err := v.cp.startAPIServer(ctx); err != nil {
		v.Stop()
		return nil, err
	}
	return v, nil
}

// Stop ends kube-apiserver and etcd. Their files stay in the folder the
// caller gave.
func (v *Validation) Stop() {
	v.cp.apiserver().stop(10 * time.Second)
	v.cp.etcd().stop(10 * time.Second)
}

// StartValidation starts a validation-only control plane for one test and
// returns its admin kubeconfig path; it stops when the test ends. Without
// root (and outside CI) the test is skipped, since the harness may need to
// install etcd; any other failure fails the test.
func StartValidation(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("the validation control plane needs root (set CI to force)")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	v, err := StartValidationCluster(ctx, dir, WithProgress(testWriter{t}))
	if err != nil {
		t.Fatalf("validation control plane: %v", err)
	}
	t.Cleanup(v.Stop)
	return v.Kubeconfig
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
