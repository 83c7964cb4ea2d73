"""How an agent or a framework leaves the master's record — the steps every way of leaving
shares (an agent unregistering, found silent, rebooted; a framework torn down, failed over for
good, disconnected), so each flow names the departure and this module takes the steps, in the
same order every time.

Mesos semantics: PARTITION_AWARE frameworks get the precise state of a departed agent's tasks,
others TASK_LOST; every connected framework hears the agent's loss (``FAILURE``); offers never
survive a disconnect; a disconnected framework's tasks wait ``failover_timeout``.
"""

from __future__ import annotations

from tepui.master.events import CancelTimer, FailoverExpired, Log, MasterEffect, ScheduleTimer, Send
from tepui.master.offering.offer_book import OfferBook
from tepui.master.tasks.pending_acks import PendingAcks
from tepui.master.offering.pool import Pool
from tepui.master.records import AgentRecord, FrameworkRecord
from tepui.master.durability.registry import FRAMEWORKS, Persist
from tepui.master.members.roster import Roster
from tepui.master.failures.task_audit import TaskAudits
from tepui.master.tasks.task_ends import TaskEnds
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import TaskReason, TaskState


class Departures:
    def __init__(self, roster: Roster, offers: OfferBook, tasks: TaskEnds, pool: Pool, audits: TaskAudits,
                 pending_acks: PendingAcks) -> None:
        self._roster = roster
        self._offers = offers
        self._tasks = tasks
        self._pool = pool
        self._audits = audits
        self._pending_acks = pending_acks

    def remove_agent(
        self, agent: AgentRecord, state: TaskState, reason: TaskReason, message: str, now: float,
        out: list[MasterEffect], level: str = "warning",
    ) -> None:
        """Mesos: PARTITION_AWARE frameworks get the precise state; others get TASK_LOST."""
        roster = self._roster
        for offer_id in list(agent.offers):
            self._offers.rescind(offer_id, now, out, recover=False)
        for task in list(agent.tasks.values()):
            framework = roster.frameworks.get(task.framework_id)
            task_state = state if framework is not None and framework.partition_aware else TaskState.LOST
            self._tasks.master_update(task, task_state, reason, message, now, out)
        for framework in roster.connected_frameworks():
            out.append(Send(framework.peer or b"", sm.Failure(agent_id=agent.agent_id)))
        self._pool.allocator.remove_agent(agent.agent_id)
        self._audits.forget_agent(agent.agent_id)
        self._pending_acks.forget_agent(agent.agent_id)
        roster.remove_agent(agent)
        out.append(Log(level, "agent_removed", {"agent_id": agent.agent_id, "reason": message}))

    def remove_framework(self, framework: FrameworkRecord, why: str, now: float, out: list[MasterEffect]) -> None:
        roster = self._roster
        for offer_id in list(framework.offers):
            self._offers.rescind(offer_id, now, out, notify=False)
        agents_to_tell = {task.agent_id for task in framework.tasks.values()}
        for task in list(framework.tasks.values()):
            self._tasks.finish(task, TaskState.KILLED, now)
        for agent_id in sorted(agents_to_tell):
            agent = roster.agents.get(agent_id)
            if agent is not None:
                out.append(Send(agent.peer, am.ShutdownFramework(framework.framework_id)))
        self._pool.allocator.remove_framework(framework.framework_id)
        self._pending_acks.forget_framework(framework.framework_id)
        roster.remove_framework(framework)
        out.append(Persist(FRAMEWORKS, framework.framework_id, None))
        out.append(CancelTimer(FailoverExpired(framework.framework_id)))
        out.append(Log("info", "framework_removed", {"framework_id": framework.framework_id, "reason": why}))

    def disconnect_framework(self, framework: FrameworkRecord, now: float, out: list[MasterEffect]) -> None:
        """Mesos: offers never survive a disconnect; tasks wait ``failover_timeout``."""
        self._roster.disconnect_framework(framework, now)
        for offer_id in list(framework.offers):
            self._offers.rescind(offer_id, now, out, notify=False)
        self._pool.allocator.deactivate_framework(framework.framework_id)
        out.append(ScheduleTimer(now + framework.info.failover_timeout, FailoverExpired(framework.framework_id)))
        out.append(Log("warning", "framework_disconnected", {
            "framework_id": framework.framework_id, "failover_timeout": framework.info.failover_timeout,
        }))
