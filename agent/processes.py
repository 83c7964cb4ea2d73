"""The process containerizer (first cut): each task is a process group in its sandbox.

Why ``setsid``: killing a task must kill its whole tree, including children that a shell
started; a new session makes the task's pid its process-group id, so ``killpg`` reaches every
descendant that did not leave the group (cgroups close that last gap in the agent issue).
Twisted's ``spawnProcess`` cannot call ``setsid()`` in the child itself, so the child execs
util-linux ``setsid``, which — the forked child not being a group leader — calls ``setsid()``
and execs the task in place, keeping the pid.

stdout and stderr go straight to files in the sandbox (the child's fds are dup'ed from files
we open), so output never passes through the agent's event loop.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from typing import Any, Callable

from twisted.internet import protocol

from tepui.sdk.protocol.values import CommandInfo

log = logging.getLogger("tepui.agent.processes")

SETSID = shutil.which("setsid") or "/usr/bin/setsid"
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


class ProcessLauncher:
    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.pids: dict[tuple[str, str], int] = {}

    def launch(
        self,
        key: tuple[str, str],
        sandbox: str,
        command: CommandInfo,
        environment: dict[str, str],
        on_exit: Callable[[int | None, int | None], None],
    ) -> int:
        """Starts the task; returns its pid. Raises OSError with a readable message on failure."""
        os.makedirs(sandbox, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", BASE_PATH), "LANG": "C.UTF-8", "HOME": sandbox}
        env.update(environment)
        argv = command_argv(command)
        with open(os.path.join(sandbox, "stdout"), "ab") as out, open(os.path.join(sandbox, "stderr"), "ab") as err, \
                open(os.devnull, "rb") as devnull:
            def ended(code: int | None, sig: int | None) -> None:
                pid = self.pids.pop(key, None)
                if pid is not None and pid > 0:
                    _killpg(pid, signal.SIGKILL)  # leftovers of the tree that stayed in the group
                on_exit(code, sig)

            proto = _TaskProtocol(ended)
            self.pids[key] = -1  # placeholder: ended() may run inside spawnProcess
            self._reactor.spawnProcess(
                proto, SETSID, [SETSID] + argv, env=env, path=sandbox,
                childFDs={0: devnull.fileno(), 1: out.fileno(), 2: err.fileno()},
            )
        assert proto.pid is not None
        if key in self.pids:
            self.pids[key] = proto.pid
        return proto.pid

    def signal(self, key: tuple[str, str], name: str) -> None:
        pid = self.pids.get(key)
        if pid is not None and pid > 0:
            _killpg(pid, signal.SIGKILL if name == "KILL" else signal.SIGTERM)


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
