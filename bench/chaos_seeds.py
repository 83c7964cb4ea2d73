"""Several seeds of the chaos benchmark in a row (``bench/chaos.py --seeds N``), one table row
each as it finishes, then a total:

    python bench/chaos.py --smoke --seeds 20 --cpu-hog 2     # 20 smoke seeds, both cores busy

Why a table of seeds: one seed is one interleaving of faults; a recovery bug that needs a
message lost at a particular moment (or a process slowed by a busy CPU) shows up in one seed
out of ten, so the claim "nothing is lost" is only as good as the number of seeds behind it.

Each seed runs exactly what ``--seed S`` alone runs, in its own temp dir; its full output (the
chaos actions, the summary, the details) goes to ``chaos.out`` in that dir, which is kept when
the seed fails (or with ``--keep``) and removed otherwise. Under a failed row the table shows
where the dir is and its first detail lines. The last line is ``lost_or_duplicated=<sum over
seeds>``; the exit code is non-zero if any seed failed (lost or duplicated something, or did not
run to the end).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos_report import Tally
from cpu_hog import CpuHog

COLUMNS = ("seed", "tasks", "launched", "started", "launched 2x", "run 2x", "lost", "wrong reports", "actions",
           "msgs dropped", "msgs duplicated", "seconds", "load", "result")
DETAIL_LINES = 5


@dataclass
class SeedResult:
    seed: int
    tally: Tally | None  # None: the run did not get to its summary (error)
    seconds: float
    load: float  # the 1-minute load average when the seed ended
    root: Path | None = None  # its directory, when kept
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.tally is None or self.tally.lost_or_duplicated > 0


def _cells(label: str, tally: Tally, seconds: float, load: float, result: str) -> list[str]:
    return [label, str(tally.tasks), str(tally.launched), str(tally.started), str(tally.launched_twice),
            str(tally.finished_twice), str(tally.lost), str(tally.wrong_reports), str(tally.actions), str(tally.dropped),
            str(tally.duplicated), f"{seconds:.1f}", f"{load:.2f}", result]


def _line(cells: Sequence[str]) -> str:
    """Right-aligned under the headers (the last column, text, left-aligned)."""
    widths = [max(len(c), 5) for c in COLUMNS]
    return "  ".join(c.rjust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1]


def header() -> str:
    return _line(COLUMNS)


def row(result: SeedResult) -> str:
    if result.tally is None:
        return _line([str(result.seed)] + ["-"] * 10 + [f"{result.seconds:.1f}", f"{result.load:.2f}",
                                                       f"ERROR {result.error}"])
    value = result.tally.lost_or_duplicated
    return _line(_cells(str(result.seed), result.tally, result.seconds, result.load,
                        "ok" if value == 0 else f"FAIL lost_or_duplicated={value}"))


def total(results: Sequence[SeedResult]) -> str:
    """Sums over the seeds that ran to their summary; seconds summed; load: the highest seen."""
    ran = [r.tally for r in results if r.tally is not None]
    summed = Tally(**{name: sum(getattr(t, name) for t in ran) for name in (
        "tasks", "launched", "started", "launched_twice", "finished_twice", "lost", "wrong_reports", "actions",
        "dropped", "duplicated")})
    failed = sum(r.failed for r in results)
    verdict = f"{failed} of {len(results)} seeds failed" if failed else f"all {len(results)} seeds ok"
    return _line(_cells("total", summed, sum(r.seconds for r in results),
                        max((r.load for r in results), default=0.0), verdict))


def lost_or_duplicated(results: Sequence[SeedResult]) -> int:
    return sum(r.tally.lost_or_duplicated for r in results if r.tally is not None)


def hog_seconds(args: argparse.Namespace) -> float:
    """How long a CPU hog may live at most: the whole run with room to spare (per seed: the chaos,
    the settle time, and 180 s for start-up, the final reconciliation and the teardown)."""
    return (args.seeds or 1) * (args.duration + args.settle + 180.0)


def run_seeds(args: argparse.Namespace, make_root: Callable[[], Path],
              run_once: Callable[[argparse.Namespace, Path], Tally], hog: CpuHog | None) -> int:
    """Runs seeds ``args.seed`` .. ``args.seed + args.seeds - 1``; prints the table; stops ``hog``
    (before the last line, which must be ``lost_or_duplicated=``)."""
    first, count = args.seed, args.seeds
    print(f"chaos seeds {first}..{first + count - 1}: {args.tasks} tasks, {args.duration:g} s of chaos"
          f"{' (smoke)' if args.smoke else ''}, {args.agents} agents, drop rate {args.fault_rate:g}, "
          f"duplicate rate {args.duplicate_rate:g}; load average at start "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    print(header(), flush=True)
    results: list[SeedResult] = []
    for seed in range(first, first + count):
        seed_args = argparse.Namespace(**vars(args))
        seed_args.seed = seed
        root = make_root()
        started = time.monotonic()
        tally: Tally | None = None
        error = ""
        with open(root / "chaos.out", "w") as out, contextlib.redirect_stdout(out):
            try:
                tally = run_once(seed_args, root)
            except Exception as exc:  # one seed that could not run must not stop the others
                traceback.print_exc(file=out)
                error = f"{type(exc).__name__}: {exc}"
        result = SeedResult(seed, tally, time.monotonic() - started, os.getloadavg()[0], error=error)
        results.append(result)
        if result.failed or args.keep:
            result.root = root
        else:
            shutil.rmtree(root, ignore_errors=True)
        print(row(result), flush=True)
        if result.failed:
            print(f"      run directory kept: {root} (its output: chaos.out)", flush=True)
            for line in (tally.problems if tally else [])[:DETAIL_LINES]:
                print(f"      {line}", flush=True)
    print(total(results), flush=True)
    if hog is not None:
        print(hog.stop(), flush=True)
    print(f"lost_or_duplicated={lost_or_duplicated(results)}", flush=True)
    return 1 if any(r.failed for r in results) else 0
