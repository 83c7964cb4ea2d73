"""Failure detection, the flow: pings, an agent found silent queued and marked unreachable at
the removal rate, an unreachable agent becoming gone, and the end of the re-registration
window after a failover. The state is the :class:`~tepui.master.failures.partitions.PartitionTracker`
(its module docstring gives the Mesos semantics and the numbers); the steps of an agent's
removal are :class:`~tepui.master.members.departures.Departures`'.
"""

from __future__ import annotations

from typing import MutableMapping

from tepui.master.failures.audit_flow import AuditFlow
from tepui.master.config import MasterConfig
from tepui.master.members.departures import Departures
from tepui.master.durability.durable import Recovery
from tepui.master.events import (
    Abort, AgentGone, Log, MasterEffect, PingAgents, RemovalSlot, ReregisterWindow, ScheduleTimer, Send,
)
from tepui.master.failures.partitions import PartitionTracker
from tepui.master.records import AgentRecord, UnreachableAgent
from tepui.master.durability.registry import AGENTS, Persist, agent_info_of
from tepui.master.members.roster import Roster
from tepui.master.failures.task_audit import TaskAudits
from tepui.master.tasks.task_ends import TaskEnds
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskReason, TaskState

class FailureDetector:
    def __init__(self, config: MasterConfig, counters: MutableMapping[str, int], roster: Roster,
                 partitions: PartitionTracker, recovery: Recovery, departures: Departures, tasks: TaskEnds,
                 audits: TaskAudits, audit_flow: AuditFlow) -> None:
        self._config = config
        self._counters = counters
        self._roster = roster
        self._partitions = partitions
        self._recovery = recovery
        self._departures = departures
        self._tasks = tasks
        self._audits = audits
        self._audit_flow = audit_flow

    @property
    def ping_interval(self) -> float:
        return self._partitions.ping_interval(len(self._roster.agents))

    @property
    def _silence_limit(self) -> float:
        return self._partitions.silence_limit(len(self._roster.agents))

    # --- pings ----------------------------------------------------------------------------

    def on_ping_timer(self, key: PingAgents, now: float, out: list[MasterEffect]) -> None:
        self.ping_agents(now, out)
        out.append(ScheduleTimer(now + self.ping_interval, PingAgents()))

    def ping_agents(self, now: float, out: list[MasterEffect]) -> None:
        """Application-level pings (ZMTP heartbeats only prove an I/O thread lives, so an agent
        whose main loop hangs with its socket up still answers those, never these). A silent
        agent is queued for removal and still pinged: a pong before its slot cancels it."""
        seq = self._partitions.next_ping()
        for agent in self._roster.agents.values():
            if now - agent.last_pong > self._silence_limit and not self._partitions.removal_queued(agent.agent_id):
                self._partitions.queue_removal(agent.agent_id, now)
        self.remove_due(now, out)
        self._audit_flow.retry_audits_and_kills(now, self.ping_interval, out)
        ping = am.Ping(seq, self.ping_interval)
        self._audits.pinged(seq)
        for agent in self._roster.agents.values():
            out.append(Send(agent.peer, ping))

    def on_pong(self, peer: bytes, msg: am.Pong, now: float, out: list[MasterEffect]) -> None:
        agent = self._roster.agent_by_peer(peer)
        if agent is not None:
            self.heard_from(agent, now, out)
            if self._audits.pong_disagrees(agent.agent_id, msg, agent.tasks):
                out.append(Log("info", "task_digest_mismatch", {
                    "agent_id": agent.agent_id, "agent_tasks": msg.tasks, "master_tasks": len(agent.tasks),
                    "action": "auditing the agent's tasks"}))
                self._audit_flow.audit(agent, now, out)

    def heard_from(self, agent: AgentRecord, now: float, out: list[MasterEffect]) -> None:
        agent.last_pong = now
        if self._partitions.cancel_removal(agent.agent_id):
            self._counters["agent_unreachable_canceled"] += 1
            out.append(Log("info", "agent_removal_canceled", {"agent_id": agent.agent_id, "reason": "answered again"}))

    # --- rate-limited removals ------------------------------------------------------------

    def on_removal_slot(self, key: RemovalSlot, now: float, out: list[MasterEffect]) -> None:
        self.remove_due(now, out)

    def remove_due(self, now: float, out: list[MasterEffect]) -> None:
        """Marks queued agents unreachable, first queued first, as fast as the removal rate
        allows; the next slot is a timer. An agent heard from meanwhile is not removed (and
        uses no slot)."""
        partitions = self._partitions
        while partitions.removals_waiting:
            slot = partitions.next_slot(now)
            if slot is not None:
                out.append(ScheduleTimer(slot, RemovalSlot()))
                return
            agent_id = partitions.pop_removal()
            agent = self._roster.agents.get(agent_id)
            if agent is not None:
                if now - agent.last_pong <= self._silence_limit:
                    self._counters["agent_unreachable_canceled"] += 1
                    out.append(Log("info", "agent_removal_canceled", {"agent_id": agent_id, "reason": "answered again"}))
                    continue
                self.mark_unreachable(agent, now, out)
            elif (info := self._recovery.take(agent_id)) is not None:
                out.append(Persist(AGENTS, agent_id, None))
                partitions.add_unreachable(agent_id, UnreachableAgent(info, now), now, out)
                out.append(Log("warning", "agent_unreachable", {
                    "agent_id": agent_id, "reason": "did not re-register within the re-registration window"}))
            else:
                continue  # it left (unregistered) or came back under another record meanwhile
            partitions.slot_used(now)
            self._counters["agent_unreachable_completed"] += 1

    def mark_unreachable(self, agent: AgentRecord, now: float, out: list[MasterEffect]) -> None:
        info = agent_info_of(agent)  # before removal: its total carries reservations and volumes
        self._departures.remove_agent(agent, TaskState.UNREACHABLE, TaskReason.AGENT_DISCONNECTED,
                                      f"agent answered no ping for {self._silence_limit:g} s", now, out)
        out.append(Persist(AGENTS, agent.agent_id, None))
        self._partitions.add_unreachable(agent.agent_id, UnreachableAgent(info, now), now, out)

    # --- gone agents ----------------------------------------------------------------------

    def on_agent_gone(self, key: AgentGone, now: float, out: list[MasterEffect]) -> None:
        """Unreachable for ``agent_gone_timeout``: the agent is gone for good. Its tasks end
        (TASK_GONE, or LOST for frameworks that are not PARTITION_AWARE, which already heard
        LOST), and it is refused if it ever comes back under its id."""
        if self._partitions.gone_due(key.agent_id, now):
            self.mark_gone(key.agent_id, f"unreachable for more than {self._config.agent_gone_timeout:g} s", now, out)

    def mark_gone(self, agent_id: str, why: str, now: float, out: list[MasterEffect]) -> None:
        """An unreachable agent is gone for good (also usable when the master learns it for
        certain, e.g. its host rebooted and registered as a new agent)."""
        unreachable = self._partitions.take_unreachable(agent_id, out)
        if unreachable is None:
            return
        self._partitions.add_gone(agent_id, now, out)
        message = f"agent {agent_id} is gone: {why}"
        for framework in self._roster.frameworks.values():
            state = TaskState.GONE if framework.partition_aware else TaskState.LOST
            for task in [t for t in framework.tasks.values() if t.agent_id == agent_id]:
                self._tasks.master_update(task, state, TaskReason.AGENT_REMOVED, message, now, out)
        self._counters["agents_gone"] += 1
        out.append(Log("warning", "agent_gone", {"agent_id": agent_id, "reason": why,
                                                 "unreachable_since": unreachable.since}))

    # --- the end of the re-registration window --------------------------------------------

    def on_reregister_window(self, key: ReregisterWindow, now: float, out: list[MasterEffect]) -> None:
        """Mesos: agents the registry knew that did not re-register within
        ``agent_reregister_timeout`` of a failover are marked unreachable (at the removal rate).
        If more than ``recovery_agent_removal_limit`` percent of them are missing, the master
        exits instead: so many silent agents more likely means this master is cut off, and
        removing them would tell every framework its tasks are unreachable."""
        missing = self._recovery.missing()
        if not missing:
            return
        config, count = self._config, self._recovery.recovered_count
        share = 100.0 * len(missing) / max(1, count, len(missing))
        if share > config.recovery_agent_removal_limit:
            out.append(Abort(
                f"{len(missing)} of the {count} agents in the registry ({share:.0f}%) did not "
                f"re-register within {config.agent_reregister_timeout:g} s of this master starting, more than "
                f"--recovery-agent-removal-limit ({config.recovery_agent_removal_limit:g}%) allows; exiting "
                "rather than marking them unreachable. Check that those agents are running and can reach the "
                "master, then restart it; to remove them anyway, raise --recovery-agent-removal-limit."))
            return
        for agent_id in missing:
            self._partitions.queue_removal(agent_id, now)
        self.remove_due(now, out)
