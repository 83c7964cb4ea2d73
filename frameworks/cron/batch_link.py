"""The cron framework's calls to the batch framework's REST API (docs/batch.md "REST API"):
submit a fire's job, cancel a replaced one, read a job's state.

Why HTTP to the batch framework and not tasks of our own: a fire's run then gets everything a
batch job has (stages, retries, artifacts, history, logs), as a Kubernetes CronJob creates Jobs.
The calls go, by default, through the master's proxy (``/frameworks/batch/v1``) with the
cluster token as Bearer — the proxy lets a mutating call through only with it — so the cron
framework needs to know only the master.

Non-blocking (``twisted.web.client.Agent`` on the reactor passed in, no threads), at most
:data:`MAX_IN_FLIGHT` calls at once (a catch-up of 100 fires must not open 100 connections to
the proxy, whose relays are limited), each bounded by :data:`TIMEOUT` seconds for the status
line and the body.

How an answer is read (:func:`submit_outcome`) is the whole of "exactly once" on this side: only
400, 409 and 422 are the batch framework *refusing* the job (an invalid template, or the id taken
by another spec); every other answer — none at all, 5xx, 429, a 404 from the proxy because the
batch framework is not subscribed, a 401 from a token not yet in place — leaves the fire
INTENDED and is asked again under the same id, which the idempotent submit makes safe.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, PotentialDataLoss, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

log = logging.getLogger("tepui.cron.batch_link")

MAX_IN_FLIGHT = 8
TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
REFUSALS = frozenset({400, 409, 422})  # the batch framework's "no" to this job: never asked again
#: The batch job states that end a job (``GET /v1/jobs/ID``'s ``state``).
JOB_ENDS = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED"})
#: What a job the batch framework forgot (its ``ttl_after_finished`` passed while we did not
#: look) ended as: we cannot know, and the fire's record says so.
FORGOTTEN = "UNKNOWN"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: ``status`` 0 when none came (refused, reset, timed out); ``body`` the
    decoded JSON (empty when it was not JSON); ``problem`` what went wrong, for the record."""

    status: int
    body: dict[str, Any]
    problem: str = ""


@dataclass(frozen=True)
class SubmitOutcome:
    """``created``: the batch framework has the job (201, or 200 ``created: false`` for a
    repeat); else ``retryable`` says whether to ask again, ``why`` what the answer said."""

    created: bool
    retryable: bool = False
    why: str = ""


def submit_outcome(answer: Answer) -> SubmitOutcome:
    """The contract of ``POST /v1/jobs?id=``: 200/201 created; 400/409/422 refused for good
    (``why`` is the batch framework's error text); anything else — no answer included — is
    retried."""
    if answer.status in (200, 201):
        return SubmitOutcome(True)
    why = _why(answer)
    return SubmitOutcome(False, answer.status not in REFUSALS, why)


def job_end(answer: Answer) -> str | None:
    """The end state a ``GET /v1/jobs/ID`` answer tells, or None while the job runs or the
    answer says nothing (no answer, the batch framework not subscribed: asked again in 2 s).
    A 404 ``UNKNOWN_JOB`` from the batch framework itself means it forgot a job it had:
    :data:`FORGOTTEN`."""
    if answer.status == 200:
        state = answer.body.get("job", {}).get("state")
        return state if state in JOB_ENDS else None
    if answer.status == 404 and answer.body.get("reason") == "UNKNOWN_JOB":
        return FORGOTTEN
    return None


def _why(answer: Answer) -> str:
    if answer.status == 0:
        return f"no answer ({answer.problem})"
    reason, error = answer.body.get("reason"), answer.body.get("error")
    if reason or error:
        return f"{answer.status} {reason or ''}: {error or ''}".replace(" : ", ": ").strip()
    return f"{answer.status} {answer.problem}".strip()


