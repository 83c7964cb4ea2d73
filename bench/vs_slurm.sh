#!/usr/bin/env bash
# bench/vs_slurm.sh -- Tepui vs Slurm, side by side on this machine: N trivial batch jobs
# (`true`), 16 one-CPU slots on each side, 3 rounds alternating (issue 8).
#
#   bench/vs_slurm.sh                 # 1,000 jobs x 3 rounds (about 2.5 minutes here, most of it Slurm)
#   bench/vs_slurm.sh --smoke         # 100 jobs x 1 round, ~20 s (CI: tests/bench/test_peers_smoke.py)
#   bench/vs_slurm.sh [--jobs N] [--rounds R] [--keep] [--only slurm|tepui] [--tepui batch|load|both]
#
# --keep keeps the work dir (logs, slurm.conf, per-round output); --only runs one side (no ratio).
# --tepui picks Tepui's side: `batch` (default, issue 17) submits one job array to the batch
# framework with `tepui jobs submit --wait`; `load` runs bench/load_framework.py, the bare
# framework the issue 8 figures were measured with; `both` runs the two each round.
#
# Needs root and Debian (installs slurmctld, slurmd, slurm-client and munge with apt when they are
# missing). Everything it starts lives in one temp dir and is stopped by PID at exit:
#   - munged as user munge, with its own key (0400, owned by munge) and its own socket;
#   - slurmctld -D -c and slurmd -D -N localhost with their own slurm.conf (free ports, no
#     accounting, proctrack/linuxproc, task/none, select/cons_tres with CR_Core, one node
#     `localhost` with CPUs=16 (SlurmdParameters=config_overrides), and tuned scheduling:
#     batch_sched_delay=0, sched_min_interval=0, bf_interval=1, default_queue_depth=1000 -- 200
#     jobs took 27 s with the defaults instead of 8-13 s) -- the clients reach it through SLURM_CONF;
#   - `tepui up --agents 1 --agent-resources 'cpus:16;mem:16384'` on free ports, with its own
#     state dir and client configuration (TEPUI_CONFIG); it starts the batch framework too.
#
# Per round (the order of the two sides flips every round):
#   Slurm: `sbatch --array=1-N -c 1 -o /dev/null -e /dev/null --wrap true` (one job array),
#          timed from just before sbatch to the moment `squeue` no longer lists any of its tasks
#          (polled every 0.2 s); every task must then be COMPLETED (`scontrol show job`), whose
#          SubmitTime and EndTime give Slurm's own figure beside it (1 s resolution).
#   Tepui (batch, the default): `tepui jobs submit --wait --id vs-slurm-rR array.yaml`, one job
#          of one stage, `array: N` of `true` with cpus 1 and mem 16, timed wall-clock from just
#          before the command to its exit (so the CLI's start, the submission and its wait are
#          included); it must exit 0 (the job SUCCEEDED) with N tasks succeeded. The job's own
#          record, submitted_at -> finished_at, is printed beside it.
#   Tepui (load, --tepui load|both): `python bench/load_framework.py --tasks N --command true
#          --cpus 1 --mem 16`, timed wall-clock from the process's start to its exit (so the
#          framework's start and subscription are included); its own figure, first ACCEPT ->
#          last terminal update, is printed beside it. It must exit 0 with every task finished.
# The ratio uses the wall-clock figures of both sides (medians over rounds):
#   speedup_vs_slurm_array = (N / Tepui batch median seconds) / (N / Slurm median seconds)
# which is the last line printed (`speedup_vs_slurm=`, the load framework's, comes before it with
# --tepui both, and is the last line with --tepui load).
#
# Not quite like for like, in Slurm's favour: its jobs run as root with no isolation
# (proctrack/linuxproc, task/none) and output to /dev/null, while each Tepui task gets its own
# cgroup, an unprivileged user, a sandbox dir and stdout/stderr files. In Tepui's disfavour: its
# figure includes starting a Python process (the CLI, or the load framework, which also
# subscribes): about 0.5 s. Both clusters stay up
# for the whole run, so each side's idle daemons run beside the other's rounds.
#
# Environment: PYTHON (interpreter with tepui installed; default: the repo's .venv, else python3).

