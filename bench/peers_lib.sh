# bench/peers_lib.sh -- helpers shared by bench/vs_slurm.sh and bench/vs_swarm.sh (sourced).
# The sourcing script defines say, die, PYTHON and WORK before calling them.
# shellcheck shell=bash

now() { printf '%s' "$EPOCHREALTIME"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

stop_pid() { # stop_pid PID NAME [SECONDS]: SIGTERM, wait, then SIGKILL; only our own children
    local pid=$1 name=$2 secs=${3:-15} i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for (( i = 0; i < secs * 10; i++ )); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    say "$name (pid $pid) did not stop within ${secs} s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for SECONDS PID WHAT CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
    local secs=$1 pid=$2 what=$3 i; shift 3
    for (( i = 0; i < secs * 5; i++ )); do
        "$@" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then die "$what exited (logs in $WORK)"; fi
        sleep 0.2
    done
    die "$what not ready within $secs s (logs in $WORK)"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
