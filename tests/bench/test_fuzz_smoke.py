"""``bench/fuzz.py`` with a tiny count, as CI runs it: it starts, fuzzes both the master and the
agent, reports progress, and ends with ``crashes=0`` and exit status 0. (The fuzzing itself is
in tests/master/test_fuzz.py and tests/agent/test_fuzz.py; this proves the long run works.)
The same for ``--live`` (issue 15): a real cluster under 2,000 hostile calls."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


def test_fuzz_bench_smoke_ends_with_zero_crashes() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--count", "400", "--seed", "3"], capture_output=True,
                            text=True, timeout=120, check=False)
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1] == "crashes=0", f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    assert result.returncode == 0
    assert any(line.startswith("master: messages=200 ") for line in lines), result.stdout
    assert any(line.startswith("agent: messages=200 ") for line in lines), result.stdout
    assert "400/400 messages" in result.stdout


@pytest.mark.slow
def test_live_fuzz_smoke_ends_with_zero_crashes_and_leaves_nothing_behind() -> None:
    """``--live`` with 2,000 calls: a real master (CURVE keys, registry), two agents, the
    well-behaved framework and two hostile clients; the report covers every kind of call, the
    master answers call ids, the well-behaved framework was served, and every process and the
    run directory are gone afterwards."""
    result = subprocess.run([sys.executable, str(BENCH), "--live", "--count", "2000", "--clients", "2", "--seed", "3"],
                            capture_output=True, text=True, timeout=600, check=False)
    out = result.stdout
    lines = out.strip().splitlines()
    assert lines and lines[-1] == "crashes=0", f"exit {result.returncode}\n{out[-6000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0
    run_dir = re.search(r"run dir (\S+)", out)
    assert run_dir and not Path(run_dir.group(1)).exists(), out[:500]
    survivors = [pid for pid in os.listdir("/proc") if pid.isdigit() and run_dir.group(1) in _cmdline(pid)]
    assert survivors == [], survivors
    calls = re.search(r"^(\d+) hostile calls in", out, re.M)
    assert calls and int(calls.group(1)) >= 2000, out
    for kind in ("sub", "accept", "decline", "kill", "ack", "reconcile", "message", "update", "batch", "teardown"):
        assert re.search(rf"^{kind} +\d+", out, re.M), f"no {kind} row in\n{out}"
    assert "call ids: taken by the master True" in out
    assert "served after the attack: True" in out
    assert re.search(r"well-behaved framework: [1-9]\d* tasks finished during the attack", out), out


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
