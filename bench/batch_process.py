"""A real ``tepui batch`` process for the batch benchmarks (bench/batch_array.py,
bench/batch_queue.py): started next to a :class:`cluster.LocalCluster` with its own store, talked
to directly on its API port (no master proxy: the figures are the framework's), and measured from
``/proc`` (RSS, peak RSS, CPU seconds) since the benchmarks' point is what its bookkeeping costs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from cluster import LocalCluster, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BatchProcess:
    """``tepui batch --master M --insecure`` on a free port; stopped with SIGTERM on exit."""

    def __init__(self, cluster: LocalCluster, name: str = "batch", log_level: str = "warning") -> None:
        self.cluster, self.name, self.log_level = cluster, name, log_level
        self.store = os.path.join(cluster.dir, f"{name}.sqlite")
        # Its API refuses mutating calls without a token (sdk/http_security.py): one of our own.
        self.token = secrets.token_urlsafe(24)
        self.token_file = os.path.join(cluster.dir, f"{name}.token")
        self.log = os.path.join(cluster.dir, f"{name}.log")
        self.http_port = free_port()
        self.api = f"http://127.0.0.1:{self.http_port}/v1"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> BatchProcess:
        with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(self.token + "\n")
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tepui.cli", "batch", "--master", self.cluster.master, "--insecure",
             "--store", self.store, "--http-port", str(self.http_port),
             "--http-token-file", self.token_file, "--log-level", self.log_level],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tepui batch exited {self.process.returncode}; log in {self.log}")
            try:
                if self.call("GET", "/health").get("subscribed"):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"tepui batch did not subscribe within 60 s; log in {self.log}")

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def call(self, method: str, path: str, body: Any = None, timeout: float = 120.0) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", "X-Tepui-User": "bench",
                                                  "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)  # type: ignore[no-any-return]

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        job: dict[str, Any] = self.call("POST", "/jobs", spec)["job"]
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.call("GET", f"/jobs/{job_id}")["job"]
        return job

    def status(self) -> dict[str, float]:
        """VmRSS and VmHWM (MiB) and CPU seconds (user + system) of the process so far."""
        fields: dict[str, float] = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    fields[name] = int(value.split()[0]) / 1024
        with open(f"/proc/{self.pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        fields["cpu_seconds"] = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime, stime
        return fields


def array_spec(name: str, tasks: int, cpus: float, mem: float, command: str = "true") -> dict[str, Any]:
    """One stage of ``tasks`` tasks running ``command`` (JSON, as ``POST /v1/jobs`` takes it)."""
    return {"name": name, "stages": [{"name": "run", "array": tasks, "command": command,
                                      "resources": {"cpus": cpus, "mem": mem}}]}


def load() -> str:
    """``uptime``'s load averages, to print beside every figure (2 shared cores: they move)."""
    with open("/proc/loadavg") as f:
        return "load " + " ".join(f.read().split()[:3])
