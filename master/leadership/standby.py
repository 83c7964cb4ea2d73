"""What a standby master answers, on the ports it will serve from once it leads (RELIABILITY
scenario 23, standby form; Mesos's non-leading masters).

- **HTTP**: every path is a 307 to the same path and query on the leader (the method and body
  are kept by a 307, unlike a 302), ``/redirect`` a 307 to the leader's root, and ``/health`` a
  200 that says this master is a standby and who leads (it is alive; a load balancer's health
  check must not restart it). With no leader known — an election under way — a 503 with
  ``Retry-After: 1`` that says so.
- **ZeroMQ**: every envelope is answered with an ``Error`` naming the leader's address, and
  otherwise dropped. It carries epoch 0, so an agent that already follows a leader ignores it;
  a client given this master's address directly learns where to go instead of waiting.

Clients given ``zk://`` never need either: they follow the leader's node (sdk/leadership.py).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from twisted.web import resource

from tepui.master.http.api import json_response
from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.leadership import LeaderInfo
from tepui.sdk.protocol import scheduler as sm

log = logging.getLogger("tepui.master.standby")


class StandbyRoot(resource.Resource):
    isLeaf = True

    def __init__(self, own_id: str, leader: Callable[[], LeaderInfo | None]) -> None:
        super().__init__()
        self._own_id, self._leader = own_id, leader

    def render(self, request: Any) -> bytes:
        leader = self._leader()
        if request.path == b"/health":
            return json_response(request, 200, {
                "healthy": True, "leading": False, "id": self._own_id,
                "leader": None if leader is None else {"id": leader.id, "http": leader.http, "epoch": leader.epoch}})
        if leader is None or not leader.http:
            request.setHeader(b"retry-after", b"1")
            return json_response(request, 503, {
                "error": f"master {self._own_id} is a standby and no master leads yet (an election is under way); "
                         "try again in a second"})
        base = leader.http.rstrip("/")
        target = f"{base}/" if request.path == b"/redirect" else base + request.uri.decode("utf-8", "replace")
        request.setHeader(b"location", target.encode())
        return json_response(request, 307, {"leader": {"id": leader.id, "http": leader.http},
                                            "error": f"master {self._own_id} is a standby; the leader is at {base}"})


class StandbyResponder:
    """Answers ZeroMQ peers of a standby: an ``Error`` naming the leader (see the module)."""

    def __init__(self, own_id: str, leader: Callable[[], LeaderInfo | None], send: Callable[[bytes, bytes], None],
                 codec: Codec[Any]) -> None:
        self._own_id, self._leader, self._send, self._codec = own_id, leader, send, codec
        self._msg_id = 0
        self.answered = 0

    def on_message(self, peer: bytes, payload: bytes, identity: str | None = None) -> None:
        leader = self._leader()
        where = (f"the leading master is {leader.id} at {leader.address}" if leader is not None and leader.address
                 else "no master leads yet (an election is under way)")
        message = (f"master {self._own_id} is a standby: {where}. Give the master as zk://HOSTS/PATH to follow "
                   "the leader automatically")
        for env in self._codec.envelopes(payload):
            call_id = None if isinstance(env, ProtocolError) else env.call_id
            self._msg_id += 1
            self.answered += 1
            self._send(peer, self._codec.encode(envelope(sm.Error(message, call_id), self._msg_id, 0)))

    def on_unreachable(self, peer: bytes) -> None:
        """A peer gone before our answer reached it: nothing to do for a standby."""
