"""Sandbox garbage collection (Mesos ``--gc_delay``, default one week).

A task's sandbox, ``<work_dir>/sandboxes/<framework_id>/<task_id>/``, outlives the task so that
people can read its ``stdout`` and ``stderr`` afterwards (``tepui logs``); it is deleted once the
task no longer runs and the sandbox has been idle for ``delay`` seconds. Idle means: the newest
mtime of the sandbox directory and of its top-level entries (``stdout``/``stderr`` are written
until the task ends, so this is about when the task last wrote its logs).

The job is self-contained: it is given the set of running ``(framework_id, task_id)`` (a callable,
read on the reactor thread) and a clock (``now``), so tests drive it on temp dirs with a fake
clock. Deleting can be slow (big sandboxes), so ``run_blocking`` moves it off the reactor thread
in production; selection, and the removal of empty framework directories (which races with a
launch creating a sandbox in them), stay on the reactor thread.

Never followed: a symlink at the framework or task level is skipped, and ``shutil.rmtree`` does
not follow symlinks inside a sandbox.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Collection
from typing import Any

from twisted.internet import defer, task

log = logging.getLogger("tepui.agent.gc")

DEFAULT_GC_DELAY = 7 * 24 * 3600.0  # Mesos --gc_delay=1weeks
MAX_INTERVAL = 3600.0
MIN_INTERVAL = 1.0


def sweep_interval(delay: float) -> float:
    """How often to look: a tenth of the delay (so a sandbox outlives it by at most 10 %), at
    most hourly, at least every second."""
    return max(MIN_INTERVAL, min(delay / 10.0, MAX_INTERVAL))


def last_activity(path: str) -> float:
    """Newest mtime of ``path`` and its direct entries (never following symlinks)."""
    newest = os.lstat(path).st_mtime
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
    return newest


class SandboxGC:
    def __init__(self, work_dir: str, delay: float, running: Callable[[], Collection[tuple[str, str]]],
                 now: Callable[[], float],
                 run_blocking: Callable[..., defer.Deferred[Any]] | None = None) -> None:
        if delay <= 0:
            raise ValueError(f"the sandbox GC delay must be > 0 seconds, got {delay!r}")
        self.root = os.path.join(work_dir, "sandboxes")
        self.delay = delay
        self.running = running
        self.now = now
        self.run_blocking = run_blocking or defer.maybeDeferred
        self.removed_total = 0
        self._loop: task.LoopingCall | None = None

    @property
    def interval(self) -> float:
        return sweep_interval(self.delay)

    def _dirs(self, path: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as entries:
                return [e for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []

    def collectable(self) -> list[str]:
        """Sandboxes to delete now. Also removes framework directories that are empty and have no
        running task (cheap, and done here, on the caller's thread, so that it never races with a
        launch creating a sandbox inside one)."""
        running = set(self.running())
        running_frameworks = {fid for fid, _ in running}
        now = self.now()
        doomed = []
        for framework in self._dirs(self.root):
            tasks = self._dirs(framework.path)
            for sandbox in tasks:
                if (framework.name, sandbox.name) in running:
                    continue
                try:
                    idle = now - last_activity(sandbox.path)
                except OSError:
                    continue
                if idle >= self.delay:
                    doomed.append(sandbox.path)
            if not tasks and framework.name not in running_frameworks:
                try:
                    os.rmdir(framework.path)  # fails, harmlessly, unless it is really empty
                except OSError:
                    pass
        return sorted(doomed)

    def remove(self, paths: list[str]) -> list[str]:
        """Deletes the given sandboxes (re-checking that each is still idle: a task relaunched
        under the same id would have written to it since); returns what was deleted."""
        removed = []
        now = self.now()
        for path in paths:
            try:
                if os.path.islink(path) or now - last_activity(path) < self.delay:
                    continue
                shutil.rmtree(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("event=sandbox_gc_failed sandbox=%s error=%r", path, str(exc))
                continue
            removed.append(path)
        if removed:
            self.removed_total += len(removed)
            log.info("event=sandboxes_collected count=%d delay_s=%g", len(removed), self.delay)
        return removed

    def sweep(self) -> defer.Deferred[list[str]]:
        """One pass: select, then delete (through ``run_blocking``)."""
        return self.run_blocking(self.remove, self.collectable())

    def _tick(self) -> defer.Deferred[Any]:
        def failed(failure: Any) -> None:
            log.error("event=sandbox_gc_error error=%r", str(failure.value))

        # Any error is logged and the next pass still happens (a LoopingCall stops on failure).
        return defer.maybeDeferred(self.sweep).addErrback(failed)

    def start(self, clock: Any) -> task.LoopingCall:
        """Sweeps every ``interval`` on ``clock`` (the reactor), the first time one interval from
        now: a restarting agent first learns which of its tasks still run."""
        loop = task.LoopingCall(self._tick)
        loop.clock = clock
        loop.start(self.interval, now=False)
        self._loop = loop
        return loop

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
