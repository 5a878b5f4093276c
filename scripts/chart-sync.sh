#!/usr/bin/env bash
# Writes the chart's copies of what has one source elsewhere in the repository (make chart-sync):
#   crds/*.yaml                    -> deploy/chart/crds/        (Helm installs the CRDs from there)
#   deploy/monitoring/alerts.yaml  -> deploy/chart/files/alerts.yaml  (the PrometheusRule's groups)
#   deploy/monitoring/dashboard.json -> deploy/chart/files/dashboard.json  (the Grafana dashboard ConfigMap)
#   package.json "version"         -> deploy/chart/Chart.yaml appVersion
# The unit tests (test/unit/chart.test.ts) fail when a copy differs from its source: edit the source, then run this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chart="$root/deploy/chart"

rm -f "$chart"/crds/*.yaml
mkdir -p "$chart/crds" "$chart/files"
cp "$root"/crds/*.yaml "$chart/crds/"
cp "$root/deploy/monitoring/alerts.yaml" "$chart/files/alerts.yaml"
cp "$root/deploy/monitoring/dashboard.json" "$chart/files/dashboard.json"

version=$(node -p 'require(process.argv[1]).version' "$root/package.json")
sed -i -E "s/^appVersion: .*/appVersion: \"$version\"/" "$chart/Chart.yaml"
echo "chart-sync: $(ls "$chart"/crds | wc -l) CRDs, alerts.yaml, dashboard.json, appVersion $version -> $chart" >&2
