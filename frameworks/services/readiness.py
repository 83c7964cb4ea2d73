"""Readiness probes: HTTP GETs from the framework to a new task until it answers "ready".

Why the framework probes (not the agent, which runs health checks): readiness gates the
framework's own deployment — "may I kill the next old instance?" — as in Marathon, where the
scheduler runs readiness checks itself. The probe goes to the agent's address and the task's host
port (``Offer.address``), so it works when the agent's hostname does not resolve. Non-blocking
(``twisted.web.client.Agent`` on the reactor passed in); each result goes to ``report``; probing a
task stops when it is ready or when the core says ``StopProbe``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.web.client import Agent, readBody

from tepui.frameworks.services.effects import Probe

log = logging.getLogger("tepui.services.readiness")


class ReadinessProber:
    def __init__(self, reactor: Any, report: Callable[[str, bool], None]) -> None:
        self.reactor, self.report = reactor, report
        self.agent = Agent(reactor, connectTimeout=5)
        self.probes: dict[str, Any] = {}  # task id → IDelayedCall of its next probe

    def start(self, probe: Probe) -> None:
        if probe.task_id in self.probes:
            return
        self.probes[probe.task_id] = self.reactor.callLater(0, self._probe, probe)

    def stop(self, task_id: str) -> None:
        call = self.probes.pop(task_id, None)
        if call is not None and call.active():
            call.cancel()

    def stop_all(self) -> None:
        for task_id in list(self.probes):
            self.stop(task_id)

    @defer.inlineCallbacks
    def _probe(self, probe: Probe) -> Any:
        ready = False
        try:
            request = self.agent.request(b"GET", probe.url.encode())
            request.addTimeout(probe.timeout, self.reactor)
            response = yield request
            yield readBody(response)
            ready = response.code in probe.statuses
        except Exception as exc:  # refused, timed out, reset: not ready yet
            log.debug("event=readiness_probe_failed task=%s url=%s error=%s", probe.task_id, probe.url, exc)
        if probe.task_id not in self.probes:
            return
        if ready:
            del self.probes[probe.task_id]
        else:
            self.probes[probe.task_id] = self.reactor.callLater(probe.interval, self._probe, probe)
        self.report(probe.task_id, ready)
