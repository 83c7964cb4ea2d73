"""The process containerizer (first cut): each task is a process group in its sandbox.

Why a new session: killing a task must kill its whole tree, including children that a shell
started; a new session makes the task's pid its process-group id, so ``killpg`` reaches every
descendant that did not leave the group (cgroups close that last gap in the agent issue).
Twisted's ``spawnProcess`` cannot call ``setsid()`` in the child, so the child used to exec
util-linux ``setsid``; ``posix_spawn``'s ``setsid`` flag (glibc ``POSIX_SPAWN_SETSID``) does it
in the child before the exec, keeping the pid (see Spawning).

Supervision: the agent's child is not the task but a small ``sh`` supervisor (``SUPERVISE``),
the session leader, which joins the task's cgroups, writes its own pid into the task's run
directory (``<work_dir>/meta/tasks/<run>/pid``), starts the task, waits for it and writes its
exit status next to it (``exit``) before exiting with that status. The supervisor survives the
agent: an agent that restarts finds each task's supervisor by that pid (checked against its
command line, so a recycled pid is never adopted), watches it with a pidfd, and reads the real
exit status of a task that ended while the agent was down. It costs one ``sh`` (about 1 ms and
1.5 MB) per task, against ~19 ms and 9 MB for a Python supervisor. The supervisor ignores the
group-wide SIGTERM of a graceful kill (a trap that only sets a flag) and keeps waiting for the
task; SIGKILL ends both. Exit statuses above 128 are read as "ended by signal status-128", the
shell's own convention. The task runs in the foreground: a trapped signal that arrives while
the shell waits for a foreground command is acted on only once the command has ended (POSIX),
with ``$?`` kept, so the supervisor waits for the task however often it is signalled. Until
issue 17 the task was a background job waited for in a loop, and since a non-interactive
shell's background jobs start with SIGINT and SIGQUIT ignored (POSIX), it was started through
``env --default-signal`` to undo that: an exec per task, and the task trees' execs were most
of the machine's CPU under ``bench/launch_throughput.py --real-agents 2`` (docs/performance.md).

Spawning: the supervisor ``cd``s into the sandbox itself rather than being started there, so
that it can be started with ``posix_spawn`` (vfork-like: no copy of the agent's page tables; a
fork of the agent took about 5 ms, most of a launch). Since issue 17 the agent calls
``os.posix_spawn(..., setsid=True)`` itself (:func:`spawn_supervisor`) instead of Twisted's
``spawnProcess`` of util-linux ``setsid``: the new session comes from the spawn, so the
``setsid`` exec is gone (one exec fewer per task), and so is Twisted's per-spawn bookkeeping
(a ``Process`` object, an fcntl per open fd). Twisted still reaps the child (its SIGCHLD
handler calls every registered reap handler, :class:`_Supervisor`). Profiled under
``bench/launch_throughput.py --real-agents 2 --tasks 2000``, the spawn was 9.8% of the agent's
main thread. With the foreground supervisor below, the launcher alone (300 ``true`` tasks with
cgroups, launch to reaped) went from 1.95 to 1.52 ms of agent CPU per task and from 3.98 to
2.10 ms for the task's process tree (docs/performance.md, "Issue 17").

stdout and stderr go straight to files in the sandbox (the child's fds are dup'ed from files
we open), so output never passes through the agent's event loop.

Isolation (``cgroups.py``): when the host allows it, each task gets its own cgroup, joined by
the task's first process before it execs anything. Identity: an agent running as root drops to
the task's user with util-linux ``setpriv`` (after joining the cgroup, which needs root), and
hands the sandbox to that user. The sandbox may already be that user's (the fetcher wrote in it
as the user), so whatever a process of that user could have put there is never followed: the
output files are opened without following links (:func:`open_output`) and only the sandbox and
its top-level entries are chowned, each without following a link.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import pwd
import shutil
import signal
import stat
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import process as twisted_process
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from tepui.agent.containerizers.cgroups import Cgroups, Limits, TaskCgroup, Usage, make_dir
from tepui.sdk.protocol.values import CommandInfo

log = logging.getLogger("tepui.agent.containerizers.processes")

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


class _Supervisor:
    """Twisted's reap handler for a supervisor we spawned ourselves: its SIGCHLD handler
    (``reapAllProcesses``) calls ``reapProcess`` of every registered handler on the reactor
    thread; the status is read as Twisted's ``ProcessDone``/``ProcessTerminated`` read it."""

    def __init__(self, pid: int, on_exit: Callable[[int | None, int | None], None]) -> None:
        self.pid = pid
        self._on_exit = on_exit

    def reapProcess(self) -> None:  # noqa: N802 (Twisted's name)
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
            twisted_process.unregisterReapProcessHandler(self.pid, self)
            log.warning("event=supervisor_not_reaped pid=%d reason=\"no such child\"", self.pid)
        if pid:
            twisted_process.unregisterReapProcessHandler(pid, self)
            self.processEnded(status)

    def processEnded(self, status: int) -> None:  # noqa: N802 (Twisted's name)
        if os.WIFEXITED(status):
            self._on_exit(os.WEXITSTATUS(status), None)
        else:
            self._on_exit(None, os.WTERMSIG(status))


