"""Sandbox garbage collection on temp dirs with a fake clock (mtimes are set explicitly)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.internet import defer, task

from tepui.agent.sandbox.sandbox_gc import SandboxGC, sweep_interval

DAY = 24 * 3600.0
NOW = 1_000_000_000.0


class World:
    def __init__(self, root: Path) -> None:
        self.work_dir = root
        self.now = NOW
        self.running: set[tuple[str, str]] = set()

    def sandbox(self, fid: str, tid: str, age: float, files: dict[str, float] | None = None) -> Path:
        """A sandbox last touched ``age`` seconds ago (its entries: name -> age)."""
        path = self.work_dir / "sandboxes" / fid / tid
        path.mkdir(parents=True)
        for name, file_age in (files or {"stdout": age, "stderr": age}).items():
            (path / name).write_text("x")
            os.utime(path / name, (self.now - file_age, self.now - file_age))
        os.utime(path, (self.now - age, self.now - age))
        return path

    def gc(self, delay: float = 7 * DAY) -> SandboxGC:
        return SandboxGC(str(self.work_dir), delay, lambda: self.running, lambda: self.now)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def sweep(gc: SandboxGC) -> list[str]:
    result: list[list[str]] = []
    gc.sweep().addCallback(result.append)
    return result[0]


def test_old_sandboxes_of_finished_tasks_are_deleted(world: World) -> None:
    old = world.sandbox("F1", "old", age=8 * DAY)
    young = world.sandbox("F1", "young", age=6 * DAY)
    assert sweep(world.gc()) == [str(old)]
    assert not old.exists() and young.exists()


def test_running_tasks_are_never_collected(world: World) -> None:
    quiet = world.sandbox("F1", "quiet", age=30 * DAY)  # a silent long-running task
    world.running = {("F1", "quiet")}
    assert sweep(world.gc()) == []
    assert quiet.exists()
    world.running = set()
    assert sweep(world.gc()) == [str(quiet)]


def test_the_newest_log_write_counts_not_the_directory_alone(world: World) -> None:
    """A task that ran for weeks: its directory is old, its stdout was written yesterday."""
    box = world.sandbox("F1", "long", age=30 * DAY, files={"stdout": 1 * DAY, "stderr": 30 * DAY})
    gc = world.gc()
    assert sweep(gc) == [] and box.exists()
    world.now += 6 * DAY + 1
    assert sweep(gc) == [str(box)]


def test_delay_boundary_with_the_fake_clock(world: World) -> None:
    box = world.sandbox("F1", "t", age=0)
    gc = world.gc(delay=100.0)
    world.now += 99.0
    assert sweep(gc) == []
    world.now += 1.0
    assert sweep(gc) == [str(box)]


def test_empty_framework_directories_go_when_nothing_of_theirs_runs(world: World) -> None:
    world.sandbox("F1", "t", age=8 * DAY)
    (world.work_dir / "sandboxes" / "F2").mkdir()  # a launch in flight would have a task dir, and run
    gc = world.gc()
    sweep(gc)  # removes F1/t; F1 is now empty
    assert (world.work_dir / "sandboxes" / "F1").exists() and not (world.work_dir / "sandboxes" / "F2").exists()
    world.running = {("F1", "new")}  # a task of F1 is starting: its framework dir stays
    sweep(gc)
    assert (world.work_dir / "sandboxes" / "F1").exists()
    world.running = set()
    sweep(gc)
    assert not (world.work_dir / "sandboxes" / "F1").exists()
    assert (world.work_dir / "sandboxes").exists()


def test_symlinks_and_strays_are_left_alone(world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "precious").write_text("keep")
    os.utime(outside, (NOW - 30 * DAY, NOW - 30 * DAY))
    box = world.sandbox("F1", "t", age=8 * DAY)
    (box / "link").symlink_to(outside)
    old = (NOW - 8 * DAY, NOW - 8 * DAY)
    os.utime(box / "link", old, follow_symlinks=False)
    os.utime(box, old)
    (world.work_dir / "sandboxes" / "F1" / "link-task").symlink_to(outside)
    (world.work_dir / "sandboxes" / "stray-file").write_text("not a framework dir")
    assert sweep(world.gc()) == [str(box)]
    assert (outside / "precious").read_text() == "keep"
    assert (world.work_dir / "sandboxes" / "F1" / "link-task").is_symlink()
    assert (world.work_dir / "sandboxes" / "stray-file").exists()


def test_a_sandbox_written_between_selection_and_removal_is_kept(world: World) -> None:
    box = world.sandbox("F1", "t", age=8 * DAY)
    gc = world.gc()
    chosen = gc.collectable()
    assert chosen == [str(box)]
    (box / "stdout").write_text("relaunched under the same id")
    os.utime(box / "stdout", (world.now, world.now))
    assert gc.remove(chosen) == [] and box.exists()


def test_no_sandboxes_dir_is_fine(world: World) -> None:
    assert sweep(world.gc()) == []


def test_intervals() -> None:
    assert sweep_interval(7 * DAY) == 3600.0
    assert sweep_interval(600.0) == 60.0
    assert sweep_interval(2.0) == 1.0
    with pytest.raises(ValueError):
        SandboxGC("/nowhere", 0, set, lambda: 0.0)


def test_periodic_job_on_a_fake_reactor_clock(world: World) -> None:
    clock = task.Clock()
    box = world.sandbox("F1", "t", age=0)
    calls: list[list[str]] = []

    def run_blocking(f, *args):  # type: ignore[no-untyped-def]
        calls.append(list(args[0]))
        return defer.maybeDeferred(f, *args)

    gc = SandboxGC(str(world.work_dir), 100.0, lambda: world.running, lambda: world.now, run_blocking)
    gc.start(clock)
    assert calls == []  # not at start: a restarting agent first learns what still runs
    world.now += 10.0
    clock.advance(10.0)
    assert calls == [[]] and box.exists()
    world.now += 90.0
    clock.advance(10.0)
    assert not box.exists() and gc.removed_total == 1
    gc.stop()
    clock.advance(100.0)
    assert len(calls) == 2


def test_errors_are_logged_and_the_job_goes_on(world: World) -> None:
    clock = task.Clock()
    fail = {"now": True}

    def running() -> set[tuple[str, str]]:
        if fail["now"]:
            raise RuntimeError("boom")
        return set()

    box = world.sandbox("F1", "t", age=8 * DAY)
    gc = SandboxGC(str(world.work_dir), 7 * DAY, running, lambda: world.now)
    gc.start(clock)
    clock.advance(3600.0)
    assert box.exists()
    fail["now"] = False
    clock.advance(3600.0)
    assert not box.exists()
    gc.stop()
