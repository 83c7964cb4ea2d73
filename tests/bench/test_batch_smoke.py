"""The batch framework's benchmarks in their smoke modes (issue 17, item 8), so they cannot rot:
each runs end to end on real processes (a master, agents, ``tepui batch``) and ends with its one
figure line. Figures are reported, never asserted (DESIGN: timing is measured in bench/, not in
tests); only the format, the exit status and the run's own checks are.

* ``bench/batch_array.py --smoke``: 200 tasks of ``true`` as one array → ``batch_tasks_per_second=<x>``.
* ``bench/batch_queue.py --smoke``: 2,000 pending tasks as one array, then as two 1,000-task jobs,
  on a master with no agents → ``batch_queue_rss_mib=<x>``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"
NUMBER = r"\d+(?:\.\d+)?"


def _run(script: str, timeout: float) -> tuple[list[str], str]:
    result = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], capture_output=True, text=True,
                            timeout=timeout, check=False)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    return lines, result.stdout


def test_batch_array_smoke_reports_tasks_per_second() -> None:
    lines, out = _run("batch_array.py", timeout=240)
    match = re.fullmatch(rf"batch_tasks_per_second=({NUMBER})", lines[-1])
    assert match and float(match.group(1)) > 0, out
    assert "200 tasks SUCCEEDED" in out, out


def test_batch_queue_smoke_reports_the_framework_rss() -> None:
    lines, out = _run("batch_queue.py", timeout=240)
    match = re.fullmatch(rf"batch_queue_rss_mib=({NUMBER})", lines[-1])
    assert match and float(match.group(1)) > 0, out
    assert "one: 2000 tasks pending" in out and "many: 2000 tasks pending" in out, out
