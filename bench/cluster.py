"""A throwaway local cluster for benchmarks: a real master and agents as child processes on
free ports, stopped (agents first) when the ``with`` block ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    def __init__(self, agents: int = 2, agent_resources: str | None = None) -> None:
        self.agents, self.agent_resources = agents, agent_resources
        self.port, self.http_port = free_port(), free_port()
        self.dir = tempfile.mkdtemp(prefix="tepui-bench-")
        os.chmod(self.dir, 0o711)  # task users (nobody) must reach their sandboxes
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def master(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.processes.append(subprocess.Popen([sys.executable, "-m", "tepui.cli", *args], stdout=log,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/state", timeout=2) as response:
            return json.load(response)  # type: ignore[no-any-return]

    def __enter__(self) -> LocalCluster:
        # An --insecure cluster: its clients (here and in children) must not pick up the keys
        # of a `tepui up` cluster from ~/.config/tepui/config.yaml.
        os.environ["TEPUI_CONFIG"] = os.devnull
        self._spawn("master", ["master", "--ip", "127.0.0.1", "--port", str(self.port),
                               "--http-port", str(self.http_port), "--log-level", "warning", "--insecure"])
        for i in range(self.agents):
            args = ["agent", "--master", self.master, "--work-dir", os.path.join(self.dir, f"agent-{i}"),
                    "--hostname", f"agent-{i}", "--log-level", "warning", "--insecure"]
            if self.agent_resources:
                args += ["--resources", self.agent_resources]
            self._spawn(f"agent-{i}", args)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.state()["activated_slaves"] == self.agents:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self._stop()
        raise RuntimeError(f"cluster did not come up; logs in {self.dir}")

    def __exit__(self, *exc: Any) -> None:
        self._stop()
        if exc[0] is None:
            shutil.rmtree(self.dir, ignore_errors=True)  # logs stay only when something failed

    def _stop(self) -> None:
        for process in self.processes[1:] + self.processes[:1]:  # agents first, then the master
            if process.poll() is None:
                # Agents drain on SIGUSR1 (SIGTERM would leave their tasks for their next start).
                process.send_signal(signal.SIGUSR1 if process is not self.processes[0] else signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