def spawn_supervisor(argv: list[str], env: dict[str, str], stdin: int, stdout: int, stderr: int) -> int:
    """``posix_spawn`` of ``argv`` in a new session with the given standard fds, what Twisted's
    ``spawnProcess`` did for us minus its bookkeeping: every other fd the child would inherit is
    closed, and signals the agent ignores (Python ignores SIGPIPE) are reset to their default."""
    actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
                                      (os.POSIX_SPAWN_DUP2, stderr, 2)]
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    actions.append((os.POSIX_SPAWN_CLOSE, fd))
            except OSError:
                pass  # the listing's own fd, closed by now
    return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsigdef=_ignored_signals(), setsid=True)


@functools.lru_cache(maxsize=1)
def _ignored_signals() -> tuple[int, ...]:
    """The signals the agent ignores, for the child to reset to their default (Python ignores
    SIGPIPE and SIGXFSZ from its start; nothing in the agent ignores one later). Read once:
    asking ``getsignal`` for all 64 at every spawn was 2% of the agent's launch path (issue 17)."""
    return tuple(s for s in range(1, signal.NSIG) if signal.getsignal(s) == signal.SIG_IGN)


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
    message: str | None = None  # when the status is not known (a supervisor killed while we were away)


# The supervisor, as the agent's user: joins the task's cgroups (every descendant is then born
# inside), records its pid, starts the rest of the chain (setpriv, command) in the foreground
# and records how it ended. A trapped TERM, INT or HUP only sets a flag, and only once the task
# has ended (POSIX defers traps during a foreground command and keeps ``$?``); the task's
# signals are its defaults (a trap is reset in a child, and nothing is ignored as it would be
# for a background job).
SUPERVISE = (
    'for f in $TEPUI_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; unset TEPUI_CGROUP_PROCS; '
    'd=$1; cd "$2" || exit 125; shift 2; echo $$ > "$d/pid"; '
    "trap 'i=1' TERM INT HUP; "
    '"$@"; r=$?; '
    'echo $r > "$d/exit"; exit $r'
)
SUPERVISOR_NAME = "tepui-task"


def exit_from_status(code: int | None, sig: int | None) -> tuple[int | None, int | None]:
    """The supervisor's exit status, read the shell's way: above 128 means a signal."""
    if sig is None and code is not None and 128 < code <= 128 + 64:
        return None, code - 128
    return code, sig


