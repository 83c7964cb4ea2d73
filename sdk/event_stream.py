"""The event stream of a framework's API: server-sent events to every open ``GET /v1/events``
(Marathon's ``/v2/events``); the services and batch frameworks both serve one.

Why SSE: one long HTTP response that any client reads (curl, browsers, ``tepui apps`` progress,
the tests sampling health through an upgrade), that the master's proxy relays chunk by chunk, and
that needs no second protocol. Each event is written at once, in the order the core published it;
a subscriber that cannot keep up (its transport buffer above ``MAX_BUFFERED`` bytes) is cut off
rather than allowed to grow the framework's memory — it reconnects and re-reads state. A comment
line every ``KEEPALIVE`` seconds keeps idle proxies and load balancers from closing the stream.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from twisted.internet import task
from twisted.web import resource, server

log = logging.getLogger("tepui.sdk.event_stream")

KEEPALIVE = 15.0
MAX_BUFFERED = 4 * 1024 * 1024


def encode_event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), sort_keys=True)}\n\n".encode()


class EventHub:
    """The open event streams."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.subscribers: set[Any] = set()
        self.published = 0
        self._keepalive = task.LoopingCall(self._ping)
        self._keepalive.clock = reactor

    def start(self) -> None:
        self._keepalive.start(KEEPALIVE, now=False)

    def stop(self) -> None:
        if self._keepalive.running:
            self._keepalive.stop()
        for request in list(self.subscribers):
            self._drop(request)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        self.published += 1
        if self.subscribers:
            self._write(encode_event(kind, data))

    def _ping(self) -> None:
        self._write(b": keepalive\n\n")

    def _write(self, chunk: bytes) -> None:
        for request in list(self.subscribers):
            transport = getattr(request.channel, "transport", None)
            buffered = len(getattr(transport, "dataBuffer", b"") or b"") + sum(
                len(c) for c in getattr(transport, "_tempDataBuffer", []) or [])
            if buffered > MAX_BUFFERED:
                log.warning("event=events_subscriber_dropped reason=slow buffered=%d", buffered)
                self._drop(request)
                continue
            request.write(chunk)

    def _drop(self, request: Any) -> None:
        self.subscribers.discard(request)
        try:
            request.finish()
        except Exception:  # already gone
            pass

    def attach(self, request: Any) -> int:
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b": connected\n\n")
        self.subscribers.add(request)
        request.notifyFinish().addBoth(lambda _: self.subscribers.discard(request))
        return server.NOT_DONE_YET


class EventsResource(resource.Resource):
    isLeaf = True

    def __init__(self, hub: EventHub) -> None:
        super().__init__()
        self.hub = hub

    def render_GET(self, request: Any) -> int:
        return self.hub.attach(request)
