"""Real-process harness for the end-to-end suite: a master and two agents started exactly the
way an operator starts them (``python -m tepui.cli master|agent``) on free ports, with their
logs in files under ``tmp_path``.

Everything this harness starts it also stops, and it checks afterwards (by pid and start time,
so a recycled pid is never mistaken for ours) that nothing it started — nor any task process
the agents started for it — is left running. Failed tests get the tail of every log attached
to their report.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.keyring import TestKeys

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 15.0


# --- small helpers shared by the tests ----------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago (bound to port 0 together)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_block(size: int, low: int = 10000, high: int = 32000) -> tuple[int, int]:
    """A block of ``size`` consecutive TCP ports, all free a moment ago, at a random place below
    the kernel's ephemeral range (32768-60999 here, where outgoing connections take theirs).
    Why: agents offer host ports, and tasks bind the ones they are given; two clusters on one
    machine offering the same default range (31000-32000) — a second test run, a `tepui up`, a
    benchmark — gave two tasks the same port, and the second failed to bind (seen in CI: the
    health-check test's web server ended TASK_FAILED at once while another suite ran)."""
    rng = random.Random()
    for _ in range(50):
        first = rng.randrange(low, high - size) // size * size
        held = []
        try:
            for port in range(first, first + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first, first + size - 1
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no block of {size} free ports between {low} and {high}")


def up_ports() -> tuple[int, int]:
    """``--port`` and ``--http-port`` for `tepui up`, which also takes http port + 10, + 11 and
    + 12: from one block free a moment ago below the ephemeral range and the agents' task ports
    (two random ephemeral ports failed when an outgoing connection held one of the neighbours,
    bench/services_deploy.py in CI)."""
    first, _last = free_port_block(14, high=30000)
    return first + 13, first


def tepui_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tepui.cli", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("TEPUI_MASTER", None)
    return env


def write_token(path: Path) -> str:
    """A fresh HTTP bearer token in ``path`` (0600), returned."""
    import secrets

    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET on the master's HTTP port; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_state(port: int) -> dict[str, Any] | None:
    try:
        status, body = http_get(port, "/state", timeout=1.0)
    except (OSError, ValueError):
        return None
    if status != 200:
        return None
    return json.loads(body)  # type: ignore[no-any-return]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


# --- the process table, read from /proc ---------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[2]


def is_alive(pid: int, started: int | None = None) -> bool:
    """True while ``pid`` runs (zombies count as gone) and is still the process that had
    ``started`` as its start time (a recycled pid is not ours)."""
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return started is None or stat[2] == started


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(pid: int) -> list[int]:
    found = []
    for other in all_pids():
        stat = _stat(other)
        if stat is not None and stat[1] == pid:
            found.append(other)
    return found


def descendants_of(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def processes_under(directory: Path) -> list[int]:
    """Live processes whose working directory is inside ``directory`` (task processes run in
    their sandbox, so this finds them whatever their command line)."""
    root = os.path.realpath(directory)
    found = []
    for pid in all_pids():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + os.sep)) and is_alive(pid):
            found.append(pid)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class ProcessWatch:
    """Remembers (pid, start time) of processes so we can later assert they are all gone."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int | None, str]] = {}

    def add(self, pids: list[int]) -> None:
        for pid in pids:
            if pid not in self.seen:
                started = start_time(pid)
                if started is not None:
                    self.seen[pid] = (started, cmdline(pid))

    def survivors(self) -> list[str]:
        return [f"{pid} ({line})" for pid, (started, line) in self.seen.items() if is_alive(pid, started)]


def stop_process(process: subprocess.Popen[Any], grace: float, sig: int = signal.SIGTERM) -> None:
    """``sig`` (SIGTERM), wait ``grace``, then SIGKILL; only ever for a process this suite
    started. Agents take SIGUSR1 (stop_agent): SIGTERM would leave their tasks running."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def stop_agent(process: subprocess.Popen[Any], grace: float) -> None:
    """An agent and its tasks: SIGUSR1 (drain), wait ``grace``, then SIGKILL."""
    stop_process(process, grace, signal.SIGUSR1)


# --- the cluster --------------------------------------------------------------------------------


class Cluster:
    """A real master and agents on free ports. ``master`` is what ``--master`` wants."""

    def __init__(self, root: Path, agents: int = 2, kill_grace_period: float = 3.0,
                 agent_args: list[str] | None = None, master_args: list[str] | None = None,
                 distinct_ports: bool = False) -> None:
        self.agent_args = list(agent_args or [])
        # Agents on one machine share its ports: frameworks that take host ports from offers
        # (services) need disjoint ranges, as `tepui up` gives them.
        self.distinct_ports = distinct_ports
        self.port_range = free_port_block(200 * agents)  # this cluster's own host ports
        self.master_args = list(master_args or [])
        self.root = root
        self.port, self.http_port = free_ports(2)
        self.master = f"127.0.0.1:{self.port}"
        # The cluster's HTTP token, as `tepui up` makes one: mutating calls need it.
        self.token = write_token(root / "http-token")
        # CURVE keys, as `tepui up` makes them; clients started with child_env() while the
        # cluster runs find them (and the token) through TEPUI_CONFIG. env_for(principal) gives
        # a framework its own key when it subscribes under a principal of its own.
        self.keys = TestKeys(root / "keys", agents, self.master, f"http://127.0.0.1:{self.http_port}", self.token)
        self._previous_config: str | None = None
        self.agent_count = agents
        self.kill_grace_period = kill_grace_period
        # Agent work dirs must be traversable by the unprivileged task user (pytest's tmp dirs
        # are 0700), as an operator's /var/lib/tepui would be.
        self.agents_root = Path(tempfile.mkdtemp(prefix="tepui-e2e-"))
        os.chmod(self.agents_root, 0o711)
        self.work_dirs = [self.agents_root / f"agent-{i}" for i in range(1, agents + 1)]
        self.logs: dict[str, Path] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.watch = ProcessWatch()

    def _spawn(self, name: str, args: list[str]) -> None:
        log_path = self.root / f"{name}.log"
        self.logs[name] = log_path
        with open(log_path, "ab") as log_file:
            self.processes[name] = subprocess.Popen(
                tepui_cmd(*args), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env=child_env(), cwd=self.root,
            )
        self.watch.add([self.processes[name].pid])

    def start(self) -> None:
        self._spawn("master", ["master", "--ip", "127.0.0.1", "--port", str(self.port),
                               "--http-port", str(self.http_port), "--http-token-file", str(self.root / "http-token"),
                               "--keys", str(self.keys.store), *self.master_args])
        self._previous_config = os.environ.get("TEPUI_CONFIG")
        os.environ["TEPUI_CONFIG"] = str(self.keys.config)
        for i in range(1, self.agent_count + 1):
            self.start_agent(i)
        deadline = time.monotonic() + READY_TIMEOUT
        state = None
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode} while starting:\n"
                                       f"{self.log_tails()}")
            state = get_state(self.http_port)
            if state is not None and state["activated_slaves"] == self.agent_count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster not ready within {READY_TIMEOUT} s (last /state: "
                           f"{None if state is None else state['activated_slaves']} agents):\n{self.log_tails()}")

    def start_agent(self, index: int) -> None:
        """(Re)starts agent ``index`` (1-based) on its work dir: a restarted one recovers its tasks."""
        self._spawn(f"agent-{index}", ["agent", "--master", self.master, "--work-dir", str(self.work_dirs[index - 1]),
                                       "--hostname", f"agent-{index}", "--keys", self.keys.agent_dir(index),
                                       "--http-token-file", str(self.root / "http-token"),  # as `tepui up`
                                       "--kill-grace-period", str(self.kill_grace_period),
                                       *self.agent_extra_args(index), *self.agent_args])

    def agent_extra_args(self, index: int) -> list[str]:
        """The agent's host ports: the cluster's own block (free_port_block), whole for every
        agent, or a disjoint share of it with ``distinct_ports``."""
        first, last = self.port_range
        if not self.distinct_ports:
            return ["--resources", f"ports:[{first}-{last}]"]
        from tepui.cli.up import agent_ports

        return ["--resources", agent_ports(index, self.agent_count, first, last)]

    def env_for(self, principal: str) -> dict[str, str]:
        """child_env() for a framework subscribing as ``principal`` (a key of its own: the
        master binds a framework's principal to its key)."""
        env = child_env()
        new = not (self.keys.store / f"config-{principal}.yaml").exists()
        env["TEPUI_CONFIG"] = str(self.keys.config_for(principal))
        deadline = time.monotonic() + 5
        while new and "master" in self.logs and time.monotonic() < deadline:
            # The master re-reads its allow list within a second; a client refused before
            # that would only retry 5 s later.
            if f"added={principal}" in tail(self.logs["master"], 200):
                break
            time.sleep(0.05)
        return env

    def state(self) -> dict[str, Any]:
        state = get_state(self.http_port)
        assert state is not None, f"/state did not answer:\n{self.log_tails()}"
        return state

    def remember_task_processes(self) -> None:
        """Adds every descendant of our processes and every process in a sandbox to the watch."""
        for process in self.processes.values():
            if process.poll() is None:
                self.watch.add(descendants_of(process.pid))
        self.watch.add(processes_under(self.root))
        self.watch.add(processes_under(self.agents_root))

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"===== {name}: {path} =====\n{tail(path, lines)}" for name, path in self.logs.items())

    def alive(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is None]

    def stop(self) -> None:
        """Agents first (they end their tasks), then the master; SIGKILL after a deadline."""
        self.remember_task_processes()
        agents = [p for n, p in self.processes.items() if n != "master"]
        for process in agents:
            if process.poll() is None:
                process.send_signal(signal.SIGUSR1)  # end your tasks too (SIGTERM would leave them)
        for process in agents:
            stop_agent(process, self.kill_grace_period + 10)
        if "master" in self.processes:
            stop_process(self.processes["master"], 10)
        shutil.rmtree(self.agents_root, ignore_errors=True)
        if os.environ.get("TEPUI_CONFIG") == str(self.keys.config):
            if self._previous_config is None:
                os.environ.pop("TEPUI_CONFIG", None)
            else:
                os.environ["TEPUI_CONFIG"] = self._previous_config


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One real master and two real agents for the whole module (startup is the slow part)."""
    instance = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        instance.start()
    except BaseException:
        instance.stop()
        raise
    yield instance
    dead_early = [name for name, p in instance.processes.items() if p.poll() is not None]
    instance.stop()
    codes = {name: p.returncode for name, p in instance.processes.items()}
    survivors = instance.watch.survivors()
    problems = []
    if dead_early:
        problems.append(f"died before teardown: {dead_early} (exit codes {codes})")
    if survivors:
        problems.append(f"left running after teardown: {survivors}")
    if problems:
        print(instance.log_tails(80))
    assert not problems, "; ".join(problems)


# --- log tails on failure -----------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    seen = set()
    for value in getattr(item, "funcargs", {}).values():
        log_tails = getattr(value, "log_tails", None)
        if callable(log_tails) and id(value) not in seen:
            seen.add(id(value))
            try:
                report.sections.append((f"tepui logs ({type(value).__name__})", log_tails()))
            except Exception as exc:  # never let the debugging aid hide the failure
                report.sections.append(("tepui logs", f"could not read logs: {exc!r}"))


class LogBook:
    """Log files a test creates for processes of its own; their tails are shown on failure."""

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}

    def add(self, name: str, path: Path) -> Path:
        self.paths[name] = path
        return path

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for name, path in self.paths.items():
            if path.is_dir():
                for log in sorted(path.glob("*.log")):
                    parts.append(f"===== {name}/{log.name} =====\n{tail(log, lines)}")
            else:
                parts.append(f"===== {name}: {path} =====\n{tail(path, lines)}")
        return "\n".join(parts)


@pytest.fixture
def logbook() -> LogBook:
    return LogBook()
