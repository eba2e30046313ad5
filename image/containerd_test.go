package image

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestDockerArchiveImportsIntoContainerd starts a private containerd (its own
// root, state and socket in a temp dir, CRI off), imports the archive with
// `ctr images import` as the local node does, and lists it by tag.
func TestDockerArchiveImportsIntoContainerd(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("containerd needs root")
	}
	for _, prog := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("%s (Debian package containerd) is required: %v", prog, err)
		}
	}
	idx := smallIndex(t)
	img, err := ImageFor(idx, twoPlatforms[0])
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ctrd-") // short: the socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tag, _ := name.NewTag("ghcr.io/conduitmesh/app:v1")
	archive := filepath.Join(dir, "app.tar")
	if err := WriteDockerArchive(archive, tag, img); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "c.sock")
	config := "version = 2\n" +
		"root = \"" + filepath.Join(dir, "root") + "\"\n" +
		"state = \"" + filepath.Join(dir, "state") + "\"\n" +
		"disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n" +
		"[grpc]\n  address = \"" + sock + "\"\n" +
		"[ttrpc]\n  address = \"" + sock + ".ttrpc\"\n" +
		"[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n"
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	daemon := exec.Command("containerd", "--config", cfgPath)
	daemon.Stdout, daemon.Stderr = &log, &log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Kill()
		daemon.Wait()
	})
	ctr := func(args ...string) (string, error) {
		out, err := exec.Command("ctr", append([]string{"--address", sock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := ctr("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not start:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := ctr("images", "import", archive); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	out, err := ctr("images", "ls")
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	if !strings.Contains(out, tag.String()) || !strings.Contains(out, "linux/amd64") {
		t.Errorf("imported image not listed as %s linux/amd64:\n%s", tag, out)
	}
}
