#!/usr/bin/env bash
# bench/vs_swarm.sh -- Tepui vs Docker Swarm mode, side by side on this machine: N replicas of a
# `sleep 3600` container until all run, 3 rounds alternating (issue 8).
#
#   bench/vs_swarm.sh                   # 20 replicas x 3 rounds (about 40-60 s here)
#   bench/vs_swarm.sh --smoke           # 3 replicas x 1 round, ~15 s (CI: tests/bench/test_peers_smoke.py)
#   bench/vs_swarm.sh [--replicas N] [--rounds R] [--keep] [--only swarm|tepui] [--swarm-defaults]
#
# --keep keeps the work dir (logs, app spec, per-round output); --only runs one side (no ratio).
#
# Needs root and a Docker engine: uses the one that answers `docker info`, else starts dockerd
# (and stops it at the end). Builds the local image tepui-test/busybox:1 the way scripts/test
# does when it is missing. Puts this engine in Swarm mode (`docker swarm init --advertise-addr
# 127.0.0.1`) unless it is a manager already, and leaves the swarm at the end only if it joined it
# here. Starts `tepui up --agents 1 --agent-resources 'cpus:16;mem:16384'` on free ports with its
# own state dir and client configuration (TEPUI_CONFIG); everything it starts is stopped by PID.
#
# Per round (the order of the two sides flips every round), both from the same image:
#   Swarm: `docker service create --replicas N --detach=false ... sleep 3600`, timed from the
#          command's start to its exit (the CLI polls every 0.2 s and exits once all N tasks run),
#          then `docker service rm` and wait until its containers are gone.
#   Tepui: `tepui apps deploy` of an app {container: {image, network: HOST}, args: [sleep, 3600],
#          instances: N, cpus 0.1, mem 32, no health checks}, timed from the command's start to its
#          exit (it exits when the deployment has succeeded: all N running), then `tepui apps rm`
#          and wait until its containers are gone.
# Like for like by default, so that each side does the same work per container:
#   - the image is given to Swarm by its ID (sha256:...): with a tag, every Swarm task first tries
#     a registry pull (no registry is reachable here: ~4 s lost per round); Tepui never pulls;
#   - `--network host` (Tepui's app uses HOST networking), `--init` (Tepui runs every container
#     under Docker's init), the same CPU and memory limits and reservations (0.1 CPU, 32 MiB);
#   - `--update-monitor 1ms`: otherwise the CLI waits a further 5 s "to verify that tasks are
#     stable" after all of them run; `tepui apps deploy` has no such window.
# `--swarm-defaults` measures Swarm as the plain command instead (tag, default bridge network,
# no init, no limits, the 5 s verification): about 11 s for 20 replicas here.
# Left unequal: `tepui` is a Python CLI (about 0.4 s to start, and it polls every 0.5 s) where
# `docker` is a Go binary polling every 0.2 s, so each side's own record (Swarm: service created ->
# last task RUNNING; Tepui's framework: deployment started -> succeeded) is printed beside the
# wall-clock figures; the ratio uses the wall-clock ones.
#
# Last line: speedup_vs_swarm=<Swarm median seconds / Tepui median seconds>.
#
# Environment: PYTHON (interpreter with tepui installed; default: the repo's .venv, else python3).

set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPLICAS=20
ROUNDS=3
KEEP=0
ONLY=""
SWARM_DEFAULTS=0
IMAGE=tepui-test/busybox:1
CPUS=0.1
MEM=32

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"; }
while (( $# )); do
    case $1 in
        --smoke) REPLICAS=3 ROUNDS=1 ;;
        --replicas) REPLICAS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --keep) KEEP=1 ;;
        --only) ONLY=$2; shift ;;
        --swarm-defaults) SWARM_DEFAULTS=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "vs_swarm: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'vs_swarm: %s\n' "$*"; }
die() { printf 'vs_swarm: FAILED: %s\n' "$*" >&2; exit 1; }
# shellcheck source=bench/peers_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/peers_lib.sh"  # now, sub, stop_pid, free_port, wait_for, median

(( EUID == 0 )) || die "needs root (Docker engine, Swarm mode)"

if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -c 'import tepui.cli' 2>/dev/null || die "$PYTHON cannot import tepui: pip install -e . first (or set PYTHON)"
tepui() { "$PYTHON" -m tepui.cli "$@"; }

