"""The failover benchmark as a test (issue 19, item 7): ``bench/failover.py`` at a small size —
its own 3-server ensemble (never the shared test one), three HA masters, 100 simulated agents,
a framework with 100 running tasks, the leader SIGKILLed twice — reports every phase per round,
the medians, no false failover, and ends with ``failover_seconds=``. About 40 s."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tepui.cli.ensemble import installed

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not installed(), reason="needs the ZooKeeper server jars (zookeeperd)")]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "failover.py"


def test_failover_bench_times_every_phase_and_ends_with_failover_seconds() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--agents", "100", "--rounds", "2", "--settle", "1"],
                            capture_output=True, text=True, timeout=300, check=False)
    out = result.stdout
    lines = out.strip().splitlines()
    assert result.returncode == 0, f"exit {result.returncode}\n{out}\n{result.stderr[-3000:]}"
    match = re.fullmatch(r"failover_seconds=(\d+\.\d\d)", lines[-1])
    assert match, out
    # Each round: SIGKILL → session expiry (T = 2 s, so about 1.3–2.2 s) → everything back.
    assert 1.0 < float(match.group(1)) < 20.0, out
    assert re.search(r"^round 2: killed master\d; expired [\d.]+ s, serving [\d.]+ s, agents99 [\d.]+ s, "
                     r"resubscribed [\d.]+ s, task [\d.]+ s; all agents [\d.]+ s; failover [\d.]+ s$", out, re.M), out
    assert re.search(r"^\s+median\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.M), out
    assert "false failovers: 0 leadership changes not caused by a kill; masters that exited by themselves: none; " \
           "event=leadership_lost in logs: 0" in out, out
    assert "logs kept" not in out, out  # a clean run removes its directory (ensemble included)
