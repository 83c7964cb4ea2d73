"""Container start latency: ACCEPT sent → TASK_RUNNING seen by the framework, for process tasks
(with cgroups when the agent has them) and Docker tasks; median of N sequential launches.

    python bench/container_start.py --kind process [--count 20]
    python bench/container_start.py --kind docker --image tepui-test/busybox:1

Anchors: Mesos agents launched ~33 containers/s (PERFORMANCE_ANCHORS 2.10); Kubernetes' SLO is
pod startup p99 <= 5 s excluding image pulls (3.2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from cluster import LocalCluster  # noqa: E402

FRAMEWORK = os.path.join(os.path.dirname(__file__), "start_framework.py")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["process", "docker"], default="process")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--image", default=os.environ.get("TEPUI_TEST_IMAGE", "tepui-test/busybox:1"))
    args = parser.parse_args()
    command = [sys.executable, FRAMEWORK, "--count", str(args.count)]
    if args.kind == "docker":
        command += ["--image", args.image]
    with LocalCluster(agents=1) as cluster:
        done = subprocess.run(command + ["--master", cluster.master], capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    errors = [line["error"] for line in lines if "error" in line]
    latencies = next((line["latencies"] for line in lines if "latencies" in line), [])
    if errors or len(latencies) < args.count:
        raise SystemExit(f"the benchmark framework failed: {errors or done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    ordered = sorted(latencies)
    median = statistics.median(ordered)
    print(f"{args.kind} tasks: {len(ordered)} launches, ACCEPT -> RUNNING median {median * 1000:.1f} ms, "
          f"min {ordered[0] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")
    print(f"{args.kind}_start_seconds={median:.4f}")


if __name__ == "__main__":
    main()
