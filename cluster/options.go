package cluster

import (
	"io"
	"os"
	"path/filepath"
)

// KubernetesVersion is the Kubernetes release the harness builds and runs.
// The nested module in k8sbin/ pins the same version.
const KubernetesVersion = "v1.32.13"

// Addresses and ranges of the local node. The node address lives on a bridge
// with no ports, so nothing sent to it can leave the machine.
const (
	NodeName       = "conduit-node"
	NodeIP         = "10.200.0.1"
	NodeBridge     = "lab0"
	NodeRange      = "10.200.0.0/24"
	PodBridge      = "cni0"
	PodRange       = "10.244.0.0/16"
	NodePodCIDR    = "10.244.0.0/24"
	ServiceRange   = "10.96.0.0/16"
	APIServiceIP   = "10.96.0.1"
	ClusterDNSIP   = "10.96.0.10"
	APIServerPort  = 6443
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
	KubeletPort    = 10250
	// PauseImage is the sandbox image the harness builds and imports.
	PauseImage = "conduit.local/pause:v1"
)

// Options configures where the harness keeps its files and what it reports.
// Build one with New-style functional options; the zero value is not used.
type Options struct {
	// StateDir holds everything a running cluster owns: PKI, configs, data,
	// logs and pid files. Down removes it.
	StateDir string
	// CacheDir holds the built Kubernetes binaries, one folder per version.
	// It survives Down on purpose.
	CacheDir string
	// SourceDir is the root of the Conduit repository (for building the
	// Kubernetes binaries and the pause image).
	SourceDir string
	// Images are docker-archive tarballs imported into containerd after the
	// node starts.
	Images []string
	// Progress receives one line per step and periodic progress of long steps.
	Progress io.Writer
	// SkipPackages skips the apt-get check (the packages are known present).
	SkipPackages bool
}

// Option changes Options.
type Option func(*Options)

// WithStateDir sets the folder of the running cluster's files.
func WithStateDir(dir string) Option { return func(o *Options) { o.StateDir = dir } }

// WithCacheDir sets the folder of the built Kubernetes binaries.
func WithCacheDir(dir string) Option { return func(o *Options) { o.CacheDir = dir } }

// WithSourceDir sets the Conduit repository root.
func WithSourceDir(dir string) Option { return func(o *Options) { o.SourceDir = dir } }

// WithImages adds docker-archive tarballs to import into the node's containerd.
func WithImages(paths ...string) Option {
	return func(o *Options) { o.Images = append(append([]string(nil), o.Images...), paths...) }
}

// WithProgress sets where progress lines go (default: discarded).
func WithProgress(w io.Writer) Option { return func(o *Options) { o.Progress = w } }

// WithSkipPackages skips the Debian package check.
func WithSkipPackages() Option { return func(o *Options) { o.SkipPackages = true } }

// DefaultStateDir and DefaultCacheDir are used when no option overrides them.
const (
	DefaultStateDir = "/var/lib/conduit-cluster"
	DefaultCacheDir = "/var/cache/conduit"
)

func newOptions(opts []Option) (Options, error) {
	o := Options{StateDir: DefaultStateDir, CacheDir: DefaultCacheDir, Progress: io.Discard}
	for _, opt := range opts {
		opt(&o)
	}
	if o.SourceDir == "" {
		dir, err := FindSourceDir()
		if err != nil {
			return o, err
		}
		o.SourceDir = dir
	}
	return o, nil
}

// FindSourceDir walks up from the working directory to the Conduit
// repository root (the folder whose go.mod names the module).
func FindSourceDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && hasModuleLine(string(b), "github.com/conduitmesh/conduit") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errorf("cannot find the Conduit repository root above the working directory (go.mod with module github.com/conduitmesh/conduit); run from inside the repository")
		}
		dir = parent
	}
}

func hasModuleLine(gomod, module string) bool {
	for _, line := range splitLines(gomod) {
		if line == "module "+module {
			return true
		}
	}
	return false
}
