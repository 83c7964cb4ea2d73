"""The agent's answers to the master's ``RECONCILE_TASKS`` (Mesos ``Slave::reconcileTasks``) and
``AUDIT_TASKS`` (issue 14's anti-entropy, see master/task_audit.py), and what its pongs report.

After a re-registration the master asks about tasks it placed on this agent that the agent
did not report. Messages from the master arrive in order, so by the time the question is
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

A mixin of :class:`tepui.agent.core.AgentCore`, whose state it shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tepui.agent.events import SendToMaster
from tepui.sdk.effects import Log
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import FrameworkInfo, TaskInfo, TaskReason, TaskSource, TaskState, TaskStatus

if TYPE_CHECKING:
    from tepui.agent.core import AgentConfig, CompletedTasks, TaskRecord

Effect = Any


class TaskReconciliation:
    config: AgentConfig
    agent_id: str | None
    frameworks: dict[str, FrameworkInfo]
    completed: CompletedTasks
    shutting_down_frameworks: set[str]
    tasks: dict[tuple[str, str], TaskRecord]
    pending: dict[tuple[str, str], Any]

    if TYPE_CHECKING:  # provided by AgentCore and its other mixins
        def _already_known(self, framework_id: str, task_id: str) -> bool: ...
        def _enqueue(self, framework_id: str, status: TaskStatus, now: float, out: list[Effect]) -> None: ...
        def _send_head(self, key: tuple[str, str], now: float, out: list[Effect], fresh: bool = False) -> None: ...
        def _ended_unacknowledged(self) -> list[TaskRecord]: ...

    def _on_ReconcileTasks(self, msg: am.ReconcileTasks, epoch: int, now: float, out: list[Effect]) -> None:
        self._drop_unknown(msg.framework_id, msg.task_ids, msg.framework_info, now, out)

    def _on_AuditTasks(self, msg: am.AuditTasks, epoch: int, now: float, out: list[Effect]) -> None:
        infos = {info.id: info for info in msg.frameworks if info.id}
        ended: list[am.TaskReport] = []
        for framework_id, task_ids in msg.tasks.items():
            if framework_id in self.shutting_down_frameworks:
                continue
            for task_id in task_ids:
                key = (framework_id, task_id)
                if key in self.pending:
                    self._send_head(key, now, out)  # its update, again now rather than at its retry
                elif key not in self.tasks and self.completed.has(framework_id, task_id):
                    record = next(r for r in reversed(self.completed)
                                  if r.framework_id == framework_id and r.info.task_id == task_id)
                    ended.append(am.TaskReport(framework_id, record.info, record.state))
            self._drop_unknown(framework_id, task_ids, infos.get(framework_id), now, out)
        out.append(SendToMaster(am.TaskAudit(msg.seq, self._task_reports(), ended)))

    def _task_reports(self) -> list[am.TaskReport]:
        """Every task this agent runs, and every ended one whose final update is not acknowledged
        yet (Mesos re-registration): a master learns the truth about both, not "unknown"."""
        reported = [t for t in self.tasks.values() if t.framework_id not in self.shutting_down_frameworks]
        return [am.TaskReport(t.framework_id, t.info, t.state) for t in reported + self._ended_unacknowledged()]

    def _held_for_master(self) -> list[tuple[str, str]]:
        """The tasks the master should hold as not ended, for the pong's digest: those running
        here, and ended ones whose final update has not left yet (it waits behind an earlier
        update of the task that is not acknowledged), less those of frameworks being shut down
        (the master already dropped them). A final update leaves as it becomes the head of its
        task's queue and reaches the master before any later pong, so only a lost one makes the
        two disagree; counting only running tasks made busy agents disagree at every other pong."""
        held = [key for key in self.tasks if key[0] not in self.shutting_down_frameworks]
        held.extend(key for key, waiting in self.pending.items()
                    if key not in self.tasks and not waiting.queue[0].state.is_terminal)
        return held

    def _drop_unknown(self, framework_id: str, task_ids: list[str], info: FrameworkInfo | None, now: float,
                      out: list[Effect]) -> None:
        """Asked ids this agent has never seen were lost on the way: TASK_DROPPED (TASK_LOST for
        frameworks that are not PARTITION_AWARE), reason RECONCILIATION, reliably."""
        if framework_id in self.shutting_down_frameworks:
            return  # the framework is gone from here; nobody is left to acknowledge an answer
        from tepui.agent.core import TaskRecord  # the record type lives with the core

        framework = self.frameworks.get(framework_id) or info
        aware = framework is not None and "PARTITION_AWARE" in framework.capabilities
        state = TaskState.DROPPED if aware else TaskState.LOST
        dropped = []
        for task_id in task_ids:
            if self._already_known(framework_id, task_id):
                continue
            task = TaskInfo(name=task_id, task_id=task_id, agent_id=self.agent_id or "", resources=[])
            record = TaskRecord(framework_id, task, f"{self.config.work_dir}/sandboxes/{framework_id}/{task_id}",
                                state=state, exited=True)
            self.completed.append(record)  # a late RUN_TASK for it is now a refused duplicate
            self._enqueue(framework_id, TaskStatus(
                task_id=task_id, state=state, source=TaskSource.AGENT, reason=TaskReason.RECONCILIATION,
                message="Reconciliation: task unknown to the agent (its launch never arrived)",
                agent_id=self.agent_id, timestamp=now), now, out)
            dropped.append(task_id)
        if dropped:
            out.append(Log("warning", "reconciled_unknown_tasks", {
                "framework_id": framework_id, "task_ids": ",".join(dropped), "state": state.value}))