WORK=$(mktemp -d /tmp/tepui-vs-swarm.XXXXXX)
chmod 0711 "$WORK"   # Tepui's tasks run as an unprivileged user who must reach the sandboxes
say "work dir $WORK"
FINAL=""
PID_DOCKERD="" PID_UP="" CHILD="" SWARM_INITED=0 GWBRIDGE_BEFORE=1 SERVICE="" APP_DEPLOYED=0
APP_ID=/vsswarm/sleep-$$
APP_PREFIX=vsswarm_sleep-$$.   # its task ids: <app path with / as _>.<hex>


swarm_containers() { docker ps -aq --filter "label=com.docker.swarm.service.name=$1" 2>/dev/null; }
tepui_containers() {
    docker ps -a --filter label=tepui.task_id --format '{{.Label "tepui.task_id"}}' 2>/dev/null | grep -F "$APP_PREFIX" || true
}
# wait_gone SECONDS WHAT CMD...: poll CMD until it prints nothing.
wait_gone() {
    local secs=$1 what=$2 i; shift 2
    for (( i = 0; i < secs * 5; i++ )); do
        [[ -z $("$@") ]] && return 0
        sleep 0.2
    done
    say "warning: $what still there after $secs s"
    return 1
}

# shellcheck disable=SC2317  # trap handler
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_pid "$CHILD" "the timed command" 30
    if [[ -n $SERVICE ]]; then
        docker service rm "$SERVICE" >/dev/null 2>&1
        wait_gone 60 "containers of service $SERVICE" swarm_containers "$SERVICE"
    fi
    if (( APP_DEPLOYED )) && [[ -n $PID_UP ]] && kill -0 "$PID_UP" 2>/dev/null; then
        tepui apps rm "$APP_ID" --http "127.0.0.1:$HTTP_PORT" --timeout 60 >/dev/null 2>&1
    fi
    if [[ -n $PID_UP ]]; then stop_pid "$PID_UP" "tepui up" 60; fi
    # tepui up's agent ends its tasks on the way out; make sure their containers went with them.
    if [[ -n $(tepui_containers) ]]; then
        wait_gone 30 "Tepui's containers" tepui_containers || \
            tepui_containers | while read -r t; do docker rm -f "$(docker ps -aq --filter "label=tepui.task_id=$t")" >/dev/null 2>&1; done
    fi
    if (( SWARM_INITED )); then
        docker swarm leave --force >/dev/null 2>&1 && say "left the swarm (initialised here)"
        if (( ! GWBRIDGE_BEFORE )); then docker network rm docker_gwbridge >/dev/null 2>&1; fi
    fi
    stop_pid "$PID_DOCKERD" dockerd 30
    if (( rc == 0 && ! KEEP )); then
        rm -rf "$WORK"
    else
        say "logs kept in $WORK"
    fi
    if (( rc == 0 )) && [[ -n $FINAL ]]; then printf '%s\n' "$FINAL"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# fg_run OUT CMD...: CMD in the background (stdout and stderr to OUT), then wait for it, so that a
# signal runs the trap at once instead of after CMD (the trap stops CMD too).
fg_run() {
    local out=$1 rc=0; shift
    "$@" >"$out" 2>&1 &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}



# ------------------------------------------------------------------ docker engine, image
docker_ok() { timeout 15 docker info >/dev/null 2>&1; }
command -v docker >/dev/null 2>&1 || die "no docker client: apt-get install docker.io (or run scripts/test once)"
if ! docker_ok; then
    [[ -z $(pgrep -x dockerd || true) ]] || die "a dockerd runs but does not answer 'docker info'"
    command -v dockerd >/dev/null 2>&1 || die "no dockerd: apt-get install docker.io (or run scripts/test once)"
    say "starting dockerd (log $WORK/dockerd.log)"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    PID_DOCKERD=$!
    wait_for 60 "$PID_DOCKERD" dockerd docker_ok
fi
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    [[ -x /bin/busybox ]] || DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends busybox-static >/dev/null \
        || die "busybox-static missing and apt-get install failed"
    say "building $IMAGE (docker import of a busybox root filesystem, as scripts/test does)"
    d=$WORK/rootfs
    mkdir -p "$d/bin"
    cp /bin/busybox "$d/bin/"
    for c in sh echo sleep cat ls env true false wget nc httpd; do ln -s busybox "$d/bin/$c"; done
    tar -C "$d" --numeric-owner -c . | docker import - "$IMAGE" >/dev/null || die "docker import of $IMAGE failed"
    rm -rf "$d"
fi
IMAGE_ID=$(docker image inspect -f '{{.Id}}' "$IMAGE")

