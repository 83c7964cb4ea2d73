"""Checkpointing and recovery, the agent core's side (pure).

Checkpointing: the core notes what changed while it handles an event (``_touch``) and, at the
end of ``handle``, puts one :class:`~tepui.agent.checkpoint.Checkpoint` effect *first* in the
batch, so the shell records a task before launching it and an update before forwarding it.

Recovery (Mesos agent recovery, ``--recover=reconnect``): a restarted agent takes back its id,
its frameworks, its tasks and their unacknowledged updates. Each task that was launched is
*adopted* (``AdoptProcess`` / ``AdoptContainer``): the shell watches the supervisor or container
that survived the agent and reports its real end as an ordinary ``TaskExited``, so a task that
ended while the agent was down gets its real terminal state. Custom executors reconnect on
their own, with the secret their checkpoint keeps (``executors.py``); one that has not re-subscribed within ``executor_reregister_timeout`` is shut down.
Then the agent re-registers under its id, reporting what it runs.

A mixin of :class:`tepui.agent.core.AgentCore`, whose state it shares.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tepui.agent.checkpoint import (
    AgentCheckpoint,
    Checkpoint,
    ExecutorCheckpoint,
    ExecutorsCheckpoint,
    Recovered,
    TaskCheckpoint,
)
from tepui.agent.events import SignalProcess
from tepui.agent.executors import EXECUTOR_PREFIX, ExecutorRecord
from tepui.agent.health import HealthState, first_probe_at
from tepui.agent.status_updates import StatusUpdateQueue
from tepui.sdk.effects import Log, ScheduleTimer
from tepui.sdk.protocol.values import TaskReason, TaskState
from tepui.sdk.resources import Resources

if TYPE_CHECKING:
    from tepui.agent.core import AgentConfig, TaskRecord
    from tepui.sdk.protocol.values import FrameworkInfo

Effect = Any


@dataclass(frozen=True)
class AdoptProcess:
    """Watch the supervisor an earlier agent process started for this task (or executor)."""

    framework_id: str
    task_id: str
    group: str | None = None  # the task group (cgroup envelope) it belongs to


@dataclass(frozen=True)
class AdoptContainer:
    """Watch the Docker container an earlier agent process started for this task."""

    framework_id: str
    task_id: str
    sandbox: str


def task_kind(record: TaskRecord) -> str:
    if record.info.executor is not None:
        return "executor"
    if record.info.container is not None and record.info.container.type == "DOCKER":
        return "docker"
    return "process"


class Recovery:
    config: AgentConfig
    agent_id: str | None
    frameworks: dict[str, FrameworkInfo]
    tasks: dict[tuple[str, str], TaskRecord]
    completed: collections.deque[TaskRecord]
    pending: StatusUpdateQueue[Any]
    executors: dict[tuple[str, str], ExecutorRecord]

    _dirty_tasks: set[tuple[str, str]]
    _agent_dirty: bool
    _executors_dirty: bool

    if TYPE_CHECKING:
        def _terminal(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str,
                      now: float, out: list[Effect], healthy: bool | None = None) -> None: ...
        def _shutdown_executor(self, executor: ExecutorRecord, now: float, out: list[Effect]) -> None: ...

    # --- checkpointing --------------------------------------------------------------------

    def _touch(self, key: tuple[str, str]) -> None:
        self._dirty_tasks.add(key)

    def _take_checkpoint(self) -> Checkpoint | None:
        if not self.config.checkpoint:
            self._dirty_tasks.clear()
            self._agent_dirty = self._executors_dirty = False
            return None
        agent = None
        if self._agent_dirty and self.agent_id is not None:
            agent = AgentCheckpoint(
                agent_id=self.agent_id, boot_id=self.config.boot_id, hostname=self.config.hostname,
                resources=self.config.resources.to_wire(), attributes=dict(self.config.attributes),
                frameworks=dict(self.frameworks))
        executors = None
        if self._executors_dirty:
            executors = ExecutorsCheckpoint([
                ExecutorCheckpoint(e.framework_id, e.info, e.sandbox, sorted(e.tasks), e.shutting_down, e.secret)
                for e in self.executors.values() if not e.exited])
        tasks = {key: self._task_checkpoint(key) for key in sorted(self._dirty_tasks)}
        self._dirty_tasks.clear()
        self._agent_dirty = self._executors_dirty = False
        if agent is None and executors is None and not tasks:
            return None
        return Checkpoint(agent, tasks, executors)

    def _task_checkpoint(self, key: tuple[str, str]) -> TaskCheckpoint | None:
        record = self.tasks.get(key)
        terminal = record is None
        pending = self.pending.get(key)
        if record is None:
            if pending is None:
                return None  # finished and acknowledged: nothing left to recover
            record = next((r for r in reversed(self.completed)
                           if (r.framework_id, r.info.task_id) == key), None)
            if record is None:
                return None
        return TaskCheckpoint(
            framework_id=record.framework_id, info=record.info, sandbox=record.sandbox, state=record.state,
            kind=task_kind(record), launched=record.state != TaskState.STAGING and record.launch is None,
            terminal=terminal, kill_requested=record.kill_requested, kill_grace=record.kill_grace,
            kill_reason=record.kill_reason, exit_code=record.exit_code, group=record.group, gpus=record.gpus,
            environment=dict(record.environment), updates=list(pending.queue) if pending else [])

    # --- recovery -------------------------------------------------------------------------

    def recover(self, recovered: Recovered, now: float) -> list[Effect]:
        """Before ``Start``: takes back what the checkpoint holds. The caller has already
        checked that it belongs to this boot and this configuration."""
        out: list[Effect] = []
        assert recovered.agent is not None
        from tepui.agent.core import TaskRecord  # the record type lives with the core

        self.agent_id = recovered.agent.agent_id
        self.frameworks = dict(recovered.agent.frameworks)
        adopted = 0
        for saved in recovered.tasks:
            key = (saved.framework_id, saved.info.task_id)
            record = TaskRecord(saved.framework_id, saved.info, saved.sandbox, state=saved.state,
                                kill_requested=saved.kill_requested, kill_grace=saved.kill_grace,
                                exit_code=saved.exit_code, environment=dict(saved.environment),
                                gpus=tuple(saved.gpus), group=saved.group, kill_reason=saved.kill_reason)
            if saved.updates:
                self.pending.restore(key, saved.updates)
            if saved.terminal:
                record.exited = True
                self.completed.append(record)
                continue
            self.tasks[key] = record
            if saved.kind == "executor":
                continue  # its executor re-subscribes and reports it
            if not saved.launched:
                record.exited = True
                self._terminal(record, TaskState.FAILED, TaskReason.AGENT_RESTARTED,
                               "the agent restarted before the task was launched (while fetching its URIs)", now, out)
                continue
            record.pid = 0  # launched: signals go through the adopted supervisor or container
            adopted += 1
            if saved.kind == "docker":
                out.append(AdoptContainer(saved.framework_id, saved.info.task_id, saved.sandbox))
            else:
                out.append(AdoptProcess(saved.framework_id, saved.info.task_id, saved.group))
            if record.kill_requested:  # a kill was under way: finish it
                out.append(SignalProcess(record.framework_id, record.info.task_id, "TERM"))
                out.append(ScheduleTimer(now + record.kill_grace, ("escalate",) + key))
            elif record.state == TaskState.RUNNING and record.info.health_check is not None:
                record.health = HealthState(started_at=now)
                out.append(ScheduleTimer(first_probe_at(record.info.health_check, now), ("health",) + key))
        for saved_executor in recovered.executors:
            executor_key = (saved_executor.framework_id, saved_executor.info.executor_id)
            executor = ExecutorRecord(saved_executor.framework_id, saved_executor.info, saved_executor.sandbox,
                                      tasks=set(saved_executor.tasks), shutting_down=saved_executor.shutting_down,
                                      secret=saved_executor.secret)
            self.executors[executor_key] = executor
            out.append(AdoptProcess(saved_executor.framework_id, EXECUTOR_PREFIX + saved_executor.info.executor_id))
            out.append(ScheduleTimer(now + self.config.executor_reregister_timeout,
                                     ("executor_reregister",) + executor_key))
        out.append(Log("info", "agent_recovered", {
            "agent_id": self.agent_id, "tasks": len(self.tasks), "adopted": adopted,
            "executors": len(recovered.executors), "unacknowledged_updates": sum(len(p.queue) for p in self.pending.values()),
            "discarded": len(recovered.discarded)}))
        return out

    def _ended_unacknowledged(self) -> list[TaskRecord]:
        """Ended tasks whose updates still wait for an acknowledgement, newest record each."""
        waiting = {key for key in self.pending if key not in self.tasks}
        found: dict[tuple[str, str], TaskRecord] = {}
        for record in reversed(self.completed):
            key = (record.framework_id, record.info.task_id)
            if key in waiting and key not in found:
                found[key] = record
        return list(found.values())

    def _executor_reregister_timer(self, framework_id: str, executor_id: str, now: float, out: list[Effect]) -> None:
        """Mesos ``--executor_reregistration_timeout``: an executor that did not reconnect to
        the restarted agent is shut down; its tasks end with its exit."""
        executor = self.executors.get((framework_id, executor_id))
        if executor is None or executor.exited or executor.peer is not None:
            return
        out.append(Log("warning", "executor_did_not_reregister", {
            "framework_id": framework_id, "executor_id": executor_id,
            "timeout_seconds": self.config.executor_reregister_timeout}))
        self._shutdown_executor(executor, now, out)


RECONFIGURATION_POLICIES = ("equal", "additive")


def reconfiguration_problem(saved: AgentCheckpoint, hostname: str, resources: Resources,
                            attributes: dict[str, str], policy: str, checkpoint_dir: str) -> str | None:
    """Why a restarted agent may not take back its checkpoint, or None (Mesos
    ``--reconfiguration_policy``: ``equal``, the default, wants exactly what was offered before;
    ``additive`` lets resources and attributes grow but never shrink or change)."""
    before = Resources.from_wire(saved.resources)
    problems = []
    if saved.hostname != hostname:
        problems.append(f"its hostname changed from {saved.hostname!r} to {hostname!r}")
    if policy == "equal":
        if before != resources:
            problems.append(f"its resources changed from {before} to {resources}")
        if dict(saved.attributes) != dict(attributes):
            problems.append(f"its attributes changed from {_attrs(saved.attributes)} to {_attrs(attributes)}")
    else:
        if not resources.contains(before):
            problems.append(f"its resources shrank from {before} to {resources} (missing {before.missing_from(resources)})")
        changed = {k: v for k, v in saved.attributes.items() if attributes.get(k) != v}
        if changed:
            problems.append(f"attributes {_attrs(changed)} were removed or changed (now {_attrs(attributes)})")
    if not problems:
        return None
    return (f"this agent's configuration differs from its checkpoint: {'; '.join(problems)}. Its running tasks and "
            f"the master's reservations were granted against the old one, so --reconfiguration-policy {policy} refuses "
            f"it. Restore the previous flags (--hostname, --resources, --attributes)"
            + (", or use --reconfiguration-policy additive to let resources and attributes grow" if policy == "equal" else "")
            + f", or move {checkpoint_dir} away to start as a new agent (its tasks are then lost to it).")


def _attrs(attributes: dict[str, str]) -> str:
    return ";".join(f"{k}:{v}" for k, v in sorted(attributes.items())) or "(none)"
