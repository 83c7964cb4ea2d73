"""Throughput of the batch framework: one N-task array of ``true`` (issue 17, item 8), timed from
just before ``POST /v1/jobs`` to the job's SUCCEEDED.

Starts a real master and two real agents (``cpus:16;mem:16384`` each, as bench/hello_tasks.py)
and a real ``tepui batch`` process, then submits one job: a stage of ``--tasks`` tasks of
``true`` with ``--cpus`` 0.25 and 16 MB each. Why 0.25: 128 tasks fit at once on the two agents,
far more than are ever in flight (a ``true`` task lives tens of milliseconds, so the cluster's
launch path, not the slots, is what limits), while the CFS quota (25 ms per 100 ms period) is
still well above what a task tree costs (about 7 ms of CPU: supervisor, ``setpriv``, ``true``),
so no task waits for its next period.

    python bench/batch_array.py [--tasks 10000] [--cpus 0.25]
    python bench/batch_array.py --smoke            # 200 tasks (CI: tests/bench/test_batch_smoke.py)

While it waits it polls ``GET /v1/jobs/{id}`` every second and prints the task counts (at most a
line every 5 s). The figure is N over (the job's ``finished_at``, the framework's own record, minus
the moment just before the POST; same machine, same clock), so the poll's granularity is not in
it. Then the CPU seconds each process spent during the run (from ``/proc``: the batch framework,
the master, the agents — not the tasks, which are the agents' children), the framework's RSS,
and last ``batch_tasks_per_second=<N>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batch_process import CLOCK_TICKS, BatchProcess, array_spec, load  # noqa: E402
from cluster import LocalCluster  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / CLOCK_TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--cpus", type=float, default=0.25, help="cpus per task (default 0.25: 128 at once)")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--agent-resources", default="cpus:16;mem:16384")
    parser.add_argument("--smoke", action="store_true", help="200 tasks")
    args = parser.parse_args()
    if args.smoke:
        args.tasks = 200
    with LocalCluster(agents=args.agents, agent_resources=args.agent_resources) as cluster, \
            BatchProcess(cluster) as batch:
        pids = {"batch": batch.pid, "master": cluster.processes[0].pid}
        pids.update({f"agent-{i}": p.pid for i, p in enumerate(cluster.processes[1:])})
        print(f"cluster up: master {cluster.master}, {args.agents} agents ({args.agent_resources}); tepui batch "
              f"pid {batch.pid} (API {batch.api}); {args.tasks} tasks of `true`, cpus {args.cpus:g}, mem 16; "
              f"{load()}", flush=True)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.time()
        job = batch.submit(array_spec("bench-array", args.tasks, args.cpus, 16))
        submitted = time.time() - started
        print(f"submitted {job['id']} in {submitted * 1000:.0f} ms", flush=True)
        deadline = time.monotonic() + 120 + args.tasks * 0.2
        printed = 0.0
        while job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED"):
            if time.monotonic() > deadline:
                raise SystemExit(f"batch_array: job {job['id']} still {job['state']} ({job['tasks']}); "
                                 f"logs in {cluster.dir}")
            time.sleep(1.0)
            job = batch.job(job["id"])
            if time.monotonic() - printed >= 5:
                printed = time.monotonic()
                t = job["tasks"]
                print(f"  {time.time() - started:6.1f} s  {job['state']:9}  succeeded {t['succeeded']}  running "
                      f"{t['running']}  pending {t['pending']}  failed {t['failed']}  {load()}", flush=True)
        observed = time.time() - started
        if job["state"] != "SUCCEEDED":
            raise SystemExit(f"batch_array: job {job['id']} ended {job['state']} ({job['tasks']}, reason "
                             f"{job.get('reason')}); logs in {cluster.dir}")
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        finished_at = job.get("finished_at")
        seconds = float(finished_at) - started if finished_at else observed
        status = batch.status()
    rate = args.tasks / seconds
    print(f"{args.tasks} tasks SUCCEEDED {seconds:.2f} s after the POST ({rate:.1f} tasks/s; seen by polling after "
          f"{observed:.1f} s; the job's own record: submitted -> finished "
          f"{float(finished_at or 0) - float(job['submitted_at']):.2f} s); {load()}; {os.cpu_count()} cores")
    print("CPU seconds during the run: " + ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
          + f" (batch: {cpu['batch'] * 1000 / args.tasks:.2f} ms per task)")
    print(f"tepui batch: VmRSS {status['VmRSS']:.0f} MiB, VmHWM {status['VmHWM']:.0f} MiB, "
          f"{status['cpu_seconds']:.1f} CPU seconds since its start")
    print(f"batch_tasks_per_second={rate:.1f}")


if __name__ == "__main__":
    main()
