#!/usr/bin/env bash
# Builds the operator image (from deploy/Dockerfile, unchanged) and the test workload image on this machine, with a
# Docker daemon of its own (no registry: the node:24-bookworm-slim base is a local stand-in, test/images/base.sh),
# and saves each as a docker-save archive for `ctr images import`. Driven by test/env/images.ts, which computes the
# content hashes (refs and archive names); whatever archive already exists is not rebuilt, and when both exist no
# daemon is started. One build at a time per cache (flock). The daemon: a plain process with its own socket,
# data root (kept in the cache, so layers are reused), exec root and pidfile, no bridge, no iptables; builds use
# the host network. It is stopped when this script exits.
#   env: REPO_ROOT CACHE_ROOT IMAGES_DIR BASE_REF BASE_KEY OPERATOR_REF OPERATOR_TAR WORKLOAD_REF WORKLOAD_TAR
#        DOCKER_CLI (default /usr/bin/docker: Debian's docker.io client, which drives the daemon's BuildKit itself)
set -euo pipefail
: "${REPO_ROOT:?}" "${CACHE_ROOT:?}" "${IMAGES_DIR:?}" "${BASE_REF:?}" "${BASE_KEY:?}"
: "${OPERATOR_REF:?}" "${OPERATOR_TAR:?}" "${WORKLOAD_REF:?}" "${WORKLOAD_TAR:?}"
export DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "images: $*"; }
mkdir -p "$IMAGES_DIR/logs"

exec 9>"$IMAGES_DIR/build.lock"
if ! flock -n 9; then
  log "another image build holds $IMAGES_DIR/build.lock; waiting ..."
  flock 9
fi
if [ -f "$OPERATOR_TAR" ] && [ -f "$WORKLOAD_TAR" ]; then
  log "cached: $OPERATOR_TAR, $WORKLOAD_TAR"
  exit 0
fi

for tool in dockerd "$DOCKER_CLI" setpriv; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed to build the images (Debian: apt-get install docker.io)" >&2; exit 1; }
done

# ---- the daemon ----
docker_dir="$CACHE_ROOT/docker"
sock="$docker_dir/docker.sock"
pidfile="$docker_dir/docker.pid"
export DOCKER_HOST="unix://$sock"
mkdir -p "$docker_dir/data" "$docker_dir/exec"
dockerd_pid=

stop_dockerd() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}
# A daemon left by a build that was killed (we hold the lock, so it is not in use): only if it is ours.
if [ -f "$pidfile" ]; then
  old=$(cat "$pidfile")
  if [ -n "$old" ] && tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -qF -- "--data-root $docker_dir/data"; then
    log "stopping a daemon left by an earlier build (pid $old)"
    stop_dockerd "$old"
  fi
  rm -f "$pidfile"
