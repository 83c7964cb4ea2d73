"""A real cluster plus a real `tepui services` process, reached through the master's proxy.

Shared by the services end-to-end tests (and, through :class:`FrameworkProcess`, the batch
framework's: tests/e2e/batch_harness.py): start/stop/SIGKILL the framework on the same store,
call its API as `tepui apps` does (bearer token, through `/frameworks/services/`), follow the
event stream from a thread, and wait for conditions with the cluster's logs in the failure.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from tests.e2e.conftest import Cluster, child_env, free_ports, stop_process, tail, tepui_cmd


class FrameworkProcess:
    """A `tepui NAME` framework process (services, batch) on a store in ``root``, its REST API
    reached through the master's ``/frameworks/NAME/`` proxy with the cluster's token."""

    name = "services"
    subscribe_timeout = 20.0

    def __init__(self, cluster: Cluster, root: Path) -> None:
        self.cluster, self.root = cluster, root
        self.store = root / f"{self.name}.sqlite"
        self.api_port = free_ports(1)[0]
        # The master relays to a loopback API only where allowed (as `tepui up` allows its own).
        cluster.master_args += ["--proxy-allow", f"127.0.0.1:{self.api_port}"]
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / f"{self.name}.log"
        self.base = f"http://127.0.0.1:{cluster.http_port}/frameworks/{self.name}/v1"

    # --- the process ------------------------------------------------------------------------

    def start(self) -> None:
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(
                tepui_cmd(self.name, "--master", self.cluster.master, "--store", str(self.store),
                          "--http-port", str(self.api_port), "--http-token-file", str(self.cluster.root / "http-token")),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=child_env(),
                cwd=self.root)
        self.cluster.watch.add([self.process.pid])
        self.cluster.logs[self.name] = self.log
        self.wait(lambda: self.health().get("subscribed") is True, self.subscribe_timeout,
                  f"{self.name} framework subscribed")

    @contextmanager
    def running(self) -> Iterator[Self]:
        """The cluster started, then this framework; both stopped afterwards (a module fixture)."""
        try:
            self.cluster.start()
            self.start()
            yield self
        finally:
            self.stop()
            self.cluster.stop()

    def kill(self) -> None:
        """SIGKILL: no goodbye to the master; the framework's tasks keep running (failover)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, 10)

    def health(self) -> dict[str, Any]:
        status, body = self.call("GET", "/health")
        return body if status == 200 and isinstance(body, dict) else {}

    # --- the API ----------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             timeout: float = 10.0) -> tuple[int, Any]:
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.cluster.token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")
        except OSError as exc:
            return 0, str(exc)

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except AssertionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n"
                             f"===== {self.name} =====\n{tail(self.log, 60)}\n{self.cluster.log_tails(20)}")


class Services(FrameworkProcess):
    """`tepui services`: apps, their tasks and deployments."""

    def deploy(self, spec: str) -> dict[str, Any]:
        status, body = self.call("POST", "/apps", spec, "application/yaml")
        assert status in (200, 201), f"deploy answered {status}: {body}"
        return body  # type: ignore[no-any-return]

    def app(self, app_id: str) -> dict[str, Any]:
        status, body = self.call("GET", "/apps" + app_id)
        assert status == 200, f"GET app {app_id}: {status} {body}"
        return body  # type: ignore[no-any-return]

    def tasks(self, app_id: str) -> list[dict[str, Any]]:
        status, body = self.call("GET", f"/apps{app_id}/tasks")
        assert status == 200, f"GET tasks {app_id}: {status} {body}"
        return body["tasks"]  # type: ignore[no-any-return]

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/deployments/{deployment_id}")
        assert status == 200, f"GET deployment {deployment_id}: {status} {body}"
        return body  # type: ignore[no-any-return]

    def wait_deployment(self, deployment_id: str, timeout: float = 60.0) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.deployment(deployment_id))
            return found["status"] != "RUNNING"

        self.wait(done, timeout, f"deployment {deployment_id} finished")
        return found

    def healthy_tasks(self, app_id: str) -> list[dict[str, Any]]:
        return [t for t in self.tasks(app_id) if t["state"] == "TASK_RUNNING" and t["healthy"] and not t["killing"]]


class EventStream:
    """Reads ``GET /v1/events`` (through the master's proxy) in a thread; ``events`` grows."""

    def __init__(self, services: FrameworkProcess) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.connected = threading.Event()
        request = urllib.request.Request(services.base + "/events",
                                         headers={"Authorization": f"Bearer {services.cluster.token}"})
        self.response = urllib.request.urlopen(request, timeout=120)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        kind = None
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("event: "):
                    kind = line[len("event: "):]
                elif line.startswith("data: ") and kind is not None:
                    self.events.append((kind, json.loads(line[len("data: "):])))
                    kind = None
        except (OSError, ValueError, AttributeError):  # closed under the reader (http.client sets fp None)
            pass

    def of(self, kind: str, app: str | None = None) -> list[dict[str, Any]]:
        return [d for k, d in list(self.events) if k == kind and (app is None or d.get("app") == app)]

    def close(self) -> None:
        self.response.close()


def http_app(app_id: str, instances: int, *, version_env: str = "1", health_path: str = "/",
             grace: float = 5.0, extra: str = "") -> str:
    """A small HTTP server app spec (python3 -m http.server on its host port) with an HTTP
    health check every second. Python needs ~0.15 CPU-seconds to start, stretched by the task's
    CFS quota (cpus 0.1: ~1.5 s), so the grace period leaves room for it on a busy machine."""
    return f"""
id: {app_id}
command: python3 -m http.server $PORT0 --bind 127.0.0.1
cpus: 0.1
mem: 32
instances: {instances}
ports: [{{name: http}}]
env: {{VERSION: "{version_env}"}}
labels: {{suite: e2e}}
health_checks:
  - {{protocol: HTTP, path: "{health_path}", grace_period_seconds: {grace}, interval_seconds: 1,
      timeout_seconds: 0.5, max_consecutive_failures: 3}}
{extra}
"""
