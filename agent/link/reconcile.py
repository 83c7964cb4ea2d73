"""The agent's answers to the master's ``RECONCILE_TASKS`` (Mesos ``Slave::reconcileTasks``) and
``AUDIT_TASKS`` (issue 14's anti-entropy, see master/failures/task_audit.py), and what its pongs report.

After a re-registration the master asks (``AUDIT_TASKS``; ``RECONCILE_TASKS`` is still answered,
for Mesos compatibility) about tasks it placed on this agent that the agent did not report. Messages from the master arrive in order, so by the time the question is
handled any RUN_TASK the master sent before it has been handled too: a task the agent knows
(running, or ended with its update still waiting for an ack) needs no answer — its updates
flow as usual; a task it has never seen was lost on the way and is answered TASK_DROPPED
(TASK_LOST for frameworks that are not PARTITION_AWARE), reason RECONCILIATION, through the
reliable status update manager, so the master frees its resources and the framework learns.

The agent then remembers the task as ended, so that a RUN_TASK for it arriving late (queued
somewhere across a reconnection) is refused as a duplicate instead of starting a task the
framework was told never ran.

An audit asks about every task the master holds on this agent, again and again until it is
answered, so the answer must be complete and safe to give twice: the tasks this agent holds
(as a re-registration reports them), the end of asked tasks whose final update was already
acknowledged (the master's record may be UNREACHABLE since), TASK_DROPPED for asked ids never
seen, and the final update of asked tasks still waiting for an acknowledgement sent again at
once (the same UUID: a retry, not a second end), so that the master need not wait for the
retry backoff (up to ten minutes).

The :class:`Reconciler` answers with the components it reads given to it; ``task_reports`` and
``held_for_master`` are also what re-registration and pongs report.
"""

from __future__ import annotations

from dataclasses import dataclass

from tepui.agent.events import AgentEffect, SendToMaster, TaskKey
from tepui.agent.frameworks import Frameworks
from tepui.agent.link.registration import Registration
from tepui.agent.updates.reporting import StatusReporter
from tepui.agent.updates.status_updates import StatusUpdateQueue
from tepui.agent.tasks import TaskRecord, TaskTable
from tepui.sdk.effects import Log
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import FrameworkInfo, TaskInfo, TaskReason, TaskSource, TaskState, TaskStatus


@dataclass(eq=False)
class Reconciler:
    work_dir: str
    registration: Registration
    tasks: TaskTable
    frameworks: Frameworks
    updates: StatusUpdateQueue[SendToMaster]
    reporter: StatusReporter

    def reconcile(self, msg: am.ReconcileTasks, now: float, out: list[AgentEffect]) -> None:
        self._drop_unknown(msg.framework_id, msg.task_ids, msg.framework_info, now, out)

    def audit(self, msg: am.AuditTasks, now: float, out: list[AgentEffect]) -> None:
        infos = {info.id: info for info in msg.frameworks if info.id}
        ended: list[am.TaskReport] = []
        for framework_id, task_ids in msg.tasks.items():
            if self.frameworks.is_shutting_down(framework_id):
                continue
            for task_id in task_ids:
                key = (framework_id, task_id)
                if key in self.updates:
                    self.reporter.resend(key, now, out)  # its update, again now rather than at its retry
                elif key not in self.tasks.running:
                    record = self.tasks.completed.newest(key)
                    if record is not None:
                        ended.append(am.TaskReport(framework_id, record.info, record.state))
            self._drop_unknown(framework_id, task_ids, infos.get(framework_id), now, out)
        out.append(SendToMaster(am.TaskAudit(msg.seq, self.task_reports(), ended)))

    def task_reports(self) -> list[am.TaskReport]:
        """Every task this agent runs, and every ended one whose final update is not acknowledged
        yet (Mesos re-registration): a master learns the truth about both, not "unknown"."""
        reported = [t for t in self.tasks.running.values() if not self.frameworks.is_shutting_down(t.framework_id)]
        return [am.TaskReport(t.framework_id, t.info, t.state) for t in reported + self._ended_unacknowledged()]

    def _ended_unacknowledged(self) -> list[TaskRecord]:
        """Ended tasks whose updates still wait for an acknowledgement, newest record each."""
        waiting = {key for key in self.updates if key not in self.tasks.running}
        found: dict[TaskKey, TaskRecord] = {}
        for record in reversed(self.tasks.completed):
            key = (record.framework_id, record.info.task_id)
            if key in waiting and key not in found:
                found[key] = record
        return list(found.values())

    def held_for_master(self) -> list[TaskKey]:
        """The tasks the master should hold as not ended, for the pong's digest: those running
        here, and ended ones whose final update has not left yet (it waits behind an earlier
        update of the task that is not acknowledged), less those of frameworks being shut down
        (the master already dropped them). A final update leaves as it becomes the head of its
        task's queue and reaches the master before any later pong, so only a lost one makes the
        two disagree; counting only running tasks made busy agents disagree at every other pong."""
        held = [key for key in self.tasks.running if not self.frameworks.is_shutting_down(key[0])]
        held.extend(key for key, waiting in self.updates.items()
                     if key not in self.tasks.running and not waiting.queue[0].state.is_terminal)
        return held

    def _drop_unknown(self, framework_id: str, task_ids: list[str], info: FrameworkInfo | None, now: float,
                      out: list[AgentEffect]) -> None:
        """Asked ids this agent has never seen were lost on the way: TASK_DROPPED (TASK_LOST for
        frameworks that are not PARTITION_AWARE), reason RECONCILIATION, reliably."""
        if self.frameworks.is_shutting_down(framework_id):
            return  # the framework is gone from here; nobody is left to acknowledge an answer
        state = TaskState.DROPPED if self.frameworks.partition_aware(framework_id, info) else TaskState.LOST
        agent_id = self.registration.agent_id
        dropped = []
        for task_id in task_ids:
            key = (framework_id, task_id)
            if self.tasks.seen(key) or key in self.updates:
                continue
            task = TaskInfo(name=task_id, task_id=task_id, agent_id=agent_id or "", resources=[])
            record = TaskRecord(framework_id, task, f"{self.work_dir}/sandboxes/{framework_id}/{task_id}",
                                state=state, exited=True)
            self.tasks.completed.append(record)  # a late RUN_TASK for it is now a refused duplicate
            self.reporter.enqueue(framework_id, TaskStatus(
                task_id=task_id, state=state, source=TaskSource.AGENT, reason=TaskReason.RECONCILIATION,
                message="Reconciliation: task unknown to the agent (its launch never arrived)",
                agent_id=agent_id, timestamp=now), now, out)
            dropped.append(task_id)
        if dropped:
            out.append(Log("warning", "reconciled_unknown_tasks", {
                "framework_id": framework_id, "task_ids": ",".join(dropped), "state": state.value}))
