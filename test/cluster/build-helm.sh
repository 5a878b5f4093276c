#!/usr/bin/env bash
# What the chart tests need besides a cluster, cached by version outside the work tree (skipped when there):
#   helm                  built from the Go module proxy (helm.sh/helm/v4/cmd/helm@$HELM_VERSION)
#   prometheus-operator   its real CRDs (ServiceMonitor, PrometheusRule, ...) from the module's
#                         example/prometheus-operator-crd, so the chart's monitoring objects meet a real schema
# Client tools only: also needed with USE_EXISTING_CLUSTER=true. Prints on stdout where they are:
#   HELM=<path of the helm binary>
#   PROMETHEUS_OPERATOR_CRDS=<directory of the CRD files>
#   DBCRED_CACHE_DIR   overrides the cache root (default: ${XDG_CACHE_HOME:-~/.cache}/dbcred-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache_root=${DBCRED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dbcred-operator}
helm_dir="$cache_root/helm-$HELM_VERSION"
crd_dir="$cache_root/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
helm="$helm_dir/helm"
mkdir -p "$cache_root"

need_go() {
  command -v go >/dev/null 2>&1 && return
  echo "error: Go is needed once to fetch $1 from the module proxy but 'go' is not on PATH." >&2
  echo "       Install Go 1.24 or newer (https://go.dev/doc/install)." >&2
  exit 1
}

# The version check also catches a binary built without the version ldflag (it calls itself "v4.3").
if [ -x "$helm" ] && [ "$("$helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
  echo "helm: cached in $helm" >&2
else
  need_go "helm $HELM_VERSION"
  echo "helm: building $HELM_VERSION (cold build: a few minutes) ..." >&2
  tmp=$(mktemp -d "$helm_dir.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s)
  # Outside any module, so that go.mod of this repository's wrappers plays no part.
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-mod=mod go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION")
  mkdir -p "$helm_dir"
  mv "$tmp/helm" "$helm"   # atomic: an interrupted build never leaves a half binary in the cache
  rm -rf "$tmp"
  echo "helm: built $HELM_VERSION in $(( $(date +%s) - start ))s into $helm" >&2
fi

if [ -f "$crd_dir/monitoring.coreos.com_servicemonitors.yaml" ]; then
  echo "prometheus-operator CRDs: cached in $crd_dir" >&2
else
  need_go "prometheus-operator $PROMETHEUS_OPERATOR_VERSION"
  module_dir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  src="$module_dir/example/prometheus-operator-crd"
  [ -f "$src/monitoring.coreos.com_servicemonitors.yaml" ] || { echo "error: no CRDs in $src" >&2; exit 1; }
  tmp=$(mktemp -d "$crd_dir.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  cp "$src"/*.yaml "$tmp/"
  chmod 0644 "$tmp"/*.yaml   # copies of the read-only module cache
  rm -rf "$crd_dir"
  mv "$tmp" "$crd_dir"
  echo "prometheus-operator CRDs: $PROMETHEUS_OPERATOR_VERSION into $crd_dir" >&2
fi
echo "HELM=$helm"
echo "PROMETHEUS_OPERATOR_CRDS=$crd_dir"
