"""Agents joining, returning and leaving: REGISTER_AGENT, REREGISTER_AGENT, UNREGISTER_AGENT,
the fencing of a replaced agent process, and an agent whose host rebooted.

A returning agent is admitted under its id with the resources the registry kept (they carry
dynamic reservations and volumes), its tasks rebuilt from its report
(:mod:`tepui.master.failures.readoption`); a gone agent is refused (:mod:`tepui.master.failures.partitions`).
Why a flow of its own: these handlers touch most components — the roster, the allocator, the
partition tracker, the recovery, the failure detector (an agent heard from) — and receive each
of them explicitly.
"""

from __future__ import annotations

from typing import MutableMapping

import msgspec

from tepui.master.admission.peer_checks import agent_refused
from tepui.master.members.departures import Departures
from tepui.master.durability.durable import Recovery
from tepui.master.events import Log, MasterEffect, Received, Send
from tepui.master.failures.failure_detection import FailureDetector
from tepui.master.failures.partitions import PartitionTracker
from tepui.master.offering.pool import Pool
from tepui.master.failures.readoption import Readoption
from tepui.master.records import AgentRecord
from tepui.master.durability.registry import AGENTS, Persist, agent_entry, agent_info_of
from tepui.master.members.roster import Roster
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import AgentInfo, MasterInfo, Resource, TaskReason, TaskState
from tepui.sdk.resources import Resources


