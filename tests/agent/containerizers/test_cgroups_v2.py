"""cgroup v2 support (``agent/containerizers/cgroups.py``: ``CgroupV2`` and ``Cgroups`` with version 2).

Two halves, because the host decides what can be real (ENVIRONMENT.md: v1 holds the cpu, memory
and pids controllers here, so a cgroup2 mount has none of them to enable):

* on a **real cgroup2 mount** (a fresh one, mounted by the fixture; root only): groups, joining
  through ``cgroup.procs``, ``cgroup.kill`` of a whole tree (a grandchild that left the session
  too), removal, adoption, the sweep of stray groups, and ``detect`` refusing a v2 hierarchy
  without the controllers. Limits are checked for real too where the mount offers the
  controllers; each test says at run time why it skips;
* on a **fake cgroup2 tree** in ``tmp_path``: the exact files and values ``detect``, ``create``
  and ``apply`` write (cpu.max, cpu.weight, memory.max, memory.swap.max, pids.max, subtree
  control), what ``oom_kills`` and ``usage`` read, and the kill without ``cgroup.kill``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tepui.agent.containerizers.cgroups import CgroupV2, Cgroups, Limits, TaskCgroup, Usage, task_dir_name

CONTROLLERS = "+cpu +memory +pids"
MiB = 1024 * 1024


def files_in(directory: Path) -> dict[str, str]:
    """Every regular file directly in ``directory`` with its content: what was written there."""
    return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file()}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Waits for a fact (not a timing assertion): ``timeout`` only bounds a broken case."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout:g} s: {what}")
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent (a killed orphan may wait for init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


@contextlib.contextmanager
def task_tree(group: TaskCgroup) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """A task's process tree in ``group``, started as the agent starts one: the first process
    writes its own pid into the group before it execs, so a child and a grandchild in a new
    session (one that left the task's process group) are born inside. Yields the leader and the
    three members once they are all in; the leader is reaped afterwards whatever happened."""
    script = 'echo $$ > "$1" || exit 125; sleep 60 & setsid sleep 60 & exec sleep 60'
    leader = subprocess.Popen(["/bin/sh", "-c", script, "sh", group.procs_files[0]], start_new_session=True)
    try:
        wait_for(lambda: len(group.pids()) == 3, "the leader, its child and its grandchild in the group")
        yield leader, group.pids()
    finally:
        if leader.poll() is None:
            leader.kill()
        leader.wait()


def ended_by_kill(leader: subprocess.Popen[bytes], members: list[int]) -> bool:
    wait_for(lambda: not any(alive(pid) for pid in members), "every member of the tree dead")
    return leader.wait(timeout=20) == -signal.SIGKILL


# --- a real cgroup2 mount -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cgroup2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh cgroup2 mount (the host's one hierarchy, seen at a new place); unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting cgroup2 needs root")
    mountpoint = tmp_path_factory.mktemp("cgroup2")
    done = subprocess.run(["mount", "-t", "cgroup2", "none", str(mountpoint)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount cgroup2 here: {done.stderr.strip() or done.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def remove_tree(path: Path) -> None:
    """Kills whatever is left in the groups under ``path`` and removes them, deepest first."""
    for directory, _dirs, _files in os.walk(path, topdown=False):
        kill = os.path.join(directory, "cgroup.kill")
        if os.path.exists(kill):
            Path(kill).write_text("1")
        wait_for(lambda: not Path(directory, "cgroup.procs").read_text().split(), f"{directory} empty")
        os.rmdir(directory)


@pytest.fixture
def real_base(cgroup2: Path) -> Iterator[Path]:
    """This test's own group on the real mount; removed after the test with anything left in it."""
    base = cgroup2 / f"tepui-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    try:
        yield base
    finally:
        if base.exists():
            remove_tree(base)


def needs_kill_file(group: Path) -> None:
    if not (group / "cgroup.kill").exists():
        pytest.skip("this kernel has no cgroup.kill (Linux < 5.14)")


def test_detect_refuses_a_v2_hierarchy_without_the_controllers_and_creates_nothing(cgroup2: Path) -> None:
    available = set((cgroup2 / "cgroup.controllers").read_text().split())
    if {"cpu", "memory", "pids"} <= available:
        pytest.skip(f"this host's cgroup2 offers the controllers ({' '.join(sorted(available))}): "
                    "detect would take it, which test_limits_are_applied_on_a_real_hierarchy covers")
    before = sorted(p.name for p in cgroup2.iterdir())
    assert Cgroups.detect("agent-1", root=str(cgroup2)) is None
    assert not Cgroups.usable(str(cgroup2))
    assert sorted(p.name for p in cgroup2.iterdir()) == before  # no tepui/ left behind


def test_a_task_tree_joins_its_group_and_cgroup_kill_ends_all_of_it(real_base: Path) -> None:
    cgroups = Cgroups(2, str(real_base))
    group = cgroups.create("F1", "task 1", Limits())
    assert isinstance(group, CgroupV2)
    path = real_base / task_dir_name("F1", "task 1")
    assert group.path == str(path) and path.is_dir()
    needs_kill_file(path)
    with task_tree(group) as (leader, members):
        assert leader.pid in members
        group.kill_all()
        assert ended_by_kill(leader, members) and group.pids() == []
        assert group.oom_kills() == 0  # no memory controller here, or no OOM: either way none
        group.destroy()
        assert not path.exists()


def test_destroy_kills_what_is_left_and_removes_the_group(real_base: Path) -> None:
    group = Cgroups(2, str(real_base)).create("F1", "t2", Limits())
    needs_kill_file(Path(group.path))  # type: ignore[attr-defined]
    with task_tree(group) as (leader, members):
        group.destroy()
        assert not os.path.exists(group.path)  # type: ignore[attr-defined]
        assert ended_by_kill(leader, members)


def test_adopt_sweep_and_release_on_a_real_hierarchy(real_base: Path) -> None:
    """An agent restarted: it adopts the groups of tasks it knows, the sweep kills and removes
    the others (a stray task group with its envelope too), and release removes its own group."""
    agent = real_base / "agent-1"
    agent.mkdir()
    cgroups = Cgroups(2, str(agent))
    kept = cgroups.create("F1", "kept", Limits())
    needs_kill_file(Path(kept.path))  # type: ignore[attr-defined]
    stray = cgroups.create("F1", "stray", Limits())
    member_parent = agent / task_dir_name("F1", "group-g1")
    member_parent.mkdir()  # a task group's envelope, its limits left out: none can be set here
    (member_parent / task_dir_name("F1", "member")).mkdir()
    with task_tree(stray) as (leader, members):
        adopted = cgroups.adopt("F1", "kept")
        assert isinstance(adopted, CgroupV2) and adopted.path == kept.path  # type: ignore[attr-defined]
        member = cgroups.adopt("F1", "member", group_id="g1")
        assert isinstance(member, CgroupV2) and member.remove_parent
        assert cgroups.adopt("F1", "unknown") is None
        assert cgroups.sweep([adopted]) == 3  # the stray, the member and its envelope
        assert sorted(p.name for p in agent.iterdir() if p.is_dir()) == [task_dir_name("F1", "kept")]
        assert ended_by_kill(leader, members)
    cgroups.release()
    assert agent.exists()  # a task's group remains: the agent's is kept
    adopted.destroy()
    cgroups.release()
    assert not agent.exists()


def test_limits_are_applied_on_a_real_hierarchy(real_base: Path) -> None:
    available = set((real_base / "cgroup.controllers").read_text().split())
    if not {"cpu", "memory", "pids"} <= available:
        pytest.skip("the cgroup2 hierarchy offers no cpu, memory and pids controllers here "
                    f"(only: {' '.join(sorted(available)) or 'none'}; cgroup v1 holds them): "
                    "limits are checked on a fake tree below")
    (real_base / "cgroup.subtree_control").write_text(CONTROLLERS)
    group = Cgroups(2, str(real_base)).create("F1", "limited", Limits(cpus=0.5, mem_mib=64, pids=32))
    path = Path(group.path)  # type: ignore[attr-defined]
    assert (path / "cpu.max").read_text().split() == ["50000", "100000"]
    assert (path / "cpu.weight").read_text().strip() == "50"
    assert (path / "memory.max").read_text().strip() == str(64 * MiB)
    assert (path / "pids.max").read_text().strip() == "32"
    if (path / "memory.swap.max").exists():
        assert (path / "memory.swap.max").read_text().strip() == "0"
    usage = group.usage()
    assert usage.cpu_seconds == 0 and usage.memory_bytes >= 0
    group.destroy()
    assert not path.exists()


# --- a fake cgroup2 tree ------------------------------------------------------------------------


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """What a cgroup2 root shows, as plain files: its controllers and an empty subtree control."""
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("1\n")
    return root


def test_detect_enables_the_controllers_down_to_the_agents_group(fake_root: Path) -> None:
    cgroups = Cgroups.detect("agent 1/a", root=str(fake_root))
    assert cgroups is not None and cgroups.version == 2 and cgroups.describe() == "cgroup v2"
    agent = fake_root / "tepui" / "agent_1_a"  # the name made safe for a directory
    assert cgroups.base == str(agent)
    for directory in (fake_root, fake_root / "tepui", agent):
        assert (directory / "cgroup.subtree_control").read_text() == CONTROLLERS, directory
    assert files_in(agent) == {"cgroup.subtree_control": CONTROLLERS}
    assert Cgroups.usable(str(fake_root)) == (os.geteuid() == 0)


def test_detect_without_all_three_controllers_is_none_and_creates_nothing(fake_root: Path) -> None:
    (fake_root / "cgroup.controllers").write_text("cpu io memory\n")  # no pids
    assert Cgroups.detect("agent-1", root=str(fake_root)) is None
    assert not (fake_root / "tepui").exists()
    assert (fake_root / "cgroup.subtree_control").read_text() == ""


def test_detect_that_cannot_write_is_none(fake_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    (fake_root / "cgroup.subtree_control").unlink()
    (fake_root / "cgroup.subtree_control").mkdir()  # any OSError on the way, e.g. EACCES or EBUSY
    assert Cgroups.detect("agent-1", root=str(fake_root)) is None
    assert "event=cgroup_v2_unusable" in caplog.text


def test_create_writes_exactly_the_limits(tmp_path: Path) -> None:
    group = Cgroups(2, str(tmp_path)).create("F1", "web.1", Limits(cpus=0.5, mem_mib=64, pids=100))
    path = tmp_path / task_dir_name("F1", "web.1")
    assert group.path == str(path) and not group.remove_parent  # type: ignore[attr-defined]
    assert group.procs_files == [str(path / "cgroup.procs")]
    assert files_in(path) == {
        "cpu.max": "50000 100000",  # quota and period: half a CPU, a hard cap
        "cpu.weight": "50",  # proportional share: 100 a CPU
        "memory.max": str(64 * MiB),
        "pids.max": "100",
    }  # no memory.swap.max: written only where the kernel offers it


@pytest.mark.parametrize("limits, expected", [
    (Limits(), {}),
    (Limits(mem_mib=0.5), {"memory.max": str(MiB // 2), "memory.swap.max": "0"}),
    (Limits(cpus=0.001), {"cpu.max": "1000 100000", "cpu.weight": "1"}),  # the kernel's minimum quota
    (Limits(cpus=200), {"cpu.max": "20000000 100000", "cpu.weight": "10000"}),  # weight capped
    (Limits(cpus=2.5, pids=1), {"cpu.max": "250000 100000", "cpu.weight": "250", "pids.max": "1"}),
], ids=["none", "memory-no-swap", "tiny-cpu", "huge-cpu", "cpu-and-pids"])
def test_apply_values(tmp_path: Path, limits: Limits, expected: dict[str, str]) -> None:
    (tmp_path / "memory.swap.max").write_text("max\n")  # the kernel's, when swap accounting is on
    CgroupV2(str(tmp_path)).apply(limits)
    assert files_in(tmp_path) == {"memory.swap.max": "max\n", **expected}


def test_a_task_group_envelope_holds_its_members(tmp_path: Path) -> None:
    cgroups = Cgroups(2, str(tmp_path))
    member = cgroups.create("F1", "a", Limits(cpus=0.25, mem_mib=32),
                            envelope=("g1", Limits(cpus=1, mem_mib=96, pids=10)))
    envelope = tmp_path / task_dir_name("F1", "group-g1")
    assert files_in(envelope) == {
        "cpu.max": "100000 100000", "cpu.weight": "100", "memory.max": str(96 * MiB), "pids.max": "10",
        "cgroup.subtree_control": CONTROLLERS,  # members get the controllers
    }
    path = envelope / task_dir_name("F1", "a")
    assert member.path == str(path) and member.remove_parent  # type: ignore[attr-defined]
    assert files_in(path) == {"cpu.max": "25000 100000", "cpu.weight": "25", "memory.max": str(32 * MiB)}
    assert cgroups.adopt("F1", "a", group_id="g1").path == str(path)  # type: ignore[union-attr]
    assert cgroups.adopt("F1", "a") is None  # not where a lone task's group would be


def test_sweep_counts_only_the_groups_it_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A stray group that cannot be removed (here a plain file in it; on cgroupfs a member that
    will not die) is logged and left, not counted: the count says what is gone."""
    cgroups = Cgroups(2, str(tmp_path))
    kept = tmp_path / task_dir_name("F1", "kept")
    kept.mkdir()
    (tmp_path / task_dir_name("F1", "gone")).mkdir()
    stuck = tmp_path / task_dir_name("F1", "stuck")
    stuck.mkdir()
    (stuck / "left-over").write_text("")
    assert cgroups.sweep([CgroupV2(str(kept))]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept.name, stuck.name])
    assert f"event=cgroup_not_removed path={stuck}" in caplog.text


def test_oom_kills_come_from_memory_events(tmp_path: Path) -> None:
    group = CgroupV2(str(tmp_path))
    assert group.oom_kills() == 0  # no memory.events (yet): none
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n")
    assert group.oom_kills() == 1  # the kills, not the OOM events (oom) nor oom_group_kill
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\n")
    assert group.oom_kills() == 0  # a kernel without the oom_kill line


def test_usage_reads_cpu_stat_memory_current_and_peak(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (tmp_path / "memory.current").write_text("1048576\n")
    group = CgroupV2(str(tmp_path))
    assert group.usage() == Usage(cpu_seconds=2.5, memory_bytes=MiB, memory_peak_bytes=None)  # no memory.peak (< 5.19)
    (tmp_path / "memory.peak").write_text("4194304\n")
    assert group.usage() == Usage(cpu_seconds=2.5, memory_bytes=MiB, memory_peak_bytes=4 * MiB)


def test_usage_without_cpu_stat_or_memory_current_is_zero_not_an_error(tmp_path: Path) -> None:
    """A controller not enabled for the group (or the group gone) leaves its files out: usage
    degrades to 0 for what cannot be read, as oom_kills does, and still reports the rest."""
    group = CgroupV2(str(tmp_path))
    assert group.usage() == Usage(cpu_seconds=0, memory_bytes=0, memory_peak_bytes=None)
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\n")
    assert group.usage() == Usage(cpu_seconds=1.5, memory_bytes=0, memory_peak_bytes=None)
    (tmp_path / "cpu.stat").unlink()
    (tmp_path / "memory.current").write_text("2097152\n")
    assert group.usage() == Usage(cpu_seconds=0, memory_bytes=2 * MiB, memory_peak_bytes=None)


def test_pids_are_read_from_cgroup_procs(tmp_path: Path) -> None:
    group = CgroupV2(str(tmp_path))
    assert group.pids() == []  # gone already
    (tmp_path / "cgroup.procs").write_text("12\n345\n")
    assert group.pids() == [12, 345]


def test_kill_all_writes_cgroup_kill_where_the_kernel_has_it(tmp_path: Path) -> None:
    (tmp_path / "cgroup.kill").write_text("")
    (tmp_path / "cgroup.procs").write_text("")
    CgroupV2(str(tmp_path)).kill_all()
    assert (tmp_path / "cgroup.kill").read_text() == "1"


def test_kill_all_without_cgroup_kill_signals_every_member(tmp_path: Path) -> None:
    """A kernel before 5.14: each member listed in cgroup.procs gets SIGKILL (here real
    processes, whose pids the fake tree lists)."""
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        (tmp_path / "cgroup.procs").write_text("".join(f"{p.pid}\n" for p in sleepers) + "999999999\n")  # one gone
        CgroupV2(str(tmp_path)).kill_all()
        assert [p.wait(timeout=20) for p in sleepers] == [-signal.SIGKILL] * 2
    finally:
        for p in sleepers:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_destroy_removes_the_envelope_with_its_last_member(tmp_path: Path) -> None:
    cgroups = Cgroups(2, str(tmp_path))
    cgroups.create("F1", "a", Limits(), envelope=("g1", Limits()))
    cgroups.create("F1", "b", Limits(), envelope=("g1", Limits()))
    envelope = tmp_path / task_dir_name("F1", "group-g1")
    (envelope / "cgroup.subtree_control").unlink()  # cgroupfs control files never block rmdir: plain ones do
    a, b = cgroups.adopt("F1", "a", "g1"), cgroups.adopt("F1", "b", "g1")
    assert a is not None and b is not None
    a.destroy()
    assert envelope.is_dir() and not os.path.exists(a.path)  # type: ignore[attr-defined]
    b.destroy()
    assert not envelope.exists()
