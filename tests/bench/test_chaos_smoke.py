"""The chaos benchmark's smoke mode as a test: ``bench/chaos.py --smoke`` (60 tasks, 20 s of
chaos — an agent partitioned, the master SIGKILLed and restarted, an agent SIGKILLed and
restarted — with 5% of messages dropped and 5% duplicated on every link) must end with
``lost_or_duplicated=0``: every task accounted for, none launched twice, no work run twice.

The bench starts and stops its own processes (on free ports, under its own temp dir) and keeps
that dir, with every log, the framework's record and the proxies' fault logs, when it fails;
its output (printed on failure) names the dir and the tasks that went wrong.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def test_chaos_smoke_loses_and_duplicates_nothing() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, timeout=150,
                            check=False)
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output (exit {result.returncode})\n{result.stderr[-3000:]}"
    assert lines[-1] == "lost_or_duplicated=0", f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    assert result.returncode == 0