set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=1000
ROUNDS=3
KEEP=0
ONLY=""
SIDE=batch
SLOTS=16

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"; }
while (( $# )); do
    case $1 in
        --smoke) JOBS=100 ROUNDS=1 ;;
        --jobs) JOBS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --keep) KEEP=1 ;;
        --only) ONLY=$2; shift ;;
        --tepui) SIDE=$2; shift
                 [[ $SIDE == batch || $SIDE == load || $SIDE == both ]] || { echo "vs_slurm: --tepui batch|load|both" >&2; exit 2; } ;;
        -h|--help) usage; exit 0 ;;
        *) echo "vs_slurm: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'vs_slurm: %s\n' "$*"; }
rate() { awk -v n="$JOBS" -v s="$1" 'BEGIN { printf "%.1f", n / s }'; }  # rate SECONDS: jobs/s
load_now() { uptime | sed 's/.*load/load/'; }  # the machine is shared: print the load beside figures
die() { printf 'vs_slurm: FAILED: %s\n' "$*" >&2; exit 1; }
# shellcheck source=bench/peers_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/peers_lib.sh"  # now, sub, stop_pid, free_port, wait_for, median

(( EUID == 0 )) || die "needs root (installs Slurm, runs munged as user munge and slurmd as root)"

if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -c 'import tepui.cli' 2>/dev/null || die "$PYTHON cannot import tepui: pip install -e . first (or set PYTHON)"
[[ $ONLY == slurm || $SIDE == batch || -f $REPO/bench/load_framework.py ]] || die "bench/load_framework.py is missing"

# ------------------------------------------------------------------ work dir, cleanup
WORK=$(mktemp -d /tmp/tepui-vs-slurm.XXXXXX)
chmod 0711 "$WORK"   # Tepui's tasks run as an unprivileged user who must reach the sandboxes
say "work dir $WORK"
PID_MUNGED="" PID_CTLD="" PID_SLURMD="" PID_UP="" CHILD=""
FINAL=""


