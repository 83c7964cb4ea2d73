"""End-to-end launch throughput and latency through the example framework.

Starts a real master and two agents, then runs ``examples/hello_framework.py`` for N tasks and
measures the whole framework's wall time (subscribe → offers → launch → run → FINISHED → ack →
teardown), repeated to report a median, because this machine's timings move 1.5-2x between
runs. The Mesos paper's anchor: task-launch overhead under 1 s (PERFORMANCE_ANCHORS 1.3).

    python bench/hello_tasks.py [--tasks 10 --tasks 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import LocalCluster  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "hello_framework.py")


def run_once(master: str, tasks: int) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, EXAMPLE, "--master", master, "--tasks", str(tasks)],
                            capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or f"{tasks} tasks finished" not in result.stdout:
        raise SystemExit(f"the framework failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, action="append")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = args.tasks or [10, 200]
    medians = {}
    # 16 cpus per agent so that 200 tasks of 0.1 cpu fit at once.
    with LocalCluster(agents=2, agent_resources="cpus:16;mem:16384") as cluster:
        for tasks in sizes:
            times = [run_once(cluster.master, tasks) for _ in range(args.repeat)]
            medians[tasks] = statistics.median(times)
            print(f"{tasks:>5} tasks: median {medians[tasks]:.3f} s over {args.repeat} runs "
                  f"(min {min(times):.3f}, max {max(times):.3f}); {tasks / medians[tasks]:.1f} tasks/s "
                  "including framework start-up and teardown", flush=True)
    first = sizes[0]
    print(f"hello_{first}_tasks_seconds={medians[first]:.3f}")


if __name__ == "__main__":
    main()
