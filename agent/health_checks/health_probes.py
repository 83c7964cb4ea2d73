"""Health probes, the I/O part: a command in the task's sandbox, an HTTP GET, a TCP connect.

Each probe returns a Deferred that fires ``(ok, detail)`` on the reactor thread and never
errbacks: a probe that cannot even run is a failed probe with the reason as its detail.
HTTP and TCP probes target 127.0.0.1 on the given port — for Docker tasks that is the host
port the container's port is published on. HTTP counts 200–399 as healthy unless ``statuses``
lists the accepted codes (Mesos's default). Blocking sockets run in the reactor's thread pool.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from typing import Any

from twisted.internet import defer, protocol, threads

from tepui.agent.containerizers.processes import BASE_PATH, SETPRIV, TaskUser
from tepui.sdk.protocol.values import HealthCheck

Result = tuple[bool, str]


def probe(reactor: Any, check: HealthCheck, sandbox: str, environment: dict[str, str],
          user: TaskUser | None) -> defer.Deferred[Result]:
    kind = check.type.upper()
    if kind == "COMMAND" and check.command is not None and check.command.value:
        return _command(reactor, check.command.value, check.timeout_seconds, sandbox, environment, user)
    if kind == "HTTP" and check.http is not None:
        port, path, scheme = check.http.port, check.http.path or "/", check.http.scheme or "http"
        statuses = list(check.http.statuses)
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), _http, scheme, port, path,
                                         statuses, check.timeout_seconds)
    if kind == "TCP" and check.tcp is not None:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), _tcp, check.tcp.port,
                                         check.timeout_seconds)
    return defer.succeed((False, f"health check of type {check.type!r} lacks its settings (command, http or tcp)"))


def _http(scheme: str, port: int, path: str, statuses: list[int], timeout: float) -> Result:
    url = f"{scheme}://127.0.0.1:{port}{path if path.startswith('/') else '/' + path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (OSError, ValueError) as exc:
        return False, f"GET {url}: {getattr(exc, 'reason', exc)}"
    ok = code in statuses if statuses else 200 <= code < 400
    return ok, f"GET {url} answered {code}"


def _tcp(port: int, timeout: float) -> Result:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True, f"TCP 127.0.0.1:{port} accepted a connection"
    except OSError as exc:
        return False, f"TCP 127.0.0.1:{port}: {exc.strerror or exc}"


class _CommandProbe(protocol.ProcessProtocol):
    def __init__(self, done: defer.Deferred[Result], command: str) -> None:
        self.done, self.command = done, command

    def processEnded(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        if self.done.called:
            return
        code = getattr(reason.value, "exitCode", None)
        if code == 0:
            self.done.callback((True, f"`{self.command}` exited 0"))
        else:
            how = f"exited {code}" if code is not None else f"ended by signal {getattr(reason.value, 'signal', '?')}"
            self.done.callback((False, f"`{self.command}` {how}"))


def _command(reactor: Any, command: str, timeout: float, sandbox: str, environment: dict[str, str],
             user: TaskUser | None) -> defer.Deferred[Result]:
    done: defer.Deferred[Result] = defer.Deferred()
    env = {"PATH": os.environ.get("PATH", BASE_PATH), "LANG": "C.UTF-8", "HOME": sandbox, **environment}
    argv = ["/bin/sh", "-c", command]
    if user is not None and user.uid != os.geteuid():
        argv = [SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--"] + argv
    try:
        process = reactor.spawnProcess(_CommandProbe(done, command), argv[0], argv, env=env, path=sandbox,
                                       childFDs={0: "w", 1: "r", 2: "r"})
    except OSError as exc:
        return defer.succeed((False, f"could not run `{command}`: {exc}"))

    def expire() -> None:
        if not done.called:
            try:
                process.signalProcess("KILL")
            except Exception:  # noqa: BLE001 - already gone
                pass
            done.callback((False, f"`{command}` timed out after {timeout:g} s"))

    timer = reactor.callLater(max(0.1, timeout), expire)
    done.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
    return done
