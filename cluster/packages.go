package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// DebianPackages are the programs the node runs or the harness calls.
var DebianPackages = []string{
	"etcd-server", "containerd", "runc", "containernetworking-plugins",
	"conntrack", "socat", "iptables", "nftables", "iproute2", "kmod", "util-linux", "mount",
}

// ValidationPackages are what the validation mode needs.
var ValidationPackages = []string{"etcd-server"}

// EnsurePackages installs those of pkgs that dpkg does not list as installed
// (apt-get update once first). Installed service scripts are not started:
// the harness starts every daemon itself.
func EnsurePackages(ctx context.Context, progress func(string), pkgs ...string) error {
	var missing []string
	for _, p := range pkgs {
		out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !strings.Contains(string(out), "install ok installed") {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("packages %s are missing and installing them needs root", strings.Join(missing, ", "))
	}
	progress("installing Debian packages: " + strings.Join(missing, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	update := exec.CommandContext(ctx, "apt-get", "update", "-qq")
	update.Env = env
	if out, err := update.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %v: %s", err, out)
	}
	install := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)...)
	install.Env = env
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %v: %s", strings.Join(missing, " "), err, out)
	}
	return nil
}