class AgentMembership:
    def __init__(self, master_info: MasterInfo, counters: MutableMapping[str, int], roster: Roster, pool: Pool,
                 partitions: PartitionTracker, recovery: Recovery, departures: Departures,
                 detector: FailureDetector, readoption: Readoption) -> None:
        self._master_info = master_info
        self._counters = counters
        self._roster = roster
        self._pool = pool
        self._partitions = partitions
        self._recovery = recovery
        self._departures = departures
        self._detector = detector
        self._readoption = readoption

    # --- fencing --------------------------------------------------------------------------

    def older_incarnation(self, event: Received, out: list[MasterEffect]) -> bool:
        """Fencing (DESIGN §6): a re-registration queued by an agent process that has since been
        replaced (ZeroMQ delivers what a dead process's socket had queued) must not take the
        agent's route back to a dead connection. Incarnations start with the process's start
        time, so they order; an older one is dropped and counted."""
        if not isinstance(event.body, am.ReregisterAgent) or event.incarnation is None:
            return False
        agent = self._roster.agents.get(event.body.agent_info.id or "")
        if agent is None or agent.incarnation is None or event.incarnation >= agent.incarnation:
            return False
        self._counters["stale_incarnation_messages"] += 1
        out.append(Log("warning", "stale_incarnation_dropped", {
            "agent_id": agent.agent_id, "incarnation": event.incarnation, "current": agent.incarnation}))
        return True

    # --- joining --------------------------------------------------------------------------

    def on_register(self, peer: bytes, msg: am.RegisterAgent, incarnation: str | None, now: float,
                    out: list[MasterEffect]) -> None:
        if agent_refused(peer, msg.agent_info, False, self._counters, out):
            return
        roster = self._roster
        known = roster.peers.get(peer)
        if known and known[0] == "agent" and known[1] in roster.agents:
            # A retried registration from the same connection: answer again, change nothing.
            agent = roster.agents[known[1]]
        else:
            if msg.previous_agent_id:
                self._forget_rebooted(msg.previous_agent_id, now, out)
            agent_id = roster.next_id("S")
            agent = self._admit(agent_id, peer, msg.agent_info, msg.version, now)
            agent.reported = agent.total
            agent.incarnation = incarnation
            out.append(agent_entry(agent))
            out.append(Log("info", "agent_registered", {"agent_id": agent_id, "hostname": agent.hostname}))
        out.append(
            Send(peer, am.AgentRegistered(agent.agent_id, self._master_info, self._detector.ping_interval))
        )

    def _admit(self, agent_id: str, peer: bytes, info: AgentInfo, version: str, now: float) -> AgentRecord:
        total = Resources.from_wire(info.resources)
        agent = AgentRecord(
            agent_id=agent_id,
            peer=peer,
            hostname=info.hostname,
            total=total,
            attributes=dict(info.attributes),
            version=version,
            registered_at=now,
            last_pong=now,
            http_port=info.http_port,
            address=info.address,
            http_tls=info.http_tls,
            task_user=info.task_user,
        )
        self._roster.add_agent(agent)
        self._pool.allocator.add_agent(agent_id, total)
        self._pool.request_allocation()
        return agent

    # --- returning ------------------------------------------------------------------------

    def on_reregister(self, peer: bytes, msg: am.ReregisterAgent, incarnation: str | None, now: float,
                      out: list[MasterEffect]) -> None:
        if agent_refused(peer, msg.agent_info, True, self._counters, out):
            return
        agent_id = msg.agent_info.id or ""
        if agent_id in self._partitions.gone:
            self._partitions.refuse_gone(peer, agent_id, now, out)
            return
        roster = self._roster
        agent = roster.agents.get(agent_id)
        was_unreachable = False
        if agent is None:
            # Unknown id: the master restarted (or marked the agent unreachable). The agent is
            # the source of truth for its tasks, so admit it under its id and rebuild its tasks.
            # The registry's copy of its resources wins: it carries reservations and volumes.
            info = msg.agent_info
            kept, was_unreachable = self._kept_agent_info(agent_id, now, out)
            if kept is not None:
                info = msgspec.structs.replace(info, resources=_readmitted_resources(kept, msg.agent_info))
            agent = self._admit(agent_id, peer, info, msg.version, now)
            agent.incarnation = incarnation
            agent.reported = Resources.from_wire(msg.agent_info.resources) if kept is None or \
                not Resources.from_wire(kept.resources).has_reservations else None
            if was_unreachable or kept is None or agent_info_of(agent) != kept:
                # After a failover every agent re-registers at once, most of them exactly as the
                # registry holds them: rewriting 1,000 identical entries would be 1,000 store
                # round trips on the new leader's reactor (ZooKeeper) before it is back.
                out.append(agent_entry(agent))
            out.append(Log("info", "agent_readmitted", {"agent_id": agent_id, "tasks": len(msg.tasks)}))
        else:
            roster.move_agent(agent, peer)
            self._detector.heard_from(agent, now, out)
            agent.incarnation = incarnation or agent.incarnation
            agent.http_port, agent.address = msg.agent_info.http_port, msg.agent_info.address
            agent.http_tls = msg.agent_info.http_tls
            agent.task_user = msg.agent_info.task_user
            self._grow_agent(agent, Resources.from_wire(msg.agent_info.resources), out)
            self._pool.allocator.activate_agent(agent_id)
            out.append(Log("info", "agent_reregistered", {"agent_id": agent_id}))
        reported = self._readoption.adopt_reports(agent, msg.tasks, msg.frameworks, now, out)
        self._readoption.reconcile_unreported(agent, reported, was_unreachable, now, out)
        out.append(
            Send(peer, am.AgentReregistered(agent_id, self._master_info, self._detector.ping_interval))
        )

    def _kept_agent_info(self, agent_id: str, now: float, out: list[MasterEffect]) -> tuple[AgentInfo | None, bool]:
        """What the registry kept of a re-registering agent the master does not hold (it was
        recovered after a failover, or is unreachable), and whether it was unreachable."""
        kept = self._recovery.take(agent_id)
        if kept is not None:
            return kept, False
        unreachable = self._partitions.take_unreachable(agent_id, out)
        if unreachable is None:
            return None, False
        self._counters["agents_reachable_again"] += 1
        out.append(Log("info", "agent_reachable_again", {
            "agent_id": agent_id, "unreachable_seconds": round(now - unreachable.since, 1)}))
        return unreachable.info, True

    def _grow_agent(self, agent: AgentRecord, reported: Resources, out: list[MasterEffect]) -> None:
        """The agent re-registers offering more than before (``--reconfiguration-policy
        additive``): the extra joins its total (and the registry). Anything else (the same, or
        less, which the agent's own policy refuses anyway) changes nothing: its total carries
        reservations and volumes the master made."""
        if agent.reported is None or reported == agent.reported or not reported.contains(agent.reported):
            return
        extra = reported - agent.reported
        agent.total = agent.total + extra
        agent.reported = reported
        self._pool.allocator.grow_agent(agent.agent_id, extra)
        out.append(agent_entry(agent))
        out.append(Log("info", "agent_resources_grown", {"agent_id": agent.agent_id, "extra": str(extra)}))
        self._pool.request_allocation()

    # --- leaving --------------------------------------------------------------------------

    def on_unregister(self, peer: bytes, msg: am.UnregisterAgent, now: float, out: list[MasterEffect]) -> None:
        agent = self._roster.agent_by_peer(peer)
        if agent is not None and agent.agent_id == msg.agent_id:
            self._departures.remove_agent(agent, TaskState.GONE, TaskReason.AGENT_REMOVED, "agent unregistered",
                                          now, out, level="info")
            out.append(Persist(AGENTS, agent.agent_id, None))

    def _forget_rebooted(self, agent_id: str, now: float, out: list[MasterEffect]) -> None:
        """An agent registers anew after its host rebooted (Mesos: a new boot id means a new
        agent): its old incarnation is gone for certain, and so are its tasks — TASK_GONE at
        once (LOST for frameworks that are not PARTITION_AWARE), not after the detection time."""
        why = "its host rebooted and it registered as a new agent"
        old = self._roster.agents.get(agent_id)
        if old is None and agent_id in self._recovery.recovered_agents:
            # Known from the registry after a failover, never re-registered: gone now, not
            # unreachable when the re-registration window closes.
            self._recovery.take(agent_id)
            out.append(Persist(AGENTS, agent_id, None))
            self._partitions.add_gone(agent_id, now, out)
            self._counters["agents_gone"] += 1
            out.append(Log("warning", "agent_gone", {"agent_id": agent_id, "reason": why}))
        elif old is not None:
            self._departures.remove_agent(old, TaskState.GONE, TaskReason.AGENT_RESTARTED,
                                          f"agent {agent_id} is gone: {why}", now, out)
            out.append(Persist(AGENTS, agent_id, None))
            self._partitions.add_gone(agent_id, now, out)
            self._counters["agents_gone"] += 1
            out.append(Log("warning", "agent_gone", {"agent_id": agent_id, "reason": why}))
        else:
            self._detector.mark_gone(agent_id, why, now, out)


def _readmitted_resources(kept: AgentInfo, reported: AgentInfo) -> list[Resource]:
    """The registry's copy of a returning agent's resources wins (it carries reservations and
    volumes), unless it holds none and the agent now offers a superset: then it grew."""
    before, now = Resources.from_wire(kept.resources), Resources.from_wire(reported.resources)
    if not before.has_reservations and now.contains(before):
        return list(reported.resources)
    return list(kept.resources)
