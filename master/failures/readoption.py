"""An agent's word on its tasks becomes the master's record: what a re-registering agent
reports, and what it answers an audit (``TASK_AUDIT``). The agent is the source of truth for
tasks (DESIGN §6); this flow adopts what it holds, ends what ended there, audits what it did not
report, and shuts down the frameworks that were removed meanwhile. Stateless: it works on the
:class:`~tepui.master.members.roster.Roster`'s records and the allocator's accounting (through the
:class:`~tepui.master.offering.pool.Pool`).
"""

from __future__ import annotations

from typing import MutableMapping

from tepui.master.failures.audit_flow import AuditFlow
from tepui.master.events import Log, MasterEffect, Send
from tepui.master.admission.validation import task_resources
from tepui.master.offering.pool import Pool
from tepui.master.records import AgentRecord, FrameworkRecord, TaskRecord
from tepui.master.members.roster import Roster
from tepui.master.failures.task_audit import TaskAudits
from tepui.master.tasks.task_ends import TaskEnds, update_to
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import FrameworkInfo, TaskReason, TaskState
from tepui.sdk.resources import EMPTY


class Readoption:
    def __init__(self, counters: MutableMapping[str, int], roster: Roster, pool: Pool, tasks: TaskEnds,
                 audits: TaskAudits, audit_flow: AuditFlow) -> None:
        self._counters = counters
        self._roster = roster
        self._pool = pool
        self._tasks = tasks
        self._audits = audits
        self._audit_flow = audit_flow

    def placeholder_framework(self, framework_id: str, frameworks: list[FrameworkInfo],
                              now: float) -> FrameworkRecord:
        """A framework known only from an agent's report waits, inactive, for its re-subscribe."""
        info = next((f for f in frameworks if f.id == framework_id), None)
        if info is None:
            info = FrameworkInfo(user="", name="", id=framework_id)
        record = FrameworkRecord(framework_id, info, None, now, active=False, disconnected_at=now)
        self._roster.add_framework(record)
        self._pool.allocator.add_framework(framework_id, info.roles)
        self._pool.allocator.deactivate_framework(framework_id)
        return record

    def reconcile_unreported(self, agent: AgentRecord, reported: set[tuple[str, str]], was_unreachable: bool,
                             now: float, out: list[MasterEffect]) -> None:
        """Tasks the master placed on a re-registering agent that it did not report: a RUN_TASK
        lost on the way, or one still on its way (the agent re-registered before it arrived).
        Declaring them lost here would be wrong in the second case, so the master audits the
        agent (Mesos sends ``ReconcileTasksMessage`` once; here the audit is asked again until
        answered, see master/failures/task_audit.py): messages to it arrive in order, so it answers
        TASK_DROPPED only for a task it never received. Tasks of an agent that was unreachable
        are put back on it first, with their resources, so the answer frees them."""
        if was_unreachable:
            for framework in self._roster.frameworks.values():
                for task in framework.tasks.values():
                    key = (task.framework_id, task.task_id)
                    if task.agent_id == agent.agent_id and key not in reported and key not in agent.tasks:
                        self._hold_on_agent(agent, key, task, out)
        unreported: dict[str, list[str]] = {}
        for framework_id, task_id in agent.tasks:
            if (framework_id, task_id) not in reported:
                unreported.setdefault(framework_id, []).append(task_id)
        for framework_id, task_ids in unreported.items():
            out.append(Log("warning", "tasks_unknown_to_agent", {
                "agent_id": agent.agent_id, "framework_id": framework_id, "task_ids": ",".join(task_ids),
                "action": "auditing the agent"}))
        if unreported:
            self._audit_flow.audit(agent, now, out)

    def on_task_audit(self, peer: bytes, msg: am.TaskAudit, now: float, out: list[MasterEffect]) -> None:
        """The agent's answer to an audit: its tasks become the master's record (see
        :meth:`adopt_reports`); asked tasks that ended there long ago (their final update
        acknowledged) end here too, and the framework hears that end again (a reconciliation
        answer: it may have been told UNREACHABLE since)."""
        agent = self._roster.agent_by_peer(peer)
        if agent is None:
            self._counters["task_audit_answers_from_unknown_agents"] += 1
            return
        self._audits.answered(agent.agent_id, msg.seq)
        self.adopt_reports(agent, msg.tasks, [], now, out, TaskReason.RECONCILIATION, "its agent reports it")
        for report in msg.ended:
            task = agent.tasks.get((report.framework_id, report.task.task_id))
            if task is not None and report.state.is_terminal:
                self._counters["tasks_ended_by_audit"] += 1
                self._tasks.master_update(task, report.state, TaskReason.RECONCILIATION,
                                    "the task ended on its agent and its final update was acknowledged", now, out)

    def adopt_reports(self, agent: AgentRecord, reports: list[am.TaskReport], frameworks: list[FrameworkInfo],
                      now: float, out: list[MasterEffect], reason: TaskReason = TaskReason.AGENT_REREGISTERED,
                      why: str = "its agent re-registered") -> set[tuple[str, str]]:
        """What an agent says it holds (re-registering, or answering an audit) becomes the
        master's record; the agent is the source of truth for tasks (DESIGN §6). Ended tasks
        whose final update is on its way return their resources now. A task the master held
        as UNREACHABLE takes the reported state and its framework hears it. A task the master
        did not hold is adopted, except one of a framework that was removed (its
        SHUTDOWN_FRAMEWORK was lost: sent again) and, for a framework that is not
        PARTITION_AWARE, one it was told was LOST (killed)."""
        peer, agent_id = agent.peer, agent.agent_id
        reported: set[tuple[str, str]] = set()
        removed = {f.framework_id for f in self._roster.completed_frameworks} - set(self._roster.frameworks)
        shut_down: set[str] = set()
        for report in reports:
            key = (report.framework_id, report.task.task_id)
            reported.add(key)
            if report.framework_id in removed:
                removed.discard(report.framework_id)  # told once, however many tasks it reports
                shut_down.add(report.framework_id)
                self._counters["shutdown_framework_resent"] += 1
                out.append(Send(peer, am.ShutdownFramework(report.framework_id)))
                out.append(Log("warning", "tasks_of_removed_framework", {
                    "agent_id": agent_id, "framework_id": report.framework_id, "action": "shutting it down"}))
                continue
            if report.framework_id in shut_down:
                continue
            if report.state.is_terminal:
                self._ended_on_agent(agent, report, frameworks, now)
                continue
            known = agent.tasks.get(key)
            if known is not None:
                if known.state == TaskState.UNREACHABLE:
                    known.state = report.state
                    known.record(report.state, now)
                    framework = self._roster.frameworks.get(report.framework_id)
                    if framework is not None and framework.peer is not None:
                        out.append(update_to(framework, known.task_id, agent_id, report.state, reason, why, now))
                continue
            resources, _ = task_resources(report.task)
            framework = self._roster.frameworks.get(report.framework_id)
            if framework is None:
                framework = self.placeholder_framework(report.framework_id, frameworks, now)
            role = framework.info.roles[0] if framework.info.roles else "*"
            task = TaskRecord(report.framework_id, agent_id, report.task, resources or EMPTY, role, report.state)
            task.launched_at = now
            previous = framework.tasks.get(task.task_id)
            framework.tasks[task.task_id] = task
            if previous is not None and previous.state == TaskState.UNREACHABLE and framework.peer is not None:
                # Mesos partition awareness: the task is back, with the state its agent reports.
                out.append(update_to(framework, task.task_id, agent_id, report.state, reason, why, now))
            elif previous is None and not framework.partition_aware and any(
                    t.task_id == task.task_id and t.agent_id == agent_id and t.state == TaskState.LOST
                    for t in framework.completed):
                # Mesos: the framework was told LOST and has likely replaced the task; a framework
                # that is not partition aware cannot take it back, so it is killed (its KILLED
                # update follows the LOST one).
                out.append(Send(peer, am.KillTask(report.framework_id, task.task_id)))
                out.append(Log("info", "task_killed_after_partition", {"task_id": task.task_id, "agent_id": agent_id}))
            self._hold_on_agent(agent, key, task, out)
        return reported

    def _hold_on_agent(self, agent: AgentRecord, key: tuple[str, str], task: TaskRecord,
                       out: list[MasterEffect]) -> None:
        """The task is on the agent again, holding its resources there — unless they no longer
        fit (the agent came back smaller, or holds tasks the master thought ended): then it is
        held without resources, counted, and its end returns nothing. A chaos run overcommitted
        an agent this way and the handler raised half-way, leaving tasks UNREACHABLE for good."""
        agent.tasks[key] = task
        if not task.resources:
            return
        if self._pool.allocator.available(agent.agent_id).contains(task.resources):
            self._pool.allocator.allocate_used(agent.agent_id, task.framework_id, task.role, task.resources)
            return
        self._counters["tasks_held_without_resources"] += 1
        out.append(Log("warning", "task_held_without_resources", {
            "agent_id": agent.agent_id, "framework_id": key[0], "task_id": key[1], "resources": str(task.resources),
            "available": str(self._pool.allocator.available(agent.agent_id))}))
        task.resources = EMPTY

    def _ended_on_agent(self, agent: AgentRecord, report: am.TaskReport, frameworks: list[FrameworkInfo],
                        now: float) -> None:
        """A task that ended on a re-registering agent whose final update is not acknowledged
        yet (it is on its way): its resources return now, and a reconciliation answers its real
        end rather than "unknown" (which the framework would take for a launch that was lost)."""
        key = (report.framework_id, report.task.task_id)
        task = agent.tasks.get(key)
        if task is not None:
            self._tasks.finish(task, report.state, now)
            return
        framework = self._roster.frameworks.get(report.framework_id)
        if framework is None:
            framework = self.placeholder_framework(report.framework_id, frameworks, now)
        held = framework.tasks.get(report.task.task_id)
        if held is not None:
            if held.agent_id == agent.agent_id:
                # Held (UNREACHABLE) while this agent was away, so on no agent record and holding
                # no resources: it ended there. Left held, reconciliation answered UNREACHABLE
                # for a FINISHED task, and the agent's next return put it back on the agent with
                # its resources (overcommitting the agent) and had the agent answer DROPPED.
                self._tasks.finish(held, report.state, now)
            return
        if any(t.task_id == report.task.task_id for t in framework.completed):
            return
        role = framework.info.roles[0] if framework.info.roles else "*"
        ended = TaskRecord(report.framework_id, agent.agent_id, report.task, EMPTY, role, report.state)
        ended.launched_at = now
        framework.completed.append(ended)
