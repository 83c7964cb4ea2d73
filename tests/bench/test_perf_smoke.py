"""The performance benchmarks' smoke modes as tests (issue #8): each runs end to end on real
processes and ends with its one-line result. Figures are reported, never asserted (DESIGN: timing
is measured in bench/, not asserted in tests); only the format and the exit status are checked.

* ``bench/launch_throughput.py --smoke``: a master and ``tepui sim`` with 20 simulated agents,
  ``bench/load_framework.py`` launching 500 tasks of duration 0 once → ``launches_per_second=<x>``.
* ``bench/latency.py --smoke``: a master and one real agent, 20 sequential launches of ``true``
  timed from submit to TASK_RUNNING → ``p50_ms=<x> p99_ms=<y>``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"
NUMBER = r"\d+(?:\.\d+)?"


def _run(script: str, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output (exit {result.returncode})\n{result.stderr[-3000:]}"
    return result, lines


def test_launch_throughput_smoke_reports_launches_per_second() -> None:
    result, lines = _run("launch_throughput.py", "--smoke", timeout=240)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    match = re.fullmatch(rf"launches_per_second=({NUMBER})", lines[-1])
    assert match, f"unexpected last line {lines[-1]!r}\n{result.stdout}"
    assert float(match.group(1)) > 0
    assert any(line.startswith("agents=20 run 1/1: 500 tasks launched") for line in lines), result.stdout


def test_latency_smoke_reports_p50_and_p99() -> None:
    result, lines = _run("latency.py", "--smoke", timeout=180)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    match = re.fullmatch(rf"p50_ms=({NUMBER}) p99_ms=({NUMBER})", lines[-1])
    assert match, f"unexpected last line {lines[-1]!r}\n{result.stdout}"
    assert 0 < float(match.group(1)) <= float(match.group(2))


def test_load_framework_reports_one_json_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The load framework against two real agents: every task finishes and the last stdout line
    is the JSON result that bench/launch_throughput.py reads."""
    monkeypatch.setenv("TEPUI_CONFIG", os.devnull)  # LocalCluster sets it; undone after the test
    sys.path.insert(0, str(BENCH))
    try:
        from cluster import LocalCluster
    finally:
        sys.path.remove(str(BENCH))
    with LocalCluster(agents=2, agent_resources="cpus:4;mem:4096") as cluster:
        result, lines = _run("load_framework.py", "--master", cluster.master, "--insecure", "--tasks", "60",
                             "--duration", "0", timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert report["tasks"] == report["finished"] == 60 and report["failed"] == 0
    assert set(report) == {"tasks", "finished", "failed", "seconds", "launch_seconds", "launches_per_second",
                           "latency_ms"}
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert 0 < report["launch_seconds"] <= report["seconds"]


def test_master_core_bench_reports_the_cost_of_a_task_life() -> None:
    """bench/master_core.py launches and finishes every offered task through the pure core; it
    exits non-zero when the core launched fewer tasks than were sent or left some unfinished."""
    result, lines = _run("master_core.py", "--reps", "1", "--rounds", "2", timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    assert "2000 task lives" in lines[0], lines
    assert re.fullmatch(rf"us_per_task_life=({NUMBER})", lines[-1]), lines
