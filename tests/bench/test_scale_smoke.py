"""The scale benchmark's smoke mode as a test: ``bench/scale.py --smoke`` (a real master, 200
simulated agents from ``tepui sim``, 2,000 one-hour tasks launched by a real framework) must
get every task running, measure the master, and end with ``master_rss_mib=<n>``.

The bench starts and stops its own processes (on free ports, under its own temp dir, kept with
every log when it fails).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"


def test_scale_smoke_reports_the_masters_rss() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, timeout=240,
                            check=False)
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output (exit {result.returncode})\n{result.stderr[-3000:]}"
    assert re.fullmatch(r"master_rss_mib=\d+", lines[-1]), f"exit {result.returncode}\n{result.stdout}\n" \
                                                            f"{result.stderr[-3000:]}"
    assert int(lines[-1].split("=")[1]) > 0
    assert any(line.startswith("/state: median") for line in lines)
    assert any(line.startswith("/state-summary: median") for line in lines)
    assert result.returncode == 0
