"""The agent's answer to the master's ``RECONCILE_TASKS`` (Mesos ``Slave::reconcileTasks``).

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

A mixin of :class:`tepui.agent.core.AgentCore`, whose state it shares.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from tepui.sdk.effects import Log
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import FrameworkInfo, TaskInfo, TaskReason, TaskSource, TaskState, TaskStatus

if TYPE_CHECKING:
    from tepui.agent.core import AgentConfig, TaskRecord

Effect = Any


class TaskReconciliation:
    config: AgentConfig
    agent_id: str | None
    frameworks: dict[str, FrameworkInfo]
    completed: collections.deque[TaskRecord]
    shutting_down_frameworks: set[str]

    if TYPE_CHECKING:  # provided by AgentCore and its other mixins
        def _already_known(self, framework_id: str, task_id: str) -> bool: ...
        def _enqueue(self, framework_id: str, status: TaskStatus, now: float, out: list[Effect]) -> None: ...

    def _on_ReconcileTasks(self, msg: am.ReconcileTasks, epoch: int, now: float, out: list[Effect]) -> None:
        if msg.framework_id in self.shutting_down_frameworks:
            return  # the framework is gone from here; nobody is left to acknowledge an answer
        from tepui.agent.core import TaskRecord  # the record type lives with the core

        framework = self.frameworks.get(msg.framework_id) or msg.framework_info
        aware = framework is not None and "PARTITION_AWARE" in framework.capabilities
        state = TaskState.DROPPED if aware else TaskState.LOST
        dropped = []
        for task_id in msg.task_ids:
            if self._already_known(msg.framework_id, task_id):
                continue
            info = TaskInfo(name=task_id, task_id=task_id, agent_id=self.agent_id or "", resources=[])
            record = TaskRecord(msg.framework_id, info, f"{self.config.work_dir}/sandboxes/{msg.framework_id}/{task_id}",
                                state=state, exited=True)
            self.completed.append(record)  # a late RUN_TASK for it is now a refused duplicate
            self._enqueue(msg.framework_id, TaskStatus(
                task_id=task_id, state=state, source=TaskSource.AGENT, reason=TaskReason.RECONCILIATION,
                message="Reconciliation: task unknown to the agent (its launch never arrived)",
                agent_id=self.agent_id, timestamp=now), now, out)
            dropped.append(task_id)
        if dropped:
            out.append(Log("warning", "reconciled_unknown_tasks", {
                "framework_id": msg.framework_id, "task_ids": ",".join(dropped), "state": state.value}))
