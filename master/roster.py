"""Who the master knows: its agents and frameworks, the connection each speaks on, the
frameworks it removed, and the ids it issues — a component of
:class:`tepui.master.core.MasterCore` that owns that state.

Why one component: every flow asks the same questions ("which agent is this peer?", "is this
caller the connection the framework subscribed on?") and changes membership the same way, so
the answers live once, here, beside the maps they read. The records themselves
(:mod:`tepui.master.records`) are plain mutable values that the flows update in place; the
maps are never rebound, so a component given one of them (the gatekeeper reads ``peers`` and
``frameworks``) always sees the current state.
"""

from __future__ import annotations

import collections
from typing import Iterator

from tepui.master.events import MasterEffect, Send
from tepui.master.records import AgentRecord, FrameworkRecord
from tepui.master.refusals import shown
from tepui.sdk.protocol import scheduler as sm


class Roster:
    def __init__(self, master_id: str, max_completed_frameworks: int) -> None:
        self.agents: dict[str, AgentRecord] = {}
        self.frameworks: dict[str, FrameworkRecord] = {}
        self.completed_frameworks: collections.deque[FrameworkRecord] = collections.deque(
            maxlen=max_completed_frameworks)
        self.peers: dict[bytes, tuple[str, str]] = {}  # peer → ("agent"|"framework", id)
        self._master_id = master_id
        self._seq = collections.Counter[str]()

    def next_id(self, kind: str) -> str:
        """``<master id>-<kind><n>``: S for agents, F for frameworks, O for offers."""
        self._seq[kind] += 1
        return f"{self._master_id}-{kind}{self._seq[kind]:04d}"

    def agent_by_peer(self, peer: bytes) -> AgentRecord | None:
        known = self.peers.get(peer)
        if known and known[0] == "agent":
            return self.agents.get(known[1])
        return None

    def connected_frameworks(self) -> Iterator[FrameworkRecord]:
        """The frameworks subscribed now, each with the connection it speaks on."""
        return (f for f in self.frameworks.values() if f.active and f.peer is not None)

    def framework_for(self, peer: bytes, framework_id: str, out: list[MasterEffect],
                      field: str = "$.body.framework_id") -> FrameworkRecord | None:
        """The caller must be the connection the framework subscribed on."""
        framework = self.frameworks.get(framework_id)
        if framework is None:
            out.append(Send(peer, sm.Error(f"framework {shown(framework_id)} is not subscribed; send SUBSCRIBE first",
                                           field=field)))
            return None
        if framework.peer != peer:
            out.append(Send(peer, sm.Error(
                f"framework {shown(framework_id)} is subscribed on another connection; re-subscribe to take over"
            )))
            return None
        return framework

    def was_removed(self, framework_id: str) -> bool:
        return any(f.framework_id == framework_id for f in self.completed_frameworks)
