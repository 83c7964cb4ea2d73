"""Who the master knows: its agents and frameworks, the connection each speaks on, the
frameworks it removed, and the ids it issues — a component of
:class:`tepui.master.core.MasterCore` that owns that state.

Why one component: every flow asks the same questions ("which agent is this peer?", "is this
caller the connection the framework subscribed on?") and changes membership the same way, so
the answers live once, here, beside the maps they read. Membership changes only through the
roster's methods (an agent or a framework added, moved to a new connection, disconnected,
removed), which keep ``peers`` in step with the records; the records themselves
(:mod:`tepui.master.records`) are plain mutable values that the flows update in place (a
task's state, an agent's total). The maps are never rebound, so a component given one of them
to read (the gatekeeper reads ``peers`` and ``frameworks``) always sees the current state.
"""

from __future__ import annotations

import collections
from typing import Iterator

from tepui.master.events import MasterEffect, Send
from tepui.master.records import AgentRecord, FrameworkRecord
from tepui.master.admission.refusals import shown
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

    # --- membership -------------------------------------------------------------------------

    def add_agent(self, agent: AgentRecord) -> None:
        self.agents[agent.agent_id] = agent
        self.peers[agent.peer] = ("agent", agent.agent_id)

    def move_agent(self, agent: AgentRecord, peer: bytes) -> None:
        """The agent speaks on a new connection now (it re-registered on it)."""
        if agent.peer != peer:
            self.peers.pop(agent.peer, None)
            agent.peer = peer
            self.peers[peer] = ("agent", agent.agent_id)

    def remove_agent(self, agent: AgentRecord) -> None:
        self.agents.pop(agent.agent_id, None)
        self.peers.pop(agent.peer, None)

    def add_framework(self, framework: FrameworkRecord) -> None:
        """A framework known (subscribed, recovered from the registry, or only reported by an agent)."""
        self.frameworks[framework.framework_id] = framework

    def connect_framework(self, framework: FrameworkRecord, peer: bytes) -> None:
        """The framework is subscribed on ``peer`` (a connection it had before is forgotten)."""
        if framework.peer is not None and framework.peer != peer:
            self.peers.pop(framework.peer, None)
        framework.peer, framework.active, framework.disconnected_at = peer, True, None
        self.peers[peer] = ("framework", framework.framework_id)

    def disconnect_framework(self, framework: FrameworkRecord, now: float) -> None:
        """Its connection is gone; the framework stays, inactive, for its failover timeout."""
        framework.active = False
        framework.disconnected_at = now
        self.peers.pop(framework.peer or b"", None)
        framework.peer = None

    def remove_framework(self, framework: FrameworkRecord) -> None:
        """Removed for good: it is remembered among the completed frameworks (``/state``, and
        a SUBSCRIBE under its id is refused)."""
        self.frameworks.pop(framework.framework_id, None)
        if framework.peer is not None:
            self.peers.pop(framework.peer, None)
        framework.active = False
        framework.peer = None
        self.completed_frameworks.append(framework)

    # --- questions --------------------------------------------------------------------------

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
