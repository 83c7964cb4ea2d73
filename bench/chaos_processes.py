"""Processes of the chaos benchmark (``bench/chaos.py``): started on free ports with their logs
in the run's directory, signalled and stopped by pid only, and the chaos proxies' control
channel (commands on stdin, statistics on stdout)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("TEPUI_MASTER", None)
    return env


class Proc:
    """One process of the run, restartable with the same arguments; its log is appended to."""

    def __init__(self, name: str, argv: list[str], log: Path, stdin_pipe: bool = False) -> None:
        self.name, self.argv, self.log, self.stdin_pipe = name, argv, log, stdin_pipe
        self.popen: subprocess.Popen[bytes] | None = None
        self.stopped = False  # SIGSTOPped

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdout=log if not self.stdin_pipe else subprocess.PIPE, stderr=log,
                stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL, env=child_env(), cwd=self.log.parent)
        self.stopped = False

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.alive():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait()
        self.stopped = False

    def stop(self, timeout: float) -> None:
        """SIGCONT if frozen, SIGTERM, then SIGKILL after ``timeout``."""
        stop_all([self], timeout)


def stop_all(procs: list[Proc], timeout: float) -> None:
    """SIGTERM to each (SIGCONT first if frozen), then waits; SIGKILL for any still running
    ``timeout`` seconds later."""
    running = [p for p in procs if p.alive()]
    for proc in running:
        if proc.stopped:
            proc.signal(signal.SIGCONT)
        proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        assert proc.popen is not None
        try:
            proc.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


class Proxy(Proc):
    _lock = threading.Lock()  # --masters N: the leader follower's thread commands them too

    def command(self, line: str) -> None:
        with self._lock:
            self._command(line)

    def _command(self, line: str) -> None:
        if self.alive():
            assert self.popen is not None and self.popen.stdin is not None
            self.popen.stdin.write((line + "\n").encode())
            self.popen.stdin.flush()

    def wait_ready(self) -> None:
        """Its first line on stdout is ``{"event": "ready"}`` (EOF if it died starting)."""
        assert self.popen is not None and self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(f"proxy {self.name} did not start: {line!r}; see {self.log}")

    def quit_and_stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """Ends the proxy; its last stdout line is its counters."""
        if not self.alive():
            return {}
        assert self.popen is not None
        try:
            out, _ = self.popen.communicate(b"quit\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, _ = self.popen.communicate()
        stats: dict[str, Any] = {}
        for line in out.decode(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "stats":
                stats = record
        return stats
