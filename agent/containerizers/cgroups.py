"""Per-task cgroups: cpu, memory and pids limits, whole-tree kill, usage, OOM detection.

cgroup v2 first (one unified hierarchy with the ``cpu``, ``memory`` and ``pids`` controllers
enabled), v1 as the fallback (one hierarchy per controller, as on this machine; see
ENVIRONMENT.md). The layout is ``<hierarchy>/tepui/<agent>/<task>`` in every hierarchy used.

Limits (Mesos's cgroups isolators do the same):

* cpu: a CFS quota of ``cpus × period`` (hard cap) and a proportional weight (v1 ``cpu.shares``
  = 1024 × cpus, v2 ``cpu.weight``);
* memory: a hard limit of ``mem`` MiB with swap forbidden, so the limit bites; an OOM kill is
  counted (``memory.oom_control``/``memory.events``) and the task is reported as such;
* pids: ``pids.max`` stops a fork bomb at the task's border.

Joining: the task's first process writes its own pid into the cgroup before it execs the
command (a tiny ``/bin/sh`` prologue), so every descendant is born inside — no window in which
a fast fork escapes. Killing: v2 ``cgroup.kill``; v1 freezes the cgroup (``freezer``), SIGKILLs
every member and thaws it, so nothing can fork while being killed — this also reaches
grandchildren that left the task's process group.

The module does I/O (it writes control files); it lives in the agent's shell, never in a core.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import logging
import os
import re
import signal
import time
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("tepui.agent.containerizers.cgroups")

ROOT = "/sys/fs/cgroup"
CFS_PERIOD_US = 100_000
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "freezer")
LOCK_CONTROLLER = "memory"  # v1: the hierarchy whose agent directory carries the agent's flock
CLAIM_SECONDS = 10.0  # how long a start waits for an agent directory another process holds


class CgroupInUse(Exception):
    """Another live agent process holds this agent's cgroup directory (same name, same work dir)."""


@dataclass(frozen=True)
class Limits:
    cpus: float | None = None
    mem_mib: float | None = None
    pids: int | None = None


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    memory_bytes: int
    memory_peak_bytes: int | None


class TaskCgroup(Protocol):
    procs_files: list[str]

    def apply(self, limits: Limits) -> None: ...
    def pids(self) -> list[int]: ...
    def kill_all(self) -> None: ...
    def oom_kills(self) -> int: ...
    def usage(self) -> Usage: ...
    def destroy(self) -> None: ...


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_if_there(path: str) -> str:
    """The file's text, or "" when it does not exist (a controller not enabled for the group,
    an older kernel, the group gone): usage then reads as none rather than failing."""
    try:
        return _read(path)
    except FileNotFoundError:
        return ""


def _keyed(text: str, key: str) -> int | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return None


def _pids_in(procs_file: str) -> list[int]:
    try:
        return [int(line) for line in _read(procs_file).split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _rmdir(path: str) -> bool:
    """Whether the directory is gone (removed, or already was): a failure is only logged, so
    a caller that counts removals must ask."""
    for _ in range(50):  # a just-killed process may linger for a moment
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.01)
    log.warning("event=cgroup_not_removed path=%s", path)
    return False