# ------------------------------------------------------------------ swarm
start_swarm() {
    local state control
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    control=$(docker info --format '{{.Swarm.ControlAvailable}}')
    if [[ $state == active && $control == true ]]; then
        say "this engine is a Swarm manager already: using it (and staying in the swarm)"
    elif [[ $state == inactive ]]; then
        docker network inspect docker_gwbridge >/dev/null 2>&1 || GWBRIDGE_BEFORE=0
        docker swarm init --advertise-addr 127.0.0.1 >"$WORK/swarm-init.log" 2>&1 \
            || { cat "$WORK/swarm-init.log" >&2; die "docker swarm init failed"; }
        SWARM_INITED=1
        say "swarm initialised (docker swarm init --advertise-addr 127.0.0.1); will leave it at the end"
    else
        die "this engine is in a swarm (state $state) but not a manager: cannot create services"
    fi
}

# ------------------------------------------------------------------ tepui
start_tepui() {
    export TEPUI_CONFIG=$WORK/client.yaml
    PORT=$(free_port)
    HTTP_PORT=$(free_port)
    # Not through the tepui function: $! must be the PID of `tepui up` itself, not of a subshell.
    "$PYTHON" -m tepui.cli up --agents 1 --agent-resources "cpus:16;mem:16384" --state-dir "$WORK/tepui" \
        --port "$PORT" --http-port "$HTTP_PORT" >"$WORK/tepui-up.log" 2>&1 &
    PID_UP=$!
    services_up() {
        "$PYTHON" - "$HTTP_PORT" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/frameworks/services/v1/health", timeout=2) as r:
        sys.exit(0 if json.load(r).get("subscribed") else 1)
except (OSError, ValueError):
    sys.exit(1)
EOF
    }
    local t0
    t0=$(now)
    wait_for 90 "$PID_UP" "tepui up (services framework subscribed)" services_up
    say "Tepui up: master 127.0.0.1:$PORT (HTTP $HTTP_PORT), 1 agent with cpus:16;mem:16384, after $(sub "$t0" "$(now)") s"
    cat >"$WORK/app.yaml" <<EOF
id: $APP_ID
container: {type: DOCKER, image: $IMAGE, network: HOST}
args: [sleep, "3600"]
cpus: $CPUS
mem: $MEM
instances: $REPLICAS
EOF
}

# ------------------------------------------------------------------ rounds
SWARM_TIMES=() TEPUI_TIMES=()