# shellcheck disable=SC2317  # trap handler
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_pid "$CHILD" "the Tepui client" 30
    stop_pid "$PID_UP" "tepui up" 60
    if [[ -n $PID_CTLD ]] && kill -0 "$PID_CTLD" 2>/dev/null; then
        # Jobs left by an interrupted round: cancel them so slurmd leaves no slurmstepd behind.
        if [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
            scancel --quiet -u root 2>/dev/null   # SLURM_CONF: only this script's cluster
            for (( i = 0; i < 100; i++ )); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.1; done
        fi
    fi
    stop_pid "$PID_SLURMD" slurmd
    stop_pid "$PID_CTLD" slurmctld
    stop_pid "$PID_MUNGED" munged
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

# fg_run OUT ERR CMD...: CMD in the background, then wait for it, so that a signal runs the trap at
# once instead of after CMD (the trap stops CMD too).
fg_run() {
    local out=$1 err=$2 rc=0; shift 2
    "$@" >"$out" 2>"$err" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}



# ------------------------------------------------------------------ slurm
have_slurm() {
    local c
    for c in slurmctld slurmd sbatch squeue sinfo scontrol scancel munged munge; do
        command -v "$c" >/dev/null 2>&1 || return 1
    done
}
install_slurm() {
    have_slurm && return 0
    say "installing slurmctld slurmd slurm-client munge (apt) ..."
    local t0 apt pkgs
    t0=$(now)
    apt=(apt-get -q -o DPkg::Lock::Timeout=300)
    pkgs=(slurmctld slurmd slurm-client munge)
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >"$WORK/apt.log" 2>&1; then
        "${apt[@]}" update >>"$WORK/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >>"$WORK/apt.log" 2>&1 \
            || { tail -20 "$WORK/apt.log" >&2; die "apt-get install ${pkgs[*]} failed (log: $WORK/apt.log)"; }
    fi
    hash -r
    have_slurm || die "Slurm commands still missing after apt-get install"
    say "installed in $(sub "$t0" "$(now)") s"
}

start_slurm() {
    install_slurm
    id munge >/dev/null 2>&1 || die "no user munge (the munge package creates it)"
    MUNGE=$WORK/munge
    mkdir -p "$MUNGE"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey -c -k "$MUNGE/munge.key" >/dev/null 2>&1
    else
        dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
    fi
    chown -R munge:munge "$MUNGE"
    chmod 0755 "$MUNGE"
    chmod 0400 "$MUNGE/munge.key"
    MUNGE_SOCKET=$MUNGE/munge.socket
    setpriv --reuid=munge --regid=munge --init-groups \
        munged -F --socket="$MUNGE_SOCKET" --key-file="$MUNGE/munge.key" --pid-file="$MUNGE/munged.pid" \
        --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed" >"$WORK/munged.out" 2>&1 &
    PID_MUNGED=$!
    munge_ok() { munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }
    wait_for 20 "$PID_MUNGED" munged munge_ok

    SLURM=$WORK/slurm
    mkdir -p "$SLURM/state" "$SLURM/spool"
    export SLURM_CONF=$SLURM/slurm.conf
    cat >"$SLURM_CONF" <<EOF
ClusterName=tepuivs
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$SLURM/state
SlurmdSpoolDir=$SLURM/spool
SlurmctldPidFile=$SLURM/slurmctld.pid
SlurmdPidFile=$SLURM/slurmd.pid
SlurmctldLogFile=$SLURM/slurmctld.log
SlurmdLogFile=$SLURM/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1,default_queue_depth=1000
MaxArraySize=$(( JOBS > 1000 ? JOBS + 1 : 1001 ))
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$SLOTS RealMemory=8000 State=UNKNOWN
PartitionName=bench Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    slurmctld -D -c -f "$SLURM_CONF" >"$SLURM/slurmctld.out" 2>&1 &
    PID_CTLD=$!
    slurmd -D -N localhost -f "$SLURM_CONF" >"$SLURM/slurmd.out" 2>&1 &
    PID_SLURMD=$!
    node_idle() { [[ $(sinfo -h -N -n localhost -o %t 2>/dev/null) == idle ]]; }
    t0=$(now)
    wait_for 60 "$PID_CTLD" "slurmctld/slurmd (node localhost idle)" node_idle
    kill -0 "$PID_SLURMD" 2>/dev/null || die "slurmd exited (logs in $SLURM)"
    say "Slurm up: node localhost idle with $SLOTS CPUs after $(sub "$t0" "$(now)") s (config $SLURM_CONF)"
}

start_tepui() {
    export TEPUI_CONFIG=$WORK/client.yaml
    PORT=$(free_port)
    HTTP_PORT=$(free_port)
    "$PYTHON" -m tepui.cli up --agents 1 --agent-resources "cpus:$SLOTS;mem:16384" --state-dir "$WORK/tepui" \
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
    t0=$(now)
    batch_up() {
        "$PYTHON" - "$HTTP_PORT" <<'EOF'
import sys
from tepui.frameworks.batch.client import BatchClient, BatchError
try:
    sys.exit(0 if BatchClient(f"127.0.0.1:{sys.argv[1]}", timeout=2).health().get("subscribed") else 1)
except (BatchError, OSError, ValueError):
    sys.exit(1)
EOF
    }
    wait_for 90 "$PID_UP" "tepui up" services_up
    [[ $SIDE == load ]] || wait_for 60 "$PID_UP" "the batch framework of tepui up" batch_up
    cat >"$WORK/array.yaml" <<EOF
# $JOBS tasks of true, one CPU each: Slurm's sbatch --array=1-$JOBS -c 1 --wrap true
name: vs-slurm
stages:
  - name: run
    array: $JOBS
    command: "true"
    resources: {cpus: 1, mem: 16}
EOF
    say "Tepui up: master 127.0.0.1:$PORT (HTTP $HTTP_PORT), 1 agent with cpus:$SLOTS;mem:16384, after $(sub "$t0" "$(now)") s"
}

# ------------------------------------------------------------------ rounds
SLURM_TIMES=() TEPUI_TIMES=() TEPUI_OWN=() BATCH_TIMES=() BATCH_OWN=()
DEADLINE_SECS=$(( 120 + JOBS * 2 ))

run_slurm() { # run_slurm ROUND
    local t0 t1 jobid out rc done_n secs own i=0
    t0=$(now)
    jobid=$(sbatch --parsable -J "vs$1" --array="1-$JOBS" -c 1 -o /dev/null -e /dev/null --wrap true) \
        || die "sbatch failed"
    while :; do
        rc=0
        out=$(squeue -h -j "$jobid" -o %i 2>&1) || rc=$?
        if (( rc == 0 )) && [[ -z $out ]]; then break; fi
        (( ++i < DEADLINE_SECS * 5 )) || die "Slurm: job array $jobid not done after $DEADLINE_SECS s"
        sleep 0.2
    done
    t1=$(now)
    secs=$(sub "$t0" "$t1")
    scontrol -o show job "$jobid" >"$WORK/slurm.r$1.jobs" 2>&1 || true
    done_n=$(grep -c 'JobState=COMPLETED' "$WORK/slurm.r$1.jobs" || true)
    (( done_n == JOBS )) || die "Slurm: only $done_n of $JOBS array tasks COMPLETED (job $jobid; $WORK/slurm.r$1.jobs)"
    # Slurm's own record (1 s resolution): submission -> the last task's end.
    own=$("$PYTHON" - "$WORK/slurm.r$1.jobs" <<'EOF' 2>/dev/null || echo "?"
import re, sys
from datetime import datetime
text = open(sys.argv[1]).read()
t = lambda s: datetime.fromisoformat(s)
submit = min(t(s) for s in re.findall(r"SubmitTime=(\S+)", text))
end = max(t(s) for s in re.findall(r"EndTime=(\S+)", text))
print("%.0f" % (end - submit).total_seconds())
EOF
    )
    SLURM_TIMES+=("$secs")
    say "round $1 Slurm: $JOBS jobs (array $jobid) all COMPLETED in $secs s" \
        "($(rate "$secs") jobs/s);" \
        "Slurm's own record: submitted -> last job ended ${own} s (1 s resolution)"
}

run_tepui() { # run_tepui ROUND
    local t0 t1 out rc=0 last secs fields
    t0=$(now)
    fg_run "$WORK/load_framework.r$1.out" "$WORK/load_framework.r$1.err" \
        "$PYTHON" "$REPO/bench/load_framework.py" --tasks "$JOBS" --command true --cpus 1 --mem 16 || rc=$?
    t1=$(now)
    out=$(<"$WORK/load_framework.r$1.out")
    if (( rc != 0 )); then
        tail -n 20 "$WORK/load_framework.r$1.err" >&2
        die "Tepui: load_framework.py exited $rc (output in $WORK/load_framework.r$1.*)"
    fi
    secs=$(sub "$t0" "$t1")
    last=$(tail -n 1 <<<"$out")
    fields=$("$PYTHON" - "$last" "$JOBS" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
n = int(sys.argv[2])
if d.get("finished") != n:
    sys.exit("finished %s of %d" % (d.get("finished"), n))
print("%.3f %.1f" % (float(d["seconds"]), float(d.get("launches_per_second") or 0)))
EOF
    ) || die "Tepui: bad last line from load_framework.py: $last"
    TEPUI_TIMES+=("$secs")
    TEPUI_OWN+=("${fields% *}")
    say "round $1 Tepui (load framework): $JOBS tasks finished in $secs s wall-clock incl. framework start" \
        "($(rate "$secs") jobs/s);" \
        "load_framework's own: ${fields% *} s first ACCEPT -> last terminal, ${fields#* } launches/s"
}

run_batch() { # run_batch ROUND
    local t0 t1 rc=0 secs own id="vs-slurm-r$1"
    t0=$(now)
    fg_run "$WORK/jobs.r$1.out" "$WORK/jobs.r$1.err" \
        "$PYTHON" -m tepui.cli jobs submit --wait --id "$id" --http "127.0.0.1:$HTTP_PORT" "$WORK/array.yaml" || rc=$?
    t1=$(now)
    if (( rc != 0 )); then
        tail -n 20 "$WORK/jobs.r$1.out" "$WORK/jobs.r$1.err" >&2
        die "Tepui: tepui jobs submit --wait exited $rc (output in $WORK/jobs.r$1.*)"
    fi
    secs=$(sub "$t0" "$t1")
    own=$("$PYTHON" - "$HTTP_PORT" "$id" "$JOBS" <<'EOF'
import sys
from tepui.frameworks.batch.client import BatchClient
job = BatchClient(f"127.0.0.1:{sys.argv[1]}").get(sys.argv[2])
if job.state != "SUCCEEDED" or job.tasks.succeeded != int(sys.argv[3]) or job.finished_at is None:
    sys.exit(f"job {job.id} is {job.state} with {job.tasks.succeeded} of {sys.argv[3]} tasks succeeded")
print("%.3f" % (job.finished_at - (job.submitted_at or 0)))
EOF
    ) || die "Tepui: the batch job $id did not succeed with every task"
    BATCH_TIMES+=("$secs")
    BATCH_OWN+=("$own")
    say "round $1 Tepui (batch): job $id, $JOBS tasks SUCCEEDED in $secs s wall-clock from" \
        "\`tepui jobs submit --wait\` to its exit ($(rate "$secs") jobs/s);" \
        "the job's own record: submitted -> finished $own s; $(load_now)"
}

run_tepui_sides() { # run_tepui_sides ROUND: the side(s) --tepui picked (with both, their order flips too)
    case $SIDE in
        batch) run_batch "$1" ;;
        load) run_tepui "$1" ;;
        both) if (( $1 % 2 )); then run_batch "$1"; run_tepui "$1"; else run_tepui "$1"; run_batch "$1"; fi ;;
    esac
}

