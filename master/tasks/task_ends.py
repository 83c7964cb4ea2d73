"""How a task changes state at the master's word, and how it ends — shared by every flow that
ends tasks (a status update, an agent's removal or loss, a framework's teardown, an audit).

Mesos semantics: a terminal task's resources return to the pool at once; an update the master
makes up itself (``SOURCE_MASTER``, no uuid) needs no acknowledgement. Stateless: it works on
the records in the :class:`~tepui.master.members.roster.Roster` and tells the
:class:`~tepui.master.offering.pool.Pool` and the :class:`~tepui.master.failures.task_audit.TaskAudits` what
ended.
"""

from __future__ import annotations

from tepui.master.events import MasterEffect, Send
from tepui.master.offering.pool import Pool
from tepui.master.records import FrameworkRecord, TaskRecord
from tepui.master.members.roster import Roster
from tepui.master.failures.task_audit import TaskAudits
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import TaskReason, TaskSource, TaskState, TaskStatus


def update_to(framework: FrameworkRecord, task_id: str, agent_id: str | None, state: TaskState,
              reason: TaskReason, message: str, now: float) -> Send:
    """A master-generated update (no uuid: nothing for the framework to acknowledge)."""
    status = TaskStatus(task_id=task_id, state=state, message=message, source=TaskSource.MASTER,
                        reason=reason, agent_id=agent_id, timestamp=now)
    return Send(framework.peer or b"", sm.Update(status))


class TaskEnds:
    def __init__(self, roster: Roster, pool: Pool, audits: TaskAudits) -> None:
        self._roster = roster
        self._pool = pool
        self._audits = audits

    def master_update(self, task: TaskRecord, state: TaskState, reason: TaskReason, message: str,
                      now: float, out: list[MasterEffect]) -> None:
        """The task takes ``state`` (ending if terminal), and its framework, if connected, hears it."""
        framework = self._roster.frameworks.get(task.framework_id)
        if state.is_terminal:
            self.finish(task, state, now)
        else:
            task.state = state
        if framework is not None and framework.peer is not None:
            out.append(update_to(framework, task.task_id, task.agent_id, state, reason, message, now))

    def finish(self, task: TaskRecord, state: TaskState, now: float) -> None:
        """Mesos: a terminal task's resources return to the pool at once."""
        if task.state != state and (not task.history or task.history[-1][0] != state.value):
            task.record(state, now)
        task.state = state
        self._audits.task_ended((task.framework_id, task.task_id))
        framework = self._roster.frameworks.get(task.framework_id)
        agent = self._roster.agents.get(task.agent_id)
        if agent is not None:
            if agent.tasks.pop((task.framework_id, task.task_id), None) is not None:
                self._pool.recover(agent.agent_id, task.framework_id, task.role, task.resources)
                self._pool.request_allocation()
        if framework is not None and framework.tasks.pop(task.task_id, None) is not None:
            framework.completed.append(task)
