"""Memory of the batch framework holding a queue of 100,000 pending tasks (issue 17, item 8:
under 500 MiB RSS).

Starts a real master with no agents (nothing is ever offered, so every task stays pending) and,
for each layout, a fresh ``tepui batch`` process with its own store:

* ``one``: one job, a 100,000-task array;
* ``many``: 100 jobs of a 1,000-task array each (per-job records, stages and ledgers x 100).

It submits the jobs through ``POST /v1/jobs`` (timed), waits until ``GET /v1/queues`` counts every
task pending and the process's RSS has settled (three samples a second apart within 1 MiB),
then reads VmRSS and VmHWM from ``/proc/<pid>/status``, the CPU the process spends in 5 s of
holding the queue (its once-a-second tick), how long ``GET /v1/queues`` and ``GET /v1/jobs``
take, and the store's size.

    python bench/batch_queue.py [--tasks 100000] [--layout one --layout many]
    python bench/batch_queue.py --smoke            # 2,000 tasks (CI)

The last line is ``batch_queue_rss_mib=<N>``: the larger settled VmRSS of the layouts run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batch_process import BatchProcess, array_spec, load  # noqa: E402
from cluster import LocalCluster  # noqa: E402

LAYOUTS = ("one", "many")


def jobs_of(layout: str, tasks: int) -> list[int]:
    """The array sizes to submit: one job of ``tasks``, or ``tasks`` split into 1,000-task jobs."""
    if layout == "one":
        return [tasks]
    per_job = min(1000, tasks)
    return [per_job] * (tasks // per_job) + ([tasks % per_job] if tasks % per_job else [])


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(cluster: LocalCluster, layout: str, tasks: int) -> float:
    sizes = jobs_of(layout, tasks)
    with BatchProcess(cluster, name=f"batch-{layout}") as batch:
        before = batch.status()
        started = time.perf_counter()
        for i, size in enumerate(sizes):
            batch.submit(array_spec(f"queue-{layout}-{i}", size, cpus=1, mem=128))
        submit_seconds = time.perf_counter() - started
        print(f"{layout}: {len(sizes)} job(s) of {sizes[0]} tasks submitted in {submit_seconds:.2f} s "
              f"(tepui batch pid {batch.pid}, RSS {before['VmRSS']:.0f} MiB before); {load()}", flush=True)
        deadline = time.monotonic() + 300
        samples: list[float] = []
        while True:
            if time.monotonic() > deadline:
                raise SystemExit(f"batch_queue: {layout}: the queue did not settle within 300 s; logs in {cluster.dir}")
            pending = sum(q["pending"] for q in batch.call("GET", "/queues")["queues"])
            samples.append(batch.status()["VmRSS"])
            if pending == tasks and len(samples) >= 3 and max(samples[-3:]) - min(samples[-3:]) < 1:
                break
            time.sleep(1.0)
        cpu_before = batch.status()["cpu_seconds"]
        time.sleep(5)
        idle_cpu = (batch.status()["cpu_seconds"] - cpu_before) / 5
        queues_ms = timed(lambda: batch.call("GET", "/queues")) * 1000
        jobs_ms = timed(lambda: batch.call("GET", "/jobs?limit=100")) * 1000
        status = batch.status()
        store_mib = sum(os.path.getsize(path) for path in (batch.store, batch.store + "-wal")
                        if os.path.exists(path)) / (1 << 20)
        print(f"{layout}: {pending} tasks pending: VmRSS {status['VmRSS']:.0f} MiB, VmHWM {status['VmHWM']:.0f} MiB "
              f"({(status['VmRSS'] - before['VmRSS']) * 1024 * 1024 / tasks:.0f} bytes per pending task over the "
              f"idle process); holding it costs {idle_cpu * 100:.1f}% of a core; GET /v1/queues {queues_ms:.0f} ms, "
              f"GET /v1/jobs?limit=100 {jobs_ms:.0f} ms; store {store_mib:.1f} MiB; {load()}", flush=True)
        return status["VmRSS"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--layout", action="append", choices=LAYOUTS, help="one, many (default: both)")
    parser.add_argument("--smoke", action="store_true", help="2,000 tasks")
    args = parser.parse_args()
    if args.smoke:
        args.tasks = 2000
    layouts = args.layout or list(LAYOUTS)
    with LocalCluster(agents=0) as cluster:
        print(f"master {cluster.master} with no agents: every task stays pending; {os.cpu_count()} cores", flush=True)
        rss = [measure(cluster, layout, args.tasks) for layout in layouts]
    print(f"batch_queue_rss_mib={max(rss):.0f}")


if __name__ == "__main__":
    main()
