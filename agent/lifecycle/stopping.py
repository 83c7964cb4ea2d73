"""How tasks, frameworks and the agent itself end, the agent core's side (pure).

A kill is SIGTERM to the task's process group, then SIGKILL after its grace period (the task's
``kill_policy``, else the agent's ``--kill-grace-period``). A framework's shutdown ends its
tasks and executors and drops its unacknowledged updates (nobody is left to acknowledge them).
The agent's own drain (``Shutdown``: SIGUSR1, or the master's SHUTDOWN_AGENT) ends every task,
waits until their final updates are acknowledged, so frameworks learn the real end (KILLED with
its exit code, not LOST), then unregisters and exits.

:class:`Drain` owns whether the agent is stopping and decides when it may exit;
:class:`Stopping` handles the kills and shutdowns, with the components it uses given to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from tepui.agent.events import AgentEffect, Exit, KillEscalation, SignalProcess, StopDeadline
from tepui.agent.frameworks import Frameworks
from tepui.agent.link.registration import Registration
from tepui.agent.updates.status_updates import StatusUpdateQueue
from tepui.agent.tasks import TaskRecord, TaskTable
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskReason, TaskSource, TaskState, TaskStatus

if TYPE_CHECKING:
    from tepui.agent.events import SendToMaster
    from tepui.agent.custom_executors.executor_flows import ExecutorFlows
    from tepui.agent.checkpointing.journal import CheckpointJournal
    from tepui.agent.updates.reporting import StatusReporter
    from tepui.agent.lifecycle.task_ends import TaskEnds

STOP_SLACK = 3.0


def signal(record: TaskRecord, now: float, out: list[AgentEffect]) -> None:
    """SIGTERM to the process group now, SIGKILL after the grace period."""
    out.append(SignalProcess(record.framework_id, record.info.task_id, "TERM"))
    out.append(ScheduleTimer(now + record.kill_grace, KillEscalation(record.framework_id, record.info.task_id)))


@dataclass(eq=False)
class Drain:
    """Whether the agent is stopping, and whether it may exit yet: once every task has ended
    and every update is acknowledged (or, ``force``, when the deadline passed)."""

    tasks: TaskTable
    updates: StatusUpdateQueue[SendToMaster]
    registration: Registration
    stopping: bool = field(default=False, init=False)

    def maybe_exit(self, now: float, out: list[AgentEffect], force: bool = False) -> None:
        if not self.stopping or (not force and (self.tasks.running or self.updates)):
            return
        self.registration.unregister(out)
        out.append(CancelTimer(StopDeadline()))
        out.append(Exit())


@dataclass(eq=False)
class Stopping:
    registration: Registration
    tasks: TaskTable
    frameworks: Frameworks
    updates: StatusUpdateQueue[SendToMaster]
    reporter: StatusReporter
    journal: CheckpointJournal
    ends: TaskEnds
    executor_flows: ExecutorFlows
    drain: Drain

    def kill_task(self, msg: am.KillTask, now: float, out: list[AgentEffect]) -> None:
        key = (msg.framework_id, msg.task_id)
        record = self.tasks.get(key)
        if record is None and (key in self.updates or self.tasks.completed.has(*key)):
            return  # it ended: its final update is (or was) delivered; a kill sent again changes nothing
        if record is None:
            status = TaskStatus(
                task_id=msg.task_id,
                state=TaskState.DROPPED if self.frameworks.partition_aware(msg.framework_id) else TaskState.LOST,
                message="cannot kill: the agent does not know this task", source=TaskSource.AGENT,
                reason=TaskReason.TASK_UNKNOWN, agent_id=self.registration.agent_id, timestamp=now,
            )
            self.reporter.enqueue(msg.framework_id, status, now, out)
            return
        if record.info.executor is not None:
            self.executor_flows.kill_task(record, msg, now, out)
            return
        if msg.kill_policy and msg.kill_policy.grace_period_seconds is not None:
            record.kill_grace = max(0.0, msg.kill_policy.grace_period_seconds)
        if record.kill_requested:
            return
        record.kill_requested = True
        self.journal.touch(key)
        if self.frameworks.has_capability(record.framework_id, "TASK_KILLING_STATE"):
            record.state = TaskState.KILLING
            self.reporter.report(record, TaskState.KILLING, None, None, now, out)
        if record.pid is not None:
            signal(record, now, out)

    def escalate(self, key: KillEscalation, now: float, out: list[AgentEffect]) -> None:
        record = self.tasks.get((key.framework_id, key.task_id))
        if record is not None and not record.exited:
            out.append(SignalProcess(record.framework_id, record.info.task_id, "KILL"))

    def shutdown_framework(self, msg: am.ShutdownFramework, now: float, out: list[AgentEffect]) -> None:
        self.frameworks.shutting_down.add(msg.framework_id)
        self.reporter.drop_framework(msg.framework_id, out)
        for record in self.tasks.of_framework(msg.framework_id):
            record.kill_requested = True
            self.journal.touch(record.key)
            if record.pid is not None:
                signal(record, now, out)
            else:
                self.ends.terminal(record, TaskState.KILLED, None, "framework shut down", now, out)
        for executor in self.executor_flows.executors.of_framework(msg.framework_id):
            self.executor_flows.shutdown(executor, now, out)
        self.drain.maybe_exit(now, out)  # a stopping agent waits for no acknowledgement from it

    def shutdown_agent(self, msg: am.ShutdownAgent, now: float, out: list[AgentEffect]) -> None:
        out.append(Log("warning", "master_shut_down_agent", {"message": msg.message}))
        self.shutdown(now, out)

    def shutdown(self, now: float, out: list[AgentEffect]) -> None:
        """Ends every task, waits until their final updates are acknowledged (so frameworks
        learn the real end, e.g. KILLED with the exit code, not LOST), then unregisters and
        exits. ``StopDeadline`` bounds the wait: the longest grace period plus 3 s."""
        if self.drain.stopping:
            return
        self.drain.stopping = True
        grace = 0.0
        for record in list(self.tasks.running.values()):
            record.kill_requested = True
            grace = max(grace, record.kill_grace)
            if record.pid is not None:
                signal(record, now, out)
            else:
                self.ends.terminal(record, TaskState.KILLED, None, "agent shut down", now, out)
        for executor in list(self.executor_flows.executors.records.values()):
            self.executor_flows.shutdown(executor, now, out)
        out.append(ScheduleTimer(now + grace + STOP_SLACK, StopDeadline()))
        out.append(Log("info", "agent_stopping", {"tasks": len(self.tasks), "deadline_seconds": grace + STOP_SLACK}))
        self.drain.maybe_exit(now, out)

    def deadline(self, key: StopDeadline, now: float, out: list[AgentEffect]) -> None:
        for record in self.tasks.running.values():
            if not record.exited:
                out.append(SignalProcess(record.framework_id, record.info.task_id, "KILL"))
        self.drain.maybe_exit(now, out, force=True)
