"""The process containerizer (first cut): each task is a process group in its sandbox.

Why ``setsid``: killing a task must kill its whole tree, including children that a shell
started; a new session makes the task's pid its process-group id, so ``killpg`` reaches every
descendant that did not leave the group (cgroups close that last gap in the agent issue).
Twisted's ``spawnProcess`` cannot call ``setsid()`` in the child itself, so the child execs
util-linux ``setsid``, which — the forked child not being a group leader — calls ``setsid()``
and execs the task in place, keeping the pid.

stdout and stderr go straight to files in the sandbox (the child's fds are dup'ed from files
we open), so output never passes through the agent's event loop.

Isolation (``cgroups.py``): when the host allows it, each task gets its own cgroup, joined by
the task's first process before it execs anything. Identity: an agent running as root drops to
the task's user with util-linux ``setpriv`` (after joining the cgroup, which needs root), and
hands the sandbox to that user.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import protocol

from tepui.agent.cgroups import Cgroups, Limits, TaskCgroup, Usage
from tepui.sdk.protocol.values import CommandInfo

log = logging.getLogger("tepui.agent.processes")

SETSID = shutil.which("setsid") or "/usr/bin/setsid"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def command_argv(command: CommandInfo) -> list[str]:
    if command.shell:
        return ["/bin/sh", "-c", command.value or ""]
    if command.arguments:
        argv = list(command.arguments)
        if command.value:
            argv[0] = command.value
        return argv
    return [command.value or ""]


class _TaskProtocol(protocol.ProcessProtocol):
    def __init__(self, on_exit: Callable[[int | None, int | None], None]) -> None:
        self._on_exit = on_exit
        self.pid: int | None = None

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        # Read the pid here: Twisted reaps a child that already exited before spawnProcess
        # returns, and then its ``transport.pid`` is None.
        self.pid = self.transport.pid

    def processEnded(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        value = reason.value
        self._on_exit(getattr(value, "exitCode", None), getattr(value, "signal", None))


@dataclass(frozen=True)
class TaskUser:
    name: str
    uid: int
    gid: int


def resolve_user(name: str) -> TaskUser:
    """Raises LookupError with a clear sentence when the user does not exist here."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LookupError(f"user {name!r} does not exist on this agent") from None
    return TaskUser(name, entry.pw_uid, entry.pw_gid)


@dataclass(frozen=True)
class ProcessExit:
    exit_code: int | None
    signal: int | None = None
    oom_kills: int = 0
    usage: Usage | None = None


# Runs first, as the agent's user: joins the task's cgroups (every descendant is then born
# inside), forgets the variable, and execs the rest of the chain (setsid, setpriv, command).
JOIN_CGROUPS = 'for f in $TEPUI_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; unset TEPUI_CGROUP_PROCS; exec "$@"'


class ProcessLauncher:
    """Starts tasks as processes: own session, own cgroup (when available), own user."""

    def __init__(self, reactor: Any, cgroups: Cgroups | None = None) -> None:
        self._reactor = reactor
        self.cgroups = cgroups
        self.pids: dict[tuple[str, str], int] = {}
        self.groups: dict[tuple[str, str], TaskCgroup] = {}

    def launch(
        self,
        key: tuple[str, str],
        sandbox: str,
        command: CommandInfo,
        environment: dict[str, str],
        on_exit: Callable[[ProcessExit], None],
        limits: Limits | None = None,
        user: TaskUser | None = None,
        envelope: tuple[str, Limits] | None = None,
    ) -> int:
        """Starts the task; returns its pid. Raises OSError with a readable message on failure."""
        os.makedirs(sandbox, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", BASE_PATH), "LANG": "C.UTF-8", "HOME": sandbox}
        env.update(environment)
        chain = [SETSID]
        if user is not None and user.uid != os.geteuid():
            chain += [SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--"]
            env["USER"] = env["LOGNAME"] = user.name
        argv = chain + command_argv(command)
        group = None
        if self.cgroups is not None:
            group = self.cgroups.create(key[0], key[1], limits or Limits(), envelope)
            self.groups[key] = group
            env["TEPUI_CGROUP_PROCS"] = " ".join(group.procs_files)
            argv = ["/bin/sh", "-c", JOIN_CGROUPS, "tepui-task"] + argv
        with open(os.path.join(sandbox, "stdout"), "ab") as out, open(os.path.join(sandbox, "stderr"), "ab") as err, \
                open(os.devnull, "rb") as devnull:
            if user is not None and os.geteuid() == 0:
                # The sandbox (with whatever the fetcher put there) belongs to the task's user.
                for directory, dirs, files in os.walk(sandbox):
                    for name in [directory] + [os.path.join(directory, n) for n in dirs + files]:
                        os.chown(name, user.uid, user.gid, follow_symlinks=False)

            def ended(code: int | None, sig: int | None) -> None:
                pid = self.pids.pop(key, None)
                task_group = self.groups.pop(key, None)
                oom, usage = 0, None
                if task_group is not None:
                    try:
                        oom, usage = task_group.oom_kills(), task_group.usage()
                        task_group.destroy()  # kills whatever is left of the tree, wherever it went
                    except OSError:
                        log.exception("event=cgroup_cleanup_failed task_id=%s", key[1])
                elif pid is not None and pid > 0:
                    _killpg(pid, signal.SIGKILL)  # leftovers of the tree that stayed in the group
                on_exit(ProcessExit(code, sig, oom, usage))

            proto = _TaskProtocol(ended)
            self.pids[key] = -1  # placeholder: ended() may run inside spawnProcess
            self._reactor.spawnProcess(
                proto, argv[0], argv, env=env, path=sandbox,
                childFDs={0: devnull.fileno(), 1: out.fileno(), 2: err.fileno()},
            )
        assert proto.pid is not None
        if key in self.pids:
            self.pids[key] = proto.pid
        return proto.pid

    def signal(self, key: tuple[str, str], name: str) -> None:
        """TERM goes to the task's process group (a graceful stop); KILL to its whole cgroup,
        which also reaches descendants that left the group."""
        pid = self.pids.get(key)
        group = self.groups.get(key)
        if name == "KILL" and group is not None:
            group.kill_all()
        elif pid is not None and pid > 0:
            _killpg(pid, signal.SIGKILL if name == "KILL" else signal.SIGTERM)

    def destroy_all(self) -> None:
        """The agent is going away: kill what is left of every task and remove its cgroup now
        (the reactor may stop before the exits are reported)."""
        for key in list(self.pids):
            self.signal(key, "KILL")
        for key, group in list(self.groups.items()):
            try:
                group.destroy()
            except OSError:
                log.exception("event=cgroup_cleanup_failed task_id=%s", key[1])
            self.groups.pop(key, None)

    def usage(self, key: tuple[str, str]) -> Usage | None:
        group = self.groups.get(key)
        try:
            return group.usage() if group is not None else None
        except OSError:
            return None


def _killpg(pgid: int, sig: int) -> None:
    """Signals the group; if the child has not reached ``setsid()`` yet, signals the pid."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        try:
            os.kill(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    except PermissionError:
        pass