@implementer(IBodyProducer)
class _Body:
    """A body already in memory, written in one go. Not ``FileBodyProducer``: that one schedules
    on the global reactor, not the one passed in."""

    def __init__(self, data: bytes) -> None:
        self.data, self.length = data, len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802 (Twisted's)
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


class _Collect(protocol.Protocol):
    """Reads a body to its end. Not ``readBody``: the transport a pooled response body gets has
    no ``abortConnection``, so its cancel (our timeout) is deprecated there; stopping the
    transport closes the connection instead."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred(self._cancel)

    def _cancel(self, _: defer.Deferred[bytes]) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's)
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        if not self.done.called:
            if reason.check(ResponseDone, PotentialDataLoss):
                self.done.callback(b"".join(self.chunks))
            else:
                self.done.errback(reason)


class BatchLink:
    """The batch API at ``base`` (``http://HOST:PORT/frameworks/batch/v1``, or the framework's
    own ``http://HOST:PORT/v1``). ``token``: sent as Bearer (the cluster token)."""

    def __init__(self, reactor: Any, base: str, token: str | None = None, timeout: float = TIMEOUT) -> None:
        self.reactor, self.base, self.token, self.timeout = reactor, base.rstrip("/"), token, timeout
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = MAX_IN_FLIGHT
        self.pool = pool
        self.agent = Agent(reactor, connectTimeout=CONNECT_TIMEOUT, pool=pool)
        self.limit = defer.DeferredSemaphore(MAX_IN_FLIGHT)
        self.reachable = "unreachable: not asked yet"  # or "reachable" (the health answer)

    def submit(self, job_id: str, spec: dict[str, Any], user: str) -> defer.Deferred[Answer]:
        return self.call("POST", f"/jobs?id={urllib.parse.quote(job_id, safe='')}", spec, user)

    def cancel(self, job_id: str) -> defer.Deferred[Answer]:
        return self.call("POST", f"/jobs/{urllib.parse.quote(job_id, safe='')}/cancel", {})

    def job(self, job_id: str) -> defer.Deferred[Answer]:
        return self.call("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             user: str | None = None) -> defer.Deferred[Answer]:
        """Never fails: a call that got no answer is ``Answer(0, {}, why)``."""
        return self.limit.run(self._call, method, path, body, user)

    def close(self) -> defer.Deferred[None]:
        return self.pool.closeCachedConnections()

    @defer.inlineCallbacks
    def _call(self, method: str, path: str, body: dict[str, Any] | None, user: str | None) -> Any:
        headers = Headers({b"accept": [b"application/json"]})
        if self.token:
            headers.addRawHeader(b"authorization", f"Bearer {self.token}".encode())
        if user:
            headers.addRawHeader(b"x-tepui-user", user.encode())
        data = None
        if body is not None:
            headers.addRawHeader(b"content-type", b"application/json")
            data = json.dumps(body, sort_keys=True).encode()
        try:
            pending = self._exchange(method.encode(), (self.base + path).encode(), headers, data)
            pending.addTimeout(self.timeout, self.reactor)
            status, raw = yield pending
        except Exception as exc:  # refused, reset, timed out
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._seen(f"unreachable: {problem}")
            return Answer(0, {}, problem)
        self._seen("reachable" if status < 500 else f"unreachable: HTTP {status}")
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {}
        return Answer(status, decoded if isinstance(decoded, dict) else {}, "" if decoded else raw[:200].decode(
            "utf-8", "replace").strip())

    @defer.inlineCallbacks
    def _exchange(self, method: bytes, url: bytes, headers: Headers, data: bytes | None) -> Any:
        """One call; a 307 or 308 is followed once, with the same method and body: a standby
        master (or batch instance) of an HA cluster names the leader that way (``tepui up --ha``
        points ``--batch`` at one master, which may be a standby)."""
        for _hop in range(2):
            producer: Any = None if data is None else _Body(data)  # a fresh one per hop: it is read once
            response = yield self.agent.request(method, url, headers, producer)
            body = _Collect()
            response.deliverBody(body)
            raw = yield body.done
            location = response.headers.getRawHeaders(b"location")
            if response.code not in (307, 308) or not location:
                break
            url = location[0]
        return response.code, raw

    def _seen(self, state: str) -> None:
        if state != self.reachable:
            log.info("event=cron_batch_link state=%r was=%r base=%s", state, self.reachable, self.base)
        self.reachable = state
