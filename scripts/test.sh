#!/usr/bin/env bash
# Runs every test (unit, then integration against the real control plane and PostgreSQL) in one mocha run, so the
# last line is the summary "N passed, N failed". Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
npx mocha --reporter ./test/reporter.cjs --timeout 120000 --exit \
  'dist/test/unit/**/*.test.js' 'dist/test/integration/**/*.test.js' 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
if ! grep -qE '^[0-9]+ passed, [0-9]+ failed' "$out"; then
  # mocha died before its summary: say so in the form CI reads.
  echo "mocha exited $rc without a summary"
  echo "0 passed, 1 failed"
  rc=1
fi
rm -f "$out"
exit "$rc"
