#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl, and for the local node kube-scheduler and kubelet, from the Go module proxy into a cache keyed
# by version, outside the work tree. Skips what is already there. Prints the cache directory on stdout (last line).
#   DBCRED_CACHE_DIR   overrides the cache root (default: ${XDG_CACHE_HOME:-~/.cache}/dbcred-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache_root=${DBCRED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dbcred-operator}
bin_dir="$cache_root/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$bin_dir"

want=(etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet)
missing=()
for b in "${want[@]}"; do [ -x "$bin_dir/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "control plane: cached in $bin_dir" >&2
  echo "$bin_dir"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is needed once to build the control plane (${missing[*]}) but 'go' is not on PATH." >&2
  echo "       Install Go 1.24 or newer (https://go.dev/doc/install), or put prebuilt binaries in $bin_dir." >&2
  exit 1
fi

minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
staging_version="v0.${KUBERNETES_VERSION#v1.}"
# The wrapper's replace list must match this release: regenerate it from k8s.io/kubernetes's own go.mod
# when the pinned version changes (a stale list fails the build with a clear go error anyway).
if ! grep -q "require k8s.io/kubernetes $KUBERNETES_VERSION\$" "$here/k8s/go.mod"; then
  echo "error: test/cluster/k8s/go.mod does not require k8s.io/kubernetes $KUBERNETES_VERSION; regenerate it:" >&2
  echo "       go mod download -json k8s.io/kubernetes@$KUBERNETES_VERSION  # its GoMod lists the staging replaces" >&2
  exit 1
fi

export CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean"
for b in "${missing[@]}"; do
  echo "control plane: building $b (cold build: several minutes) ..." >&2
  case "$b" in
    etcd)
      (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd.tmp" go.etcd.io/etcd/server/v3) ;;
    *)
      (cd "$here/k8s" && go build -trimpath -ldflags "$ldflags" -o "$bin_dir/$b.tmp" "k8s.io/kubernetes/cmd/$b") ;;
  esac
  mv "$bin_dir/$b.tmp" "$bin_dir/$b"   # atomic: an interrupted build never leaves a half binary in the cache
done
echo "control plane: built ${missing[*]} in $(( $(date +%s) - start ))s into $bin_dir ($staging_version staging)" >&2
echo "$bin_dir"
