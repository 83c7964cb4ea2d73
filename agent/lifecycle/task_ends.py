"""How a task's end becomes its terminal status update, pure.

A process's exit (or a launch that failed) is judged into FINISHED, FAILED or KILLED with the
reason and message a framework needs: the exit status or signal, an OOM kill named as such
(with the mem the task asked for), a kill the agent asked for, a health-check failure. Then
:meth:`TaskEnds.terminal` moves the record to the completed tasks, kills the rest of its task
group when it failed, and sends the update (unless its framework is gone: nobody is left to
acknowledge it).
"""

from __future__ import annotations

from dataclasses import dataclass

from tepui.agent.events import AgentEffect, HealthProbe, KillEscalation, TaskExited, TaskLaunchFailed
from tepui.agent.frameworks import Frameworks
from tepui.agent.custom_executors.groups import kill_group_members
from tepui.agent.checkpointing.journal import CheckpointJournal
from tepui.agent.updates.reporting import StatusReporter
from tepui.agent.lifecycle.stopping import Drain
from tepui.agent.tasks import TaskRecord, TaskTable
from tepui.sdk.effects import CancelTimer
from tepui.sdk.protocol.values import TaskReason, TaskState
from tepui.sdk.resources import Resources


@dataclass(eq=False)
class TaskEnds:
    tasks: TaskTable
    frameworks: Frameworks
    reporter: StatusReporter
    journal: CheckpointJournal
    drain: Drain

    def terminal(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str,
                 now: float, out: list[AgentEffect], healthy: bool | None = None) -> None:
        record.state = state
        self.journal.touch(record.key)
        if record.group is not None and state in (TaskState.FAILED, TaskState.ERROR):
            kill_group_members(record, self.tasks, self.journal.touch, now, out)
        self.tasks.finish(record)
        if self.frameworks.is_shutting_down(record.framework_id):
            return  # the framework is gone; nobody is left to acknowledge
        self.reporter.report(record, state, reason, message, now, out, exit_code=record.exit_code, healthy=healthy)

    def launch_failed(self, event: TaskLaunchFailed, now: float, out: list[AgentEffect]) -> None:
        record = self.tasks.get((event.framework_id, event.task_id))
        if record is not None:
            self.terminal(record, TaskState.FAILED, TaskReason.CONTAINER_LAUNCH_FAILED, event.message, now, out)

    def exited(self, event: TaskExited, now: float, out: list[AgentEffect]) -> None:
        """A task's process (or container) ended; executors' are ``ExecutorFlows.exited``."""
        record = self.tasks.get((event.framework_id, event.task_id))
        if record is None or record.exited:
            return
        record.exited = True
        out.append(CancelTimer(KillEscalation(event.framework_id, event.task_id)))
        code: int | None
        if event.signal is not None:
            code, how = 128 + event.signal, f"terminated by signal {event.signal}"
        else:
            code, how = event.exit_code, f"exited with status {event.exit_code}"
        record.exit_code = code
        out.append(CancelTimer(HealthProbe(event.framework_id, event.task_id)))
        if record.unhealthy is not None:
            self.terminal(record, TaskState.FAILED, TaskReason.TASK_HEALTH_CHECK_STATUS_UPDATED, record.unhealthy,
                          now, out, healthy=False)
            self.drain.maybe_exit(now, out)
            return
        if event.oom_killed and not record.kill_requested:
            mem = Resources.from_wire(record.info.resources).scalar("mem")
            message = (f"Memory limit exceeded: the task used more than its {mem:g} MiB (mem) and the kernel's "
                       "OOM killer ended it; ask for more mem")
            self.terminal(record, TaskState.FAILED, TaskReason.CONTAINER_LIMITATION_MEMORY, message, now, out)
            self.drain.maybe_exit(now, out)
            return
        reason: TaskReason | None
        if record.kill_requested:
            state, reason, message = TaskState.KILLED, None, record.kill_reason or f"Command {how} after a kill request"
        elif event.signal is None and event.exit_code == 0:
            state, reason, message = TaskState.FINISHED, None, "Command exited with status 0"
        elif event.signal is None and event.exit_code is None:  # nobody saw how: not the command's failure
            state, reason, message = TaskState.FAILED, TaskReason.EXECUTOR_TERMINATED, "its supervisor ended unseen"
        else:
            state, reason, message = TaskState.FAILED, TaskReason.COMMAND_EXECUTOR_FAILED, f"Command {how}"
        if event.message and state != TaskState.FINISHED:
            message = event.message  # the containerizer's own account (e.g. why a container died)
        self.terminal(record, state, reason, message, now, out)
        self.drain.maybe_exit(now, out)