run_swarm() { # run_swarm ROUND
    local t0 t1 secs rc=0 running own
    local args=(--replicas "$REPLICAS" --detach=false)
    if (( SWARM_DEFAULTS )); then
        args+=("$IMAGE")
    else
        args+=(--update-monitor 1ms --network host --init --limit-cpu "$CPUS" --reserve-cpu "$CPUS"
               --limit-memory "${MEM}M" --reserve-memory "${MEM}M" "$IMAGE_ID")
    fi
    SERVICE=tepui-vs-swarm-$$-r$1
    t0=$(now)
    fg_run "$WORK/swarm.r$1.log" docker service create --name "$SERVICE" "${args[@]}" sleep 3600 || rc=$?
    t1=$(now)
    (( rc == 0 )) || { tail -c 2000 "$WORK/swarm.r$1.log" >&2; die "docker service create exited $rc"; }
    secs=$(sub "$t0" "$t1")
    running=$(docker ps -q --filter "label=com.docker.swarm.service.name=$SERVICE" | wc -l)
    (( running == REPLICAS )) || die "Swarm: $running containers of $SERVICE run, not $REPLICAS"
    SWARM_TIMES+=("$secs")
    # Swarm's own record: the service's creation to the last task's RUNNING timestamp.
    own=$({ docker service inspect -f '{{json .CreatedAt}}' "$SERVICE"
            # shellcheck disable=SC2046  # one argument per task id
            docker inspect -f '{{json .Status.Timestamp}}' $(docker service ps -q --filter desired-state=running "$SERVICE"); } \
          | "$PYTHON" -c '
import sys
from datetime import datetime
t = [datetime.fromisoformat(line.strip().strip(chr(34))) for line in sys.stdin if line.strip()]  # Python >= 3.11
print("%.3f" % (max(t[1:]) - t[0]).total_seconds())' 2>/dev/null || echo "?")
    say "round $1 Swarm: $REPLICAS replicas running ${secs} s after \`docker service create\`" \
        "($(awk -v n="$REPLICAS" -v s="$secs" 'BEGIN { printf "%.1f", n / s }') containers/s);" \
        "Swarm's own record: service created -> last task running ${own} s"
    t0=$(now)
    docker service rm "$SERVICE" >/dev/null || die "docker service rm $SERVICE failed"
    wait_gone 120 "containers of $SERVICE" swarm_containers "$SERVICE" || die "Swarm did not remove $SERVICE's containers"
    SERVICE=""
    say "round $1 Swarm: service removed, containers gone after $(sub "$t0" "$(now)") s"
}

run_tepui() { # run_tepui ROUND
    local t0 t1 secs rc=0 running own
    t0=$(now)
    APP_DEPLOYED=1
    fg_run "$WORK/tepui.r$1.log" "$PYTHON" -m tepui.cli apps deploy "$WORK/app.yaml" --http "127.0.0.1:$HTTP_PORT" \
        --timeout 300 || rc=$?
    t1=$(now)
    (( rc == 0 )) || { tail -c 2000 "$WORK/tepui.r$1.log" >&2; die "tepui apps deploy exited $rc"; }
    secs=$(sub "$t0" "$t1")
    running=$(tepui_containers | wc -l)
    (( running == REPLICAS )) || die "Tepui: $running containers of $APP_ID, not $REPLICAS"
    TEPUI_TIMES+=("$secs")
    # The framework's own record of the deployment: started -> succeeded.
    own=$("$PYTHON" - "$HTTP_PORT" <<'EOF' 2>/dev/null || echo "?"
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/frameworks/services/v1/deployments", timeout=5) as r:
    done = [d for d in json.load(r)["deployments"] if d["status"] == "SUCCEEDED" and d["kind"] != "remove"]
newest = max(done, key=lambda d: d["finished_at"])
print("%.3f" % (newest["finished_at"] - newest["started_at"]))
EOF
    )
    say "round $1 Tepui: $REPLICAS instances running ${secs} s after \`tepui apps deploy\`" \
        "($(awk -v n="$REPLICAS" -v s="$secs" 'BEGIN { printf "%.1f", n / s }') containers/s);" \
        "the framework's own record: deployment started -> succeeded ${own} s"
    t0=$(now)
    rc=0
    tepui apps rm "$APP_ID" --http "127.0.0.1:$HTTP_PORT" --timeout 120 >"$WORK/tepui-rm.r$1.log" 2>&1 || rc=$?
    (( rc == 0 )) || { tail -c 2000 "$WORK/tepui-rm.r$1.log" >&2; die "tepui apps rm exited $rc"; }
    wait_gone 120 "containers of $APP_ID" tepui_containers || die "Tepui did not remove $APP_ID's containers"
    APP_DEPLOYED=0
    say "round $1 Tepui: app removed, containers gone after $(sub "$t0" "$(now)") s"
}

[[ $ONLY == tepui ]] || start_swarm
[[ $ONLY == swarm ]] || start_tepui
if (( SWARM_DEFAULTS )); then
    how="the plain command (image by tag, default network, no init or limits, 5 s verification)"
else
    how="like for like (image by ID, host network, init, ${CPUS} CPU/${MEM} MiB limits, no 5 s verification)"
fi
say "$REPLICAS replicas of sleep 3600 from $IMAGE ($IMAGE_ID), $ROUNDS round(s), order flips each round; Swarm: $how"
for (( r = 1; r <= ROUNDS; r++ )); do
    if (( r % 2 )); then
        [[ $ONLY == tepui ]] || run_swarm "$r"
        [[ $ONLY == swarm ]] || run_tepui "$r"
    else
        [[ $ONLY == swarm ]] || run_tepui "$r"
        [[ $ONLY == tepui ]] || run_swarm "$r"
    fi
done

if [[ -n $ONLY ]]; then
    say "--only $ONLY: Swarm rounds: ${SWARM_TIMES[*]:-none}; Tepui rounds: ${TEPUI_TIMES[*]:-none} (no ratio)"
    exit 0
fi
S=$(median "${SWARM_TIMES[@]}")
T=$(median "${TEPUI_TIMES[@]}")
say "Swarm median $S s (rounds: ${SWARM_TIMES[*]})"
say "Tepui median $T s (rounds: ${TEPUI_TIMES[*]}); machine: $(nproc) cores"
# The figure is printed by cleanup, after everything started here is stopped, so it is the last line.
FINAL=$(awk -v s="$S" -v t="$T" 'BEGIN { printf "speedup_vs_swarm=%.2f", s / t }')
