"""Checkpointing, the agent core's side (pure): what changed while an event was handled, and the
one :class:`~tepui.agent.checkpointing.checkpoint.Checkpoint` effect that records it.

Whoever changes a task, the agent's identity or frameworks, or the executors notes it here
(``touch``, ``agent_changed``, ``executors_changed``); at the end of ``AgentCore.handle`` the
core takes the checkpoint and puts it *first* in the batch, so the shell records a task before
launching it and an update before forwarding it. The journal reads the components it records
(given to it at construction) only when it is taken.
"""

from __future__ import annotations

from tepui.agent.checkpointing.checkpoint import AgentCheckpoint, Checkpoint, ExecutorCheckpoint, ExecutorsCheckpoint, TaskCheckpoint
from tepui.agent.events import SendToMaster, TaskKey
from tepui.agent.custom_executors.executors import Executors
from tepui.agent.frameworks import Frameworks
from tepui.agent.link.registration import Registration
from tepui.agent.updates.status_updates import StatusUpdateQueue
from tepui.agent.tasks import TaskRecord, TaskTable
from tepui.sdk.protocol.values import TaskState


def task_kind(record: TaskRecord) -> str:
    if record.info.executor is not None:
        return "executor"
    if record.info.container is not None and record.info.container.type == "DOCKER":
        return "docker"
    return "process"


class CheckpointJournal:
    def __init__(self, enabled: bool, registration: Registration, frameworks: Frameworks, tasks: TaskTable,
                 updates: StatusUpdateQueue[SendToMaster], executors: Executors) -> None:
        self.enabled = enabled  # the agent process turns this on (see recovery.py)
        self._registration = registration
        self._frameworks = frameworks
        self._tasks = tasks
        self._updates = updates
        self._executors = executors
        self._dirty_tasks: set[TaskKey] = set()
        self._agent_dirty = False
        self._executors_dirty = False

    def touch(self, key: TaskKey) -> None:
        self._dirty_tasks.add(key)

    def agent_changed(self) -> None:
        self._agent_dirty = True

    def executors_changed(self) -> None:
        self._executors_dirty = True

    def take(self) -> Checkpoint | None:
        """The checkpoint of what changed since the last one (None: nothing to write)."""
        if not self.enabled:
            self._dirty_tasks.clear()
            self._agent_dirty = self._executors_dirty = False
            return None
        agent = None
        agent_id = self._registration.agent_id
        if self._agent_dirty and agent_id is not None:
            me = self._registration.identity
            agent = AgentCheckpoint(
                agent_id=agent_id, boot_id=me.boot_id, hostname=me.hostname,
                resources=me.resources.to_wire(), attributes=dict(me.attributes),
                frameworks=dict(self._frameworks.infos))
        executors = None
        if self._executors_dirty:
            executors = ExecutorsCheckpoint([
                ExecutorCheckpoint(e.framework_id, e.info, e.sandbox, sorted(e.tasks), e.shutting_down, e.secret)
                for e in self._executors.records.values() if not e.exited])
        tasks = {key: self._task_checkpoint(key) for key in sorted(self._dirty_tasks)}
        self._dirty_tasks.clear()
        self._agent_dirty = self._executors_dirty = False
        if agent is None and executors is None and not tasks:
            return None
        return Checkpoint(agent, tasks, executors)

    def _task_checkpoint(self, key: TaskKey) -> TaskCheckpoint | None:
        record = self._tasks.get(key)
        terminal = record is None
        pending = self._updates.get(key)
        if record is None:
            if pending is None:
                return None  # finished and acknowledged: nothing left to recover
            record = self._tasks.completed.newest(key)
            if record is None:
                return None
        return TaskCheckpoint(
            framework_id=record.framework_id, info=record.info, sandbox=record.sandbox, state=record.state,
            kind=task_kind(record), launched=record.state != TaskState.STAGING and record.launch is None,
            terminal=terminal, kill_requested=record.kill_requested, kill_grace=record.kill_grace,
            kill_reason=record.kill_reason, exit_code=record.exit_code, group=record.group, gpus=record.gpus,
            environment=dict(record.environment), updates=list(pending.queue) if pending else [])
