"""How tasks, frameworks and the agent itself end, the agent core's side (pure).

A kill is SIGTERM to the task's process group, then SIGKILL after its grace period (the task's
``kill_policy``, else the agent's ``--kill-grace-period``). A framework's shutdown ends its
tasks and executors and drops its unacknowledged updates (nobody is left to acknowledge them).
The agent's own drain (``Shutdown``: SIGUSR1, or the master's SHUTDOWN_AGENT) ends every task,
waits until their final updates are acknowledged, so frameworks learn the real end (KILLED with
its exit code, not LOST), then unregisters and exits.

A mixin of :class:`tepui.agent.core.AgentCore`, whose state it shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tepui.agent.events import Exit, SendToMaster, SignalProcess
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskReason, TaskSource, TaskState, TaskStatus

if TYPE_CHECKING:
    from tepui.agent.core import AgentConfig, TaskRecord
    from tepui.agent.executors import ExecutorRecord
    from tepui.agent.core import CompletedTasks
    from tepui.agent.status_updates import StatusUpdateQueue
    from tepui.sdk.protocol.values import FrameworkInfo

Effect = Any
STOP_DEADLINE = ("stop_deadline",)
STOP_SLACK = 3.0


class Stopping:
    config: AgentConfig
    agent_id: str | None
    registered: bool
    stopping: bool
    tasks: dict[tuple[str, str], TaskRecord]
    frameworks: dict[str, FrameworkInfo]
    pending: StatusUpdateQueue[SendToMaster]
    executors: dict[tuple[str, str], ExecutorRecord]
    shutting_down_frameworks: set[str]
    completed: CompletedTasks

    if TYPE_CHECKING:
        def _terminal(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str,
                      now: float, out: list[Effect], healthy: bool | None = None) -> None: ...
        def _enqueue(self, framework_id: str, status: TaskStatus, now: float, out: list[Effect]) -> None: ...
        def _update(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str | None,
                    now: float, out: list[Effect], exit_code: int | None = None,
                    labels: dict[str, str] | None = None, healthy: bool | None = None) -> None: ...
        def _touch(self, key: tuple[str, str]) -> None: ...
        def _kill_in_executor(self, record: TaskRecord, msg: am.KillTask, now: float, out: list[Effect]) -> None: ...
        def _shutdown_executor(self, executor: ExecutorRecord, now: float, out: list[Effect]) -> None: ...

    def _on_KillTask(self, msg: am.KillTask, epoch: int, now: float, out: list[Effect]) -> None:
        record = self.tasks.get((msg.framework_id, msg.task_id))
        if record is None and ((msg.framework_id, msg.task_id) in self.pending
                               or self.completed.has(msg.framework_id, msg.task_id)):
            return  # it ended: its final update is (or was) delivered; a kill sent again changes nothing
        if record is None:
            framework = self.frameworks.get(msg.framework_id)
            aware = framework is not None and "PARTITION_AWARE" in framework.capabilities
            status = TaskStatus(
                task_id=msg.task_id, state=TaskState.DROPPED if aware else TaskState.LOST,
                message="cannot kill: the agent does not know this task", source=TaskSource.AGENT,
                reason=TaskReason.TASK_UNKNOWN, agent_id=self.agent_id, timestamp=now,
            )
            self._enqueue(msg.framework_id, status, now, out)
            return
        if record.info.executor is not None:
            self._kill_in_executor(record, msg, now, out)
            return
        if msg.kill_policy and msg.kill_policy.grace_period_seconds is not None:
            record.kill_grace = max(0.0, msg.kill_policy.grace_period_seconds)
        if record.kill_requested:
            return
        record.kill_requested = True
        self._touch((msg.framework_id, msg.task_id))
        framework = self.frameworks.get(record.framework_id)
        if framework is not None and "TASK_KILLING_STATE" in framework.capabilities:
            record.state = TaskState.KILLING
            self._update(record, TaskState.KILLING, None, None, now, out)
        if record.pid is not None:
            self._signal(record, now, out)

    def _signal(self, record: TaskRecord, now: float, out: list[Effect]) -> None:
        """SIGTERM to the process group now, SIGKILL after the grace period."""
        out.append(SignalProcess(record.framework_id, record.info.task_id, "TERM"))
        out.append(ScheduleTimer(now + record.kill_grace, ("escalate", record.framework_id, record.info.task_id)))

    def _on_ShutdownFramework(self, msg: am.ShutdownFramework, epoch: int, now: float, out: list[Effect]) -> None:
        self.shutting_down_frameworks.add(msg.framework_id)
        for key in self.pending.drop_framework(msg.framework_id, out):
            self._touch(key)
        for record in [r for r in self.tasks.values() if r.framework_id == msg.framework_id]:
            record.kill_requested = True
            self._touch((record.framework_id, record.info.task_id))
            if record.pid is not None:
                self._signal(record, now, out)
            else:
                self._terminal(record, TaskState.KILLED, None, "framework shut down", now, out)
        for executor in list(self.executors.values()):
            if executor.framework_id == msg.framework_id:
                self._shutdown_executor(executor, now, out)
        self._maybe_exit(now, out)  # a stopping agent waits for no acknowledgement from it

    def _on_shutdown(self, now: float, out: list[Effect]) -> None:
        """Ends every task, waits until their final updates are acknowledged (so frameworks
        learn the real end, e.g. KILLED with the exit code, not LOST), then unregisters and
        exits. ``stop_deadline`` bounds the wait: the longest grace period plus 3 s."""
        if self.stopping:
            return
        self.stopping = True
        grace = 0.0
        for record in list(self.tasks.values()):
            record.kill_requested = True
            grace = max(grace, record.kill_grace)
            if record.pid is not None:
                self._signal(record, now, out)
            else:
                self._terminal(record, TaskState.KILLED, None, "agent shut down", now, out)
        for executor in list(self.executors.values()):
            self._shutdown_executor(executor, now, out)
        out.append(ScheduleTimer(now + grace + STOP_SLACK, STOP_DEADLINE))
        out.append(Log("info", "agent_stopping", {"tasks": len(self.tasks), "deadline_seconds": grace + STOP_SLACK}))
        self._maybe_exit(now, out)

    def _maybe_exit(self, now: float, out: list[Effect], force: bool = False) -> None:
        if not self.stopping or (not force and (self.tasks or self.pending)):
            return
        if self.agent_id is not None and self.registered:
            out.append(SendToMaster(am.UnregisterAgent(self.agent_id)))
            self.registered = False
        out.append(CancelTimer(STOP_DEADLINE))
        out.append(Exit())