@functools.lru_cache(maxsize=4096)  # asked for at every checkpoint of a task
def task_dir_name(framework_id: str, task_id: str) -> str:
    """Readable, bounded and unique: sanitized ids plus a hash of the exact pair."""
    digest = hashlib.sha1(f"{framework_id}/{task_id}".encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", task_id)[:60]
    return f"{safe}-{digest}"


class CgroupV2:
    def __init__(self, path: str, remove_parent: bool = False) -> None:
        self.path = path
        self.remove_parent = remove_parent  # a task group's cgroup: removed with its last member
        self.procs_files = [os.path.join(path, "cgroup.procs")]

    def apply(self, limits: Limits) -> None:
        if limits.cpus:
            _write(os.path.join(self.path, "cpu.max"), f"{max(1000, int(limits.cpus * CFS_PERIOD_US))} {CFS_PERIOD_US}")
            _write(os.path.join(self.path, "cpu.weight"), str(max(1, min(10000, int(limits.cpus * 100)))))
        if limits.mem_mib:
            _write(os.path.join(self.path, "memory.max"), str(int(limits.mem_mib * 1024 * 1024)))
            swap = os.path.join(self.path, "memory.swap.max")
            if os.path.exists(swap):
                _write(swap, "0")
        if limits.pids:
            _write(os.path.join(self.path, "pids.max"), str(limits.pids))

    def pids(self) -> list[int]:
        return _pids_in(self.procs_files[0])

    def kill_all(self) -> None:
        kill = os.path.join(self.path, "cgroup.kill")
        if os.path.exists(kill):
            _write(kill, "1")
            return
        for pid in self.pids():
            _kill(pid)

    def oom_kills(self) -> int:
        try:
            return _keyed(_read(os.path.join(self.path, "memory.events")), "oom_kill") or 0
        except FileNotFoundError:
            return 0

    def usage(self) -> Usage:
        cpu = _keyed(_read_if_there(os.path.join(self.path, "cpu.stat")), "usage_usec") or 0
        memory = int(_read_if_there(os.path.join(self.path, "memory.current")).strip() or 0)
        peak_text = _read_if_there(os.path.join(self.path, "memory.peak")).strip()  # none before Linux 5.19
        return Usage(cpu / 1e6, memory, int(peak_text) if peak_text else None)

    def destroy(self) -> None:
        self.kill_all()
        _rmdir(self.path)
        if self.remove_parent:
            try:
                os.rmdir(os.path.dirname(self.path))
            except OSError:
                pass


class CgroupV1:
    def __init__(self, paths: dict[str, str], remove_parent: bool = False, period_is_default: bool = False,
                 swap_accounted: bool | None = None) -> None:
        self.paths = paths  # controller → directory
        self.remove_parent = remove_parent  # a task group's cgroup: removed with its last member
        self.procs_files = [os.path.join(path, "cgroup.procs") for path in dict.fromkeys(paths.values())]
        # A cgroup just made has the kernel's CFS period, not its parent's; when the agent saw
        # that this kernel's is ours (Cgroups.create), the period need not be read back: the
        # read was 1.7% of the agent's launch path (issue 17, docs/performance.md).
        self.period_is_default = period_is_default
        # Whether ``memory.memsw.*`` exists (swap accounting is chosen at boot, for every
        # cgroup alike; None: look). Its ``stat`` per task was 0.7% of the launch path.
        self.swap_accounted = swap_accounted

    def apply(self, limits: Limits) -> None:
        cpu = self.paths.get("cpu")
        if cpu and limits.cpus:
            if not self.period_is_default and \
                    _read(os.path.join(cpu, "cpu.cfs_period_us")).strip() != str(CFS_PERIOD_US):
                _write(os.path.join(cpu, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
            _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(max(1000, int(limits.cpus * CFS_PERIOD_US))))
            _write(os.path.join(cpu, "cpu.shares"), str(max(2, int(limits.cpus * 1024))))
        memory = self.paths.get("memory")
        if memory and limits.mem_mib:
            limit = str(int(limits.mem_mib * 1024 * 1024))
            _write(os.path.join(memory, "memory.limit_in_bytes"), limit)
            memsw = os.path.join(memory, "memory.memsw.limit_in_bytes")
            if self.swap_accounted if self.swap_accounted is not None else os.path.exists(memsw):
                _write(memsw, limit)
        pids = self.paths.get("pids")
        if pids and limits.pids:
            _write(os.path.join(pids, "pids.max"), str(limits.pids))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            found.update(_pids_in(procs))
        return sorted(found)

    def kill_all(self) -> None:
        """Freeze, SIGKILL every member, thaw: nothing forks away while we kill. An empty
        cgroup (the task ended on its own: the usual case) stays empty, since only a member can
        add one, so it needs neither."""
        if not self.pids():
            return
        freezer = self.paths.get("freezer")
        if freezer:
            _write(os.path.join(freezer, "freezer.state"), "FROZEN")
        try:
            for _ in range(20):
                members = self.pids()
                if not members:
                    return
                for pid in members:
                    _kill(pid)
                if freezer:
                    break  # frozen members die on thaw; no new ones can appear
                time.sleep(0.005)
        finally:
            if freezer:
                _write(os.path.join(freezer, "freezer.state"), "THAWED")

    def oom_kills(self) -> int:
        memory = self.paths.get("memory")
        if not memory:
            return 0
        try:
            text = _read(os.path.join(memory, "memory.oom_control"))
        except FileNotFoundError:
            return 0
        return _keyed(text, "oom_kill") or 0

    def usage(self) -> Usage:
        cpu_seconds = 0.0
        cpuacct = self.paths.get("cpuacct")
        if cpuacct:
            cpu_seconds = int(_read(os.path.join(cpuacct, "cpuacct.usage")).strip() or 0) / 1e9
        memory_bytes, peak = 0, None
        memory = self.paths.get("memory")
        if memory:
            memory_bytes = int(_read(os.path.join(memory, "memory.usage_in_bytes")).strip() or 0)
            peak = int(_read(os.path.join(memory, "memory.max_usage_in_bytes")).strip() or 0)
        return Usage(cpu_seconds, memory_bytes, peak)

    def destroy(self) -> None:
        self.kill_all()
        for path in dict.fromkeys(self.paths.values()):
            _rmdir(path)
            if self.remove_parent:
                try:
                    os.rmdir(os.path.dirname(path))  # fails while other members remain: fine
                except OSError:
                    pass


def make_dir(path: str, mode: int = 0o777) -> bool:
    """``os.makedirs(path, mode, exist_ok=True)`` for a directory whose parent is normally there
    (a task's cgroup, sandbox, run directory): one ``mkdir`` instead of a ``stat`` of the parent
    and then one (issue 17). Returns whether the directory was made now (False: it was there)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False
    except FileNotFoundError:
        os.makedirs(path, mode, exist_ok=True)
    return True


def _claim(path: str) -> int:
    """Creates the agent's directory and flocks it: the mark of a live agent that
    ``sweep_siblings`` honours. A sweeper may remove the directory between ``makedirs`` and
    the lock; the lock then sits on a removed directory and the claim starts over."""
    deadline = time.monotonic() + CLAIM_SECONDS
    while True:
        os.makedirs(path, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            if time.monotonic() > deadline:
                raise CgroupInUse(f"another live agent process holds the cgroup {path}: one agent per work dir "
                                  "and hostname; stop the other one or use another --work-dir") from None
            time.sleep(0.05)  # a sweeper holds it for a moment; an agent exiting, a little longer
            continue
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # swept away under us: claim the new one


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Cgroups:
    """Creates task cgroups under ``tepui/<agent>`` in whichever hierarchy this host offers."""

    def __init__(self, version: int, base: dict[str, str] | str, lock: int | None = None) -> None:
        self.version = version
        self.base = base
        self._lock = lock  # an open fd on the agent's own directory, flocked while the agent lives
        self._fresh_period_is_default: bool | None = None  # v1: learnt from the first task cgroup made
        self._swap_accounted: bool | None = None  # v1: likewise

    def _lock_dir(self) -> str:
        return self.base if isinstance(self.base, str) else self.base[LOCK_CONTROLLER]

    def _own_dirs(self) -> list[str]:
        """Every hierarchy's agent directory, the one carrying the lock last: removed last, so a
        directory half removed is still found by the next sweep."""
        if isinstance(self.base, str):
            return [self.base]
        lock_dir = self._lock_dir()
        return [p for p in dict.fromkeys(self.base.values()) if p != lock_dir] + [lock_dir]

    @staticmethod
    def usable(root: str = ROOT) -> bool:
        """Whether ``detect`` can work here, without creating anything."""
        if os.geteuid() != 0:
            return False
        controllers_file = os.path.join(root, "cgroup.controllers")
        if os.path.exists(controllers_file) and {"cpu", "memory", "pids"} <= set(_read(controllers_file).split()):
            return True
        return all(os.path.exists(os.path.join(root, c, "cgroup.procs")) for c in ("cpu", "memory", "pids"))

    @classmethod
    def detect(cls, agent_name: str, root: str = ROOT) -> Cgroups | None:
        """None when cgroups cannot be used here (not root, nothing mounted): the agent then
        runs tasks without isolation and says so at start."""
        agent = re.sub(r"[^A-Za-z0-9_.-]", "_", agent_name)
        controllers_file = os.path.join(root, "cgroup.controllers")
        if os.path.exists(controllers_file):
            available = set(_read(controllers_file).split())
            if {"cpu", "memory", "pids"} <= available:
                base = os.path.join(root, "tepui")
                try:
                    os.makedirs(base, exist_ok=True)
                    _write(os.path.join(root, "cgroup.subtree_control"), "+cpu +memory +pids")
                    _write(os.path.join(base, "cgroup.subtree_control"), "+cpu +memory +pids")
                    path = os.path.join(base, agent)
                    lock = _claim(path)
                    _write(os.path.join(path, "cgroup.subtree_control"), "+cpu +memory +pids")
                except OSError as exc:
                    log.warning("event=cgroup_v2_unusable error=%r", str(exc))
                    return None
                return cls(2, path, lock)
        paths = {}
        for controller in V1_CONTROLLERS:
            hierarchy = os.path.join(root, controller)
            if os.path.isdir(hierarchy) and os.path.exists(os.path.join(hierarchy, "cgroup.procs")):
                paths[controller] = os.path.join(os.path.realpath(hierarchy), "tepui", agent)
        if not {"cpu", "memory", "pids"} <= set(paths):
            return None
        try:
            lock = _claim(paths[LOCK_CONTROLLER])  # first: a sweeper only looks where the lock lives
        except OSError as exc:
            log.warning("event=cgroup_v1_unusable error=%r", str(exc))
            return None
        try:
            for path in dict.fromkeys(paths.values()):
                os.makedirs(path, exist_ok=True)
        except OSError as exc:
            os.close(lock)
            log.warning("event=cgroup_v1_unusable error=%r", str(exc))
            return None
        return cls(1, paths, lock)

    def describe(self) -> str:
        return f"cgroup v{self.version}"

    def release(self) -> None:
        """The agent is stopping: removes its own directories if no task cgroup is left in them
        (the kernel refuses to remove a cgroup with children or members, EBUSY: tasks left
        running for the next agent keep theirs), then lets go of its lock."""
        for path in self._own_dirs():
            try:
                os.rmdir(path)
            except OSError:
                pass  # tasks remain (or it is gone already)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def sweep_siblings(self) -> int:
        """Removes the directories other agents on this host left behind, as long as the
        kernel and their lock allow: a sibling whose flock is free has no agent process (a live
        one holds it from ``detect`` until it exits), and ``rmdir`` removes only a cgroup with
        no member and no child. A sibling with task cgroups is left whole, even when they are
        empty: its agent, started again on its work dir, adopts them (and reads an OOM kill
        from them) or removes them itself. Returns how many were removed."""
        own = self._lock_dir()
        parent = os.path.dirname(own)
        bases = [os.path.dirname(p) for p in self._own_dirs()]
        try:
            names = sorted(os.listdir(parent))
        except OSError:
            return 0
        removed = 0
        for name in names:
            path = os.path.join(parent, name)
            if path == own or not os.path.isdir(path):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                continue  # gone meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # a live agent's
            try:
                gone = True
                for base in bases:  # the lock's own hierarchy last, as in _own_dirs
                    try:
                        os.rmdir(os.path.join(base, name))
                    except FileNotFoundError:
                        pass
                    except OSError:
                        gone = False  # task cgroups (or members) in it: kept
                        break
                if gone:
                    removed += 1
            finally:
                os.close(fd)
        return removed

    def create(self, framework_id: str, task_id: str, limits: Limits,
               envelope: tuple[str, Limits] | None = None) -> TaskCgroup:
        """A task's cgroup; with ``envelope`` (a task group's id and summed limits) it is nested
        in the group's cgroup, so the group as a whole is held to one envelope too."""
        name = task_dir_name(framework_id, task_id)
        parent = task_dir_name(framework_id, "group-" + envelope[0]) if envelope else None
        group: TaskCgroup
        if self.version == 2:
            assert isinstance(self.base, str)
            base = self.base
            if parent is not None and envelope is not None:
                base = os.path.join(self.base, parent)
                os.makedirs(base, exist_ok=True)
                CgroupV2(base).apply(envelope[1])
                _write(os.path.join(base, "cgroup.subtree_control"), "+cpu +memory +pids")
            path = os.path.join(base, name)
            make_dir(path)
            group = CgroupV2(path, remove_parent=parent is not None)
        else:
            assert isinstance(self.base, dict)
            bases = dict(self.base)
            if parent is not None and envelope is not None:
                bases = {controller: os.path.join(base, parent) for controller, base in self.base.items()}
                for path in dict.fromkeys(bases.values()):
                    os.makedirs(path, exist_ok=True)
                CgroupV1(bases).apply(envelope[1])
            paths = {controller: os.path.join(base, name) for controller, base in bases.items()}
            fresh = True
            for path in dict.fromkeys(paths.values()):
                fresh = make_dir(path) and fresh
            cpu, memory = paths.get("cpu"), paths.get("memory")
            if fresh and cpu and self._fresh_period_is_default is None:
                self._fresh_period_is_default = \
                    _read(os.path.join(cpu, "cpu.cfs_period_us")).strip() == str(CFS_PERIOD_US)
            if memory and self._swap_accounted is None:
                self._swap_accounted = os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes"))
            group = CgroupV1(paths, remove_parent=parent is not None,
                             period_is_default=fresh and bool(self._fresh_period_is_default),
                             swap_accounted=self._swap_accounted)
        group.apply(limits)
        return group

    def adopt(self, framework_id: str, task_id: str, group_id: str | None = None) -> TaskCgroup | None:
        """The existing cgroup of a task an earlier agent process started (None if it is gone):
        limits stay as they were set."""
        name = task_dir_name(framework_id, task_id)
        parent = task_dir_name(framework_id, "group-" + group_id) if group_id else None
        if self.version == 2:
            assert isinstance(self.base, str)
            path = os.path.join(self.base, parent, name) if parent else os.path.join(self.base, name)
            return CgroupV2(path, remove_parent=parent is not None) if os.path.isdir(path) else None
        assert isinstance(self.base, dict)
        paths = {controller: (os.path.join(base, parent, name) if parent else os.path.join(base, name))
                 for controller, base in self.base.items()}
        if not all(os.path.isdir(path) for path in paths.values()):
            return None
        return CgroupV1(paths, remove_parent=parent is not None)

    def sweep(self, keep: list[TaskCgroup]) -> int:
        """Kills and removes every task cgroup under this agent that is not in ``keep``: the
        containers of tasks the agent no longer knows (Mesos destroys unknown containers on
        recovery). Returns how many were removed."""
        kept: set[str] = set()
        for group in keep:
            for path in ([group.path] if isinstance(group, CgroupV2) else list(group.paths.values())):  # type: ignore[attr-defined]  # a CgroupV1
                kept.add(path)
                kept.add(os.path.dirname(path))
        bases = [self.base] if isinstance(self.base, str) else list(dict.fromkeys(self.base.values()))
        removed = 0
        for base in bases:
            if not os.path.isdir(base):
                continue
            for directory, dirs, _files in os.walk(base, topdown=False):
                if directory == base or directory in kept:
                    continue
                stray = CgroupV2(directory) if self.version == 2 else None
                try:
                    if stray is not None:
                        stray.kill_all()
                    else:
                        for pid in _pids_in(os.path.join(directory, "cgroup.procs")):
                            _kill(pid)
                    if _rmdir(directory):
                        removed += 1
                except OSError:
                    log.warning("event=stray_cgroup_not_removed path=%s", directory)
        return removed
