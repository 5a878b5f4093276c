#!/usr/bin/env bash
# Checks (and where it can, installs) what the local environment needs: node >= 24 (the Makefile puts one on
# PATH, scripts/node.sh) and the PostgreSQL server binaries. Go is checked by test/cluster/build.sh, and only when the control plane is not cached yet.
set -euo pipefail
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 24 ]; then
  echo "error: Node.js 24 or newer is needed (found: $(node --version 2>/dev/null || echo none)); make puts scripts/node.sh's on PATH." >&2
  exit 1
fi
have_pg() {
  command -v initdb >/dev/null 2>&1 && return 0
  [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/initdb" ] && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if ! have_pg; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL server binaries not found: installing Debian's postgresql package ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "error: PostgreSQL server binaries (initdb, postgres) not found. Install them (Debian/Ubuntu:" >&2
    echo "       sudo apt-get install postgresql; macOS: brew install postgresql@15) or set PG_BIN_DIR." >&2
    exit 1
  fi
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "error: running as root, but there is no 'postgres' OS user for initdb (useradd -r -m postgres)." >&2
  exit 1
fi

# The local node (a real kubelet on containerd) and the locally built images. Installed when root on Debian; else
# the tests that need a node say so and skip (the rest runs without).
node_pkgs=()
command -v containerd >/dev/null 2>&1 || node_pkgs+=(containerd)
command -v runc >/dev/null 2>&1 || node_pkgs+=(runc)
[ -x /usr/lib/cni/loopback ] || node_pkgs+=(containernetworking-plugins)
command -v dockerd >/dev/null 2>&1 || node_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || node_pkgs+=(debootstrap)
[ -x /bin/busybox ] || node_pkgs+=(busybox-static)   # the shell of the test image (test/env/ociImage.ts testboxImage)
if [ ${#node_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "local node: installing Debian's ${node_pkgs[*]} ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${node_pkgs[@]}" >/dev/null
  else
    echo "note: ${node_pkgs[*]} missing and not installable here (needs root and apt-get): the in-cluster tests will skip." >&2
  fi
fi

# Prometheus and promtool (Debian's prometheus package) for the alert and dashboard tests; without them those tests
# say so and skip. --no-install-recommends: not the node exporter; the package's service is not started here.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "monitoring tests: installing Debian's prometheus (prometheus, promtool) ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "note: prometheus/promtool missing and not installable here (needs root and apt-get): the alert and dashboard tests will skip." >&2
  fi
fi
