"""``bench/fuzz.py`` with a tiny count, as CI runs it: it starts, fuzzes both the master and the
agent, reports progress, and ends with ``crashes=0`` and exit status 0. (The fuzzing itself is
in tests/master/test_fuzz.py and tests/agent/test_fuzz.py; this proves the long run works.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
