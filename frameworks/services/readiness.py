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

from twisted.internet import defer, protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, PotentialDataLoss, ResponseDone

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
        # The call that ran this probe is its loop's identity: a task stopped and started again
        # while this GET is in flight has a new loop, and this one must end without reporting
        # (checking only that the task is still probed would keep both loops running).
        loop = self.probes.get(probe.task_id)
        ready = False
        try:
            answer = self._get(probe.url)
            answer.addTimeout(probe.timeout, self.reactor)  # the status line *and* the body
            ready = (yield answer) in probe.statuses
        except Exception as exc:  # refused, timed out, reset: not ready yet
            log.debug("event=readiness_probe_failed task=%s url=%s error=%s", probe.task_id, probe.url, exc)
        if loop is None or self.probes.get(probe.task_id) is not loop:
            return
        if ready:
            del self.probes[probe.task_id]
        else:
            self.probes[probe.task_id] = self.reactor.callLater(probe.interval, self._probe, probe)
        self.report(probe.task_id, ready)

    @defer.inlineCallbacks
    def _get(self, url: str) -> Any:
        """The status of a GET once its whole body has come (and been discarded): a server
        stuck in the middle of its answer must time out like one that never answers, or its
        probe would hang for ever and never be repeated."""
        response = yield self.agent.request(b"GET", url.encode())
        body = _Discard()
        response.deliverBody(body)
        yield body.done
        return response.code


class _Discard(protocol.Protocol):
    """Reads a body to its end. Cancelling closes the connection — ``readBody``'s cancel cannot
    here: the transport a response body gets has no ``abortConnection``."""

    def __init__(self) -> None:
        self.done: defer.Deferred[None] = defer.Deferred(self._cancel)

    def _cancel(self, _: defer.Deferred[None]) -> None:
        assert self.transport is not None  # deliverBody connected it before the probe could time out
        self.transport.stopProducing()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802 (Twisted's)
        if not self.done.called:
            if reason.check(ResponseDone, PotentialDataLoss):
                self.done.callback(None)
            else:
                self.done.errback(reason)
