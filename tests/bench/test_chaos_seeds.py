"""``bench/chaos.py --seeds N``: one aligned row per seed, a total, the ``lost_or_duplicated``
sum as the last line (the table code as a pure unit, then a real two-seed run); and the bounded
CPU hog (``bench/cpu_hog.py``) it can run beside: busy while it runs, gone after ``stop()``
and gone by itself when its parent is SIGKILLed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[Any]:
    sys.path.insert(0, str(BENCH))
    try:
        import chaos_report
        import chaos_seeds
        import cpu_hog
    finally:
        sys.path.remove(str(BENCH))
    yield type("Bench", (), {"report": chaos_report, "seeds": chaos_seeds, "hog": cpu_hog})


def _result(bench: Any, seed: int, lost: int = 0, twice: int = 0, error: str = "") -> Any:
    tally = None if error else bench.report.Tally(tasks=60, launched=64, started=61, launched_twice=twice,
                                                   finished_twice=0, lost=lost, wrong_reports=seed, actions=3,
                                                   dropped=40, duplicated=41)
    return bench.seeds.SeedResult(seed, tally, seconds=31.25, load=2.5 + seed, error=error)


def test_rows_are_aligned_under_the_header_and_the_total_sums_them(bench: Any) -> None:
    results = [_result(bench, 1), _result(bench, 2, lost=1, twice=2), _result(bench, 3, error="RuntimeError: x")]
    header = bench.seeds.header()
    lines = [bench.seeds.row(r) for r in results] + [bench.seeds.total(results)]
    ends = [m.end() for m in re.finditer(r"\S+(?= {2}|$)", header)][:-1]  # right edge of each numeric column
    for line in lines:
        for end in ends:
            assert line[end - 1] != " " and (end == len(line) or line[end] == " "), (header, line)
    assert lines[0].split()[:4] == ["1", "60", "64", "61"] and lines[0].endswith("  ok")
    assert lines[1].endswith("FAIL lost_or_duplicated=3")
    assert lines[2].split()[1] == "-" and lines[2].endswith("ERROR RuntimeError: x")
    total = lines[3].split()
    assert total[:8] == ["total", "120", "128", "122", "2", "0", "1", "3"] and total[11:13] == ["93.8", "5.50"]
    assert lines[3].endswith("2 of 3 seeds failed")
    assert bench.seeds.lost_or_duplicated(results) == 3
    assert bench.seeds.total(results[:1]).endswith("all 1 seeds ok")


def _busy(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] in "RS"
    except OSError:
        return False


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_cpu_hog_runs_bounded_and_stops_by_pid(bench: Any) -> None:
    hog = bench.hog.CpuHog.start(procs=2, seconds=60)
    try:
        # Waits for the fact, not for a time: on a machine busy with other hogs, two new ones
        # got less than 0.5 CPU s in their first second and a fixed sleep made this fail.
        deadline = time.monotonic() + 50
        while sum(_cpu_seconds(pid) for pid in hog.pids) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_busy(pid) for pid in hog.pids)
    finally:
        summary = hog.stop()
    assert not any(_busy(pid) for pid in hog.pids)
    assert re.fullmatch(r"CPU hog: 2 processes ran [\d.]+ s, used [\d.]+ CPU s \([\d.]+ cores\)", summary)
    assert hog.cpu_seconds >= 0.5, "they burned CPU, as the summary says"
    short = bench.hog.CpuHog.start(procs=1, seconds=0.5)  # its own deadline ends it
    time.sleep(2.0)
    assert not _busy(short.pids[0])  # a zombie until stop() reaps it
    short.stop()


def test_cpu_hog_dies_with_its_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); import cpu_hog; "
         "print(*cpu_hog.CpuHog.start(2, 60).pids, flush=True); time.sleep(60)", str(BENCH)],
        stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while any(_busy(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_busy(pid) for pid in pids)


@pytest.mark.slow
def test_two_smoke_seeds_print_two_rows_a_total_and_the_sum() -> None:
    """About 40 s: two short smoke seeds (20 tasks, 10 s of chaos, one fault each) with a hog."""
    result = subprocess.run([sys.executable, str(BENCH / "chaos.py"), "--smoke", "--seeds", "2", "--seed", "5",
                             "--tasks", "20", "--duration", "10", "--cpu-hog", "1"],
                            capture_output=True, text=True, timeout=170, check=False)
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output (exit {result.returncode})\n{result.stderr[-3000:]}"
    rows = [line.split() for line in lines if re.match(r"\s*\d+\s+20\s", line)]
    assert [r[0] for r in rows] == ["5", "6"], result.stdout
    assert lines[0].startswith("CPU hog: 1 busy-looping processes (pids ")
    assert lines[-3].split()[0] == "total" and lines[-2].startswith("CPU hog: 1 processes ran ")
    total = sum(int(r[4]) + int(r[5]) + int(r[6]) for r in rows)  # launched 2x, run 2x, lost
    assert lines[-1] == f"lost_or_duplicated={total}", result.stdout
    assert (result.returncode == 0) == (total == 0) == all(r[-1] == "ok" for r in rows), result.stdout
