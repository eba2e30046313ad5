#!/usr/bin/env bash
# Installs the Debian packages the tests start for real (make test runs it;
# the local node's own packages are installed by cluster-prepare). Needs
# root; does nothing when everything is there.
set -euo pipefail

packages=(curl nftables iproute2 nginx-light haproxy containerd prometheus mariadb-server mariadb-client swaks)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing ${missing[*]}; run as root (or apt-get install them)" >&2
  exit 1
fi
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