class ProcessLauncher:
    """Starts tasks as processes: own session, own cgroup (when available), own user; and takes
    back, after an agent restart, the tasks that kept running (``adopt``)."""

    def __init__(self, reactor: Any, cgroups: Cgroups | None = None) -> None:
        self._reactor = reactor
        self.cgroups = cgroups
        self.pids: dict[tuple[str, str], int] = {}
        self.groups: dict[tuple[str, str], TaskCgroup] = {}
        self._watches: dict[tuple[str, str], _ExitWatch] = {}

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
        run_dir: str | None = None,
    ) -> int:
        """Starts the task under its supervisor; returns the supervisor's pid (the task's
        process-group id). ``run_dir`` receives the supervisor's pid and the task's exit
        status (a temporary directory when None). Raises OSError with a readable message."""
        make_dir(sandbox)
        if run_dir is None:
            run_dir = os.path.join(sandbox, ".tepui-run")
        make_dir(run_dir, 0o700)
        env = {"PATH": os.environ.get("PATH", BASE_PATH), "LANG": "C.UTF-8", "HOME": sandbox}
        env.update(environment)
        chain: list[str] = []
        if user is not None and user.uid != os.geteuid():
            chain += [SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--"]
            env["USER"] = env["LOGNAME"] = user.name
        argv = ["/bin/sh", "-c", SUPERVISE, SUPERVISOR_NAME, run_dir, sandbox] + chain + command_argv(command)
        if self.cgroups is not None:
            group = self.cgroups.create(key[0], key[1], limits or Limits(), envelope)
            self.groups[key] = group
            env["TEPUI_CGROUP_PROCS"] = " ".join(group.procs_files)
        with open_output(os.path.join(sandbox, "stdout")) as out, open_output(os.path.join(sandbox, "stderr")) as err, \
                open(os.devnull, "rb") as devnull:
            if user is not None and os.geteuid() == 0:
                # The sandbox belongs to the task's user: the directory and what the agent put at
                # its top (output files, links to volumes). Not recursively: what lies deeper was
                # written by the fetcher as that user already, and a recursive walk as root could
                # be led out of the sandbox by a directory swapped for a link while it runs.
                for name in [sandbox] + [os.path.join(sandbox, n) for n in os.listdir(sandbox)]:
                    if name != run_dir:
                        os.chown(name, user.uid, user.gid, follow_symlinks=False)

            def ended(code: int | None, sig: int | None) -> None:
                code, sig = exit_from_status(code, sig)
                self._ended(key, ProcessExit(code, sig), on_exit)

            pid = spawn_supervisor(argv, env, devnull.fileno(), out.fileno(), err.fileno())
        self.pids[key] = pid
        # Reaped by Twisted's SIGCHLD handler on a later turn; a supervisor that already ended
        # is reaped here, and ended() runs now (as Twisted's spawnProcess did).
        twisted_process.registerReapProcessHandler(pid, _Supervisor(pid, ended))
        return pid

    def adopt(self, key: tuple[str, str], pid: int | None, run_dir: str, on_exit: Callable[[ProcessExit], None],
              group: TaskCgroup | None = None) -> bool:
        """Takes back a task started by an earlier agent process: watches its supervisor and,
        when it ends, reports the status it recorded. Returns False (and reports at once, on
        a later turn) when the supervisor is no longer there."""
        if group is not None:
            self.groups[key] = group
        alive = pid is not None and supervisor_alive(pid, run_dir)
        if not alive or pid is None:
            self._reactor.callLater(0, self._adopted_ended, key, run_dir, on_exit)
            return False
        self.pids[key] = pid
        watch = _ExitWatch(self._reactor, pid, lambda: self._adopted_ended(key, run_dir, on_exit))
        self._watches[key] = watch
        watch.start()
        return True

    def _adopted_ended(self, key: tuple[str, str], run_dir: str, on_exit: Callable[[ProcessExit], None]) -> None:
        self._watches.pop(key, None)
        recorded = _read_status(os.path.join(run_dir, "exit"))
        if recorded is None:
            result = ProcessExit(None, None, message="its supervisor ended without recording the task's exit "
                                 "status (it was killed while the agent was away)")
        else:
            code, sig = exit_from_status(recorded, None)
            result = ProcessExit(code, sig)
        self._ended(key, result, on_exit)

    def _ended(self, key: tuple[str, str], result: ProcessExit, on_exit: Callable[[ProcessExit], None]) -> None:
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
        on_exit(ProcessExit(result.exit_code, result.signal, oom, usage, result.message))

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
        for watch in list(self._watches.values()):
            watch.stop()
        self._watches.clear()

    def usage(self, key: tuple[str, str]) -> Usage | None:
        group = self.groups.get(key)
        try:
            return group.usage() if group is not None else None
        except OSError:
            return None


def open_output(path: str) -> Any:
    """Opens a task's output file in its sandbox for appending, as the agent (often root) in a
    directory the task's user may write: never through a link (a ``stdout`` linked to
    ``/etc/shadow`` would get the task's output appended), never a FIFO or device (it would block
    or write elsewhere), never a file with other hard links. Raises OSError saying which."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    name = os.path.basename(path)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO nobody reads
            raise OSError(exc.errno, f"{name} in the sandbox is a link or a FIFO; the agent writes a task's "
                          "output only to a plain file", path) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        raise OSError(errno.EINVAL, f"{name} in the sandbox is not a plain file (a FIFO, device or hard link); "
                      "the agent writes a task's output only to a plain file", path)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


def supervisor_alive(pid: int, run_dir: str) -> bool:
    """Whether ``pid`` is still the supervisor of the task whose run directory is ``run_dir``
    (its command line names the directory), not a process that inherited a recycled pid."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z" and SUPERVISOR_NAME.encode() in args and os.fsencode(run_dir) in args


def _read_status(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


@implementer(IReadDescriptor)
class _ExitWatch:
    """Calls ``on_gone`` once the process ``pid`` (not our child) has ended: readable pidfd
    (Linux 5.3+), or a poll every half second where pidfds are missing."""

    def __init__(self, reactor: Any, pid: int, on_gone: Callable[[], None]) -> None:
        self._reactor, self._pid, self._on_gone = reactor, pid, on_gone
        self._fd = -1
        self._poll: Any = None
        self._done = False

    def start(self) -> None:
        try:
            self._fd = os.pidfd_open(self._pid)
        except (AttributeError, OSError):
            self._poll = self._reactor.callLater(0.5, self._check)
            return
        self._reactor.addReader(self)

    def _check(self) -> None:
        self._poll = None
        try:
            os.kill(self._pid, 0)
            with open(f"/proc/{self._pid}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except (OSError, IndexError):
            zombie = True
        if zombie:
            self._finish()
        else:
            self._poll = self._reactor.callLater(0.5, self._check)

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:  # noqa: N802 (Twisted's name)
        self._finish()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        pass

    def logPrefix(self) -> str:  # noqa: N802 (Twisted's name)
        return "supervisor-watch"

    def stop(self) -> None:
        self._done = True
        if self._fd >= 0:
            self._reactor.removeReader(self)
            os.close(self._fd)
            self._fd = -1
        if self._poll is not None and self._poll.active():
            self._poll.cancel()

    def _finish(self) -> None:
        if self._done:
            return
        self.stop()
        self._on_gone()


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
