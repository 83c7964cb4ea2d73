"""A bounded CPU hog: K processes that busy-loop so that what runs beside them (a benchmark, a
test suite) runs on a machine whose cores are all busy, as on a shared CI host or a laptop
running a second cluster.

    python bench/cpu_hog.py --procs 2 --seconds 600     # both cores of a 2-core box, 10 min at most

As a module (``bench/chaos.py --cpu-hog K`` uses it)::

    hog = CpuHog.start(procs=2, seconds=600)
    try:
        ...
    finally:
        print(hog.stop())            # "2 CPU hog processes ran 41.3 s, used 80.9 CPU s"

Why each hog is bounded three ways (a hog left behind would skew every later measurement on
the machine, and nobody would know why): it exits by itself at its deadline (``--seconds``,
checked in the loop), it asks the kernel to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``, so a benchmark killed with SIGKILL takes its hogs with it), and the
owner stops it by pid (SIGKILL, then reaped) as soon as the work it loaded is done.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """The kernel SIGKILLs this process when the thread that spawned it ends. If the parent is
    already gone (it died between our fork and this call) the signal would never come: exit."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the deadline alone bounds the hog
    if os.getppid() != parent:
        sys.exit(0)


def spin(deadline: float) -> None:
    """Busy-loop (pure arithmetic, no syscalls in the hot path) until ``time.monotonic()`` passes
    ``deadline``."""
    x = 0
    while time.monotonic() < deadline:
        for _ in range(20_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


@dataclass
class CpuHog:
    """``procs`` busy-looping child processes, each ending by itself ``seconds`` after start."""

    procs: int
    seconds: float
    popens: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: float = 0.0
    cpu_seconds: float = 0.0
    stopped: float | None = None

    @classmethod
    def start(cls, procs: int, seconds: float) -> CpuHog:
        hog = cls(procs, seconds, started=time.monotonic())
        argv = [sys.executable, os.path.abspath(__file__), "--worker", "--seconds", str(seconds),
                "--parent", str(os.getpid())]
        for _ in range(procs):
            hog.popens.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               close_fds=True))
        return hog

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.popens]

    def describe(self) -> str:
        if not self.popens:
            return "no CPU hog"
        return (f"CPU hog: {self.procs} busy-looping processes (pids {', '.join(map(str, self.pids))}), "
                f"each ends by itself after {self.seconds:g} s at most")

    def stop(self) -> str:
        """SIGKILL each hog by pid and reap it; returns what they did (wall time, CPU time used)."""
        if self.stopped is not None or not self.popens:
            return self.summary()
        for popen in self.popens:  # by pid, no poll(): a hog that ended by itself is a zombie until wait4
            if popen.returncode is None:
                os.kill(popen.pid, signal.SIGKILL)
        for popen in self.popens:
            if popen.returncode is None:
                _, status, usage = os.wait4(popen.pid, 0)  # reaped here to read its CPU time
                self.cpu_seconds += usage.ru_utime + usage.ru_stime
                popen.returncode = os.waitstatus_to_exitcode(status)
        self.stopped = time.monotonic()
        return self.summary()

    def summary(self) -> str:
        if not self.popens:
            return "no CPU hog"
        wall = (self.stopped or time.monotonic()) - self.started
        return (f"CPU hog: {self.procs} processes ran {wall:.1f} s, used {self.cpu_seconds:.1f} CPU s "
                f"({self.cpu_seconds / max(wall, 1e-9):.2f} cores)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="hog processes (default: one a core)")
    parser.add_argument("--seconds", type=float, default=600.0, help="each exits by itself after this (default 600)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        deadline = time.monotonic() + args.seconds
        _die_with_parent(args.parent)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        spin(deadline)
        return 0
    hog = CpuHog.start(args.procs, args.seconds)
    print(hog.describe(), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the finally below
    try:
        time.sleep(max(0.0, hog.started + args.seconds - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        print(hog.stop(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