fi
cleanup() {
  local rc=$?
  if [ -n "$dockerd_pid" ]; then stop_dockerd "$dockerd_pid"; log "dockerd stopped"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

echo '{}' >"$docker_dir/daemon.json"
t0=$SECONDS
# --pdeathsig: the daemon dies with this script even when the script is killed outright.
setpriv --pdeathsig TERM dockerd \
  --host "unix://$sock" --data-root "$docker_dir/data" --exec-root "$docker_dir/exec" --pidfile "$pidfile" \
  --config-file "$docker_dir/daemon.json" \
  --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
  >"$docker_dir/dockerd.log" 2>&1 &
dockerd_pid=$!
for i in $(seq 1 150); do
  "$DOCKER_CLI" version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || { tail -n 20 "$docker_dir/dockerd.log" >&2; echo "error: dockerd exited" >&2; exit 1; }
  sleep 0.2
done
"$DOCKER_CLI" version >/dev/null || { tail -n 20 "$docker_dir/dockerd.log" >&2; echo "error: dockerd did not answer on $sock" >&2; exit 1; }
log "dockerd $("$DOCKER_CLI" version -f '{{.Server.Version}}') up in $((SECONDS - t0))s (pid $dockerd_pid, data root $docker_dir/data)"

have_image() { "$DOCKER_CLI" image inspect "$1" >/dev/null 2>&1; }
label_of() { "$DOCKER_CLI" image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# build_log NAME CMD...: a build's whole output goes to a file; its tail to the caller when it fails.
run_logged() {
  local name=$1; shift
  local file="$IMAGES_DIR/logs/$name.log"
  if ! "$@" >"$file" 2>&1; then
    tail -n 40 "$file" >&2
    echo "error: $name failed (whole output: $file)" >&2
    return 1
  fi
}

# A container run with a deadline (a timed-out `docker run` client would leave the container running).
run_container() {
  local deadline=$1 name=$2; shift 2
  "$DOCKER_CLI" rm -f "$name" >/dev/null 2>&1 || true
  "$DOCKER_CLI" run --pull never -d --name "$name" "$@" >/dev/null
  timeout "$deadline" "$DOCKER_CLI" wait "$name" >/dev/null || true
  "$DOCKER_CLI" logs "$name" 2>&1
  "$DOCKER_CLI" rm -f "$name" >/dev/null 2>&1 || true
}

ensure_base() {
  if have_image "$BASE_REF" && [ "$(label_of "$BASE_REF" dev.dbcred.base-recipe)" = "$BASE_KEY" ]; then return; fi
  local tar="$IMAGES_DIR/base-$BASE_KEY.tar"
  if [ -f "$tar" ]; then
    "$DOCKER_CLI" load -i "$tar" >/dev/null
    [ "$(label_of "$BASE_REF" dev.dbcred.base-recipe)" = "$BASE_KEY" ] && { log "base loaded from $tar"; return; }
  fi
  BASE_REF="$BASE_REF" BASE_KEY="$BASE_KEY" IMAGES_DIR="$IMAGES_DIR" REPO_ROOT="$REPO_ROOT" bash "$here/base.sh" 2>&1 |
    sed 's/^/images: /'
}

check_operator() {
  local out uid
  uid=$("$DOCKER_CLI" run --pull never --rm --network none "$OPERATOR_REF" id -u)
  [ "$uid" = 1000 ] || { echo "error: $OPERATOR_REF runs as uid $uid, want 1000" >&2; return 1; }
  # No cluster: past module loading, the operator's own logger reports what is missing — the service account
  # (kubeconfig.ts refuses an in-cluster config without token and ca.crt) or, with one, an API server that does
  # not answer.
  out=$(run_container 15 dbcred-image-check --read-only --network none --tmpfs /tmp \
    -e KUBERNETES_SERVICE_HOST=127.0.0.1 -e KUBERNETES_SERVICE_PORT=1 "$OPERATOR_REF")
  if ! grep -qE '"message":"(cannot establish the installation identity|operator failed to start","error":"in-cluster config: )' <<<"$out"; then
    echo "$out" | tail -n 20 >&2
    echo "error: $OPERATOR_REF did not reach its own start-up (read-only root, no network)" >&2
    return 1
  fi
  log "checked: $OPERATOR_REF runs as uid 1000, starts on a read-only root ($(grep -o '"message":"[^"]*"' <<<"$out" | head -n1))"
}

check_workload() {
  local out rc t
  out=$("$DOCKER_CLI" run --pull never --rm --read-only --network none --user 1000 "$WORKLOAD_REF" node /app/login.mjs files /nonexistent 2>&1) && rc=0 || rc=$?
  [ "$rc" = 1 ] && grep -q '^login failed: ' <<<"$out" || { echo "error: login.mjs without settings: exit $rc, '$out'" >&2; return 1; }
  "$DOCKER_CLI" rm -f dbcred-image-check >/dev/null 2>&1 || true
  "$DOCKER_CLI" run --pull never -d --name dbcred-image-check --read-only --network none --user 1000 \
    -e DB_host=127.0.0.1 -e DB_port=1 -e DB_database=x -e DB_username=x -e DB_password=x -e DB_sslmode=disable \
    "$WORKLOAD_REF" node /app/serve.mjs env DB_ >/dev/null
  for i in $(seq 1 50); do "$DOCKER_CLI" logs dbcred-image-check 2>&1 | grep -q '^login failed' && break; sleep 0.2; done
  t=$(date +%s%N)
  "$DOCKER_CLI" stop -t 10 dbcred-image-check >/dev/null
  t=$(( ($(date +%s%N) - t) / 1000000 ))
  rc=$("$DOCKER_CLI" inspect -f '{{.State.ExitCode}}' dbcred-image-check)
  out=$("$DOCKER_CLI" logs dbcred-image-check 2>&1)
  "$DOCKER_CLI" rm -f dbcred-image-check >/dev/null
  [ "$rc" = 0 ] && [ "$t" -lt 5000 ] && grep -q '^login failed: ' <<<"$out" ||
    { echo "error: serve.mjs: exit $rc after SIGTERM in ${t}ms, output '$out'" >&2; return 1; }
  log "checked: $WORKLOAD_REF reports a failed login and stops on SIGTERM in ${t}ms with exit 0"
}

build_operator() {
  ensure_base
  t0=$SECONDS
  log "building $OPERATOR_REF from deploy/Dockerfile (NODE_IMAGE=$BASE_REF) ..."
  run_logged "operator-build" env DOCKER_BUILDKIT=1 "$DOCKER_CLI" build --network host --progress plain \
    -f "$REPO_ROOT/deploy/Dockerfile" --build-arg "NODE_IMAGE=$BASE_REF" -t "$OPERATOR_REF" "$REPO_ROOT"
  check_operator
}

build_workload() {
  t0=$SECONDS
  log "building $WORKLOAD_REF from test/images/workload (on $OPERATOR_REF) ..."
  run_logged "workload-build" env DOCKER_BUILDKIT=1 "$DOCKER_CLI" build --network host --progress plain \
    --build-arg "OPERATOR_IMAGE=$OPERATOR_REF" -t "$WORKLOAD_REF" "$REPO_ROOT/test/images/workload"
  check_workload
}

# ensure_image REF TAR BUILD: the image in the daemon and its archive on disk, making only what is missing.
# (BUILD sets t0 when its own work starts: the operator's time does not include making the base.)
ensure_image() {
  local ref=$1 tar=$2 build=$3 t0
  if ! have_image "$ref" && [ -f "$tar" ]; then "$DOCKER_CLI" load -i "$tar" >/dev/null; log "$ref loaded from $tar"; fi
  if ! have_image "$ref"; then
    "$build"
    log "$ref built and checked in $((SECONDS - t0))s ($(( $("$DOCKER_CLI" image inspect -f '{{.Size}}' "$ref") / 1000000 )) MB)"
  fi
  if [ ! -f "$tar" ]; then
    "$DOCKER_CLI" save "$ref" >"$tar.partial" && mv "$tar.partial" "$tar"
    log "saved $tar ($(du -m "$tar" | cut -f1) MB)"
  fi
}

ensure_image "$OPERATOR_REF" "$OPERATOR_TAR" build_operator
ensure_image "$WORKLOAD_REF" "$WORKLOAD_TAR" build_workload

# Keep the cache bounded: the three newest archives of each image, in the daemon only the current tags, and at
# most 3 GB of build cache (enough that the next rebuild reuses npm ci's layer when the lockfile has not changed).
for kind in base operator workload; do
  ls -1t "$IMAGES_DIR/$kind"-*.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
done
"$DOCKER_CLI" images --format '{{.Repository}}:{{.Tag}}' |
  grep -E '^dbcred-(operator|workload):' | grep -vxF -e "$OPERATOR_REF" -e "$WORKLOAD_REF" |
  xargs -r "$DOCKER_CLI" rmi >/dev/null 2>&1 || true
"$DOCKER_CLI" image prune -f >/dev/null 2>&1 || true
"$DOCKER_CLI" builder prune -f --keep-storage 3gb >/dev/null 2>&1 || true