[[ $ONLY == tepui ]] || start_slurm
[[ $ONLY == slurm ]] || start_tepui
say "$JOBS trivial jobs (true), $SLOTS one-CPU slots each side, $ROUNDS round(s), order flips each round;" \
    "Tepui side: $SIDE; $(load_now)"
for (( r = 1; r <= ROUNDS; r++ )); do
    if (( r % 2 )); then
        [[ $ONLY == tepui ]] || run_slurm "$r"
        [[ $ONLY == slurm ]] || run_tepui_sides "$r"
    else
        [[ $ONLY == slurm ]] || run_tepui_sides "$r"
        [[ $ONLY == tepui ]] || run_slurm "$r"
    fi
done

if [[ -n $ONLY ]]; then
    say "--only $ONLY: Slurm rounds: ${SLURM_TIMES[*]:-none}; Tepui batch rounds: ${BATCH_TIMES[*]:-none};" \
        "Tepui load framework rounds: ${TEPUI_TIMES[*]:-none} (no ratio)"
    exit 0
fi
S=$(median "${SLURM_TIMES[@]}")
say "Slurm  median $S s: $(rate "$S") jobs/s  (rounds: ${SLURM_TIMES[*]})"
if [[ $SIDE != batch ]]; then
    T=$(median "${TEPUI_TIMES[@]}")
    O=$(median "${TEPUI_OWN[@]}")
    say "Tepui (load framework)  median $T s wall-clock: $(rate "$T") jobs/s  (rounds: ${TEPUI_TIMES[*]});" \
        "own figure (first ACCEPT -> last terminal) median $O s: $(rate "$O") jobs/s"
    FINAL=$(awk -v s="$S" -v t="$T" 'BEGIN { printf "speedup_vs_slurm=%.2f", s / t }')
fi
if [[ $SIDE != load ]]; then
    B=$(median "${BATCH_TIMES[@]}")
    O=$(median "${BATCH_OWN[@]}")
    say "Tepui (batch)  median $B s wall-clock: $(rate "$B") jobs/s  (rounds: ${BATCH_TIMES[*]});" \
        "the job's own record (submitted -> finished) median $O s: $(rate "$O") jobs/s"
    FINAL=${FINAL:+$FINAL$'\n'}$(awk -v s="$S" -v t="$B" 'BEGIN { printf "speedup_vs_slurm_array=%.2f", s / t }')
fi
say "ratio uses the wall-clock figures; machine: $(nproc) cores; $(load_now)"
# The figures are printed by cleanup, after everything started here is stopped, so they are the last lines.
