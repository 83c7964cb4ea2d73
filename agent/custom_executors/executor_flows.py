"""What happens between custom executors and their tasks, the core's side (pure).

A task with its own executor goes to that executor (started once per (framework, executor id),
tasks queued until it SUBSCRIBEs); its UPDATEs go through the agent's status update queue (kept
until the framework acknowledges them) and are acknowledged to the executor at once, each
taken once (by UUID) when a re-subscribing executor sends them again; KILL, MESSAGE and
SHUTDOWN go to it; and when its process ends, its unfinished tasks end (FAILED, or KILLED when
a kill was asked, ``REASON_EXECUTOR_TERMINATED``) and the master tells the framework. Who may
subscribe, and the executors' table, are ``executors.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from tepui.agent.events import (
    AgentEffect,
    ExecutorKill,
    ExecutorReceived,
    ExecutorRegisterTimeout,
    SendToExecutor,
    SendToMaster,
    SignalProcess,
)
from tepui.agent.custom_executors.executors import EXECUTOR_PREFIX, ExecutorRecord, Executors, unsubscribed_hint
from tepui.agent.frameworks import Frameworks
from tepui.agent.checkpointing.journal import CheckpointJournal
from tepui.agent.link.registration import Registration
from tepui.agent.updates.reporting import StatusReporter
from tepui.agent.updates.status_updates import StatusUpdateQueue
from tepui.agent.lifecycle.stopping import Drain
from tepui.agent.lifecycle.task_ends import TaskEnds
from tepui.agent.tasks import TaskRecord, TaskTable, task_user
from tepui.sdk.effects import Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import executor as ex
from tepui.sdk.protocol.values import TaskReason, TaskSource, TaskState, TaskStatus


@dataclass(eq=False)
class ExecutorFlows:
    executors: Executors
    registration: Registration
    tasks: TaskTable
    frameworks: Frameworks
    updates: StatusUpdateQueue[SendToMaster]
    reporter: StatusReporter
    journal: CheckpointJournal
    ends: TaskEnds
    drain: Drain
    kill_grace_period: float
    executor_reregister_timeout: float
    default_user: str | None

    # --- launching ------------------------------------------------------------------------

    def run_task(self, record: TaskRecord, now: float, out: list[AgentEffect]) -> None:
        task = record.info
        assert task.executor is not None
        executor = self.executors.get((record.framework_id, task.executor.executor_id))
        if executor is None or executor.exited:
            executor = self.executors.start(record.framework_id, task.executor, task, self.registration.agent_id,
                                            task_user(task, self.default_user), out)
        executor.tasks.add(task.task_id)
        self.journal.executors_changed()
        if executor.peer is not None:
            out.append(SendToExecutor(executor.peer, ex.LaunchTask(task)))
        else:
            executor.queued.append(task)

    # --- messages from executors ----------------------------------------------------------

    def received(self, event: ExecutorReceived, now: float, out: list[AgentEffect]) -> None:
        peer, body = event.peer, event.body
        if isinstance(body, ex.ExecutorSubscribe):
            self._subscribe(peer, body, now, out)
            return
        executor = self.executors.connected(peer)
        if executor is None:
            out.append(SendToExecutor(peer, ex.ExecutorError("not subscribed: send SUBSCRIBE first")))
            return
        if isinstance(body, ex.ExecutorUpdate):
            self._update(executor, peer, body.status, now, out)
        elif isinstance(body, ex.ExecutorMessage):
            out.append(SendToMaster(am.ExecutorToFramework(executor.framework_id, executor.info.executor_id,
                                                           self.registration.agent_id or "", body.data)))
        elif isinstance(body, ex.ExecutorHeartbeat):
            out.append(SendToExecutor(peer, ex.ExecutorHeartbeatEvent()))

    def _subscribe(self, peer: bytes, msg: ex.ExecutorSubscribe, now: float, out: list[AgentEffect]) -> None:
        executor = self.executors.subscribe(peer, msg, out)
        if executor is None:
            return
        for update in msg.unacknowledged_updates:  # resent after a reconnect: each is taken once
            self._update(executor, peer, update.status, now, out)
        framework = self.frameworks.get(msg.framework_id)
        assert framework is not None
        out.append(SendToExecutor(peer, ex.ExecutorSubscribed(executor.info, framework,
                                                              self.registration.agent_info())))
        for task in executor.queued:
            out.append(SendToExecutor(peer, ex.LaunchTask(task)))
        executor.queued.clear()

    def _update(self, executor: ExecutorRecord, peer: bytes, status: TaskStatus, now: float,
                out: list[AgentEffect]) -> None:
        record = self.tasks.get((executor.framework_id, status.task_id))
        if record is None or status.task_id not in executor.tasks:
            out.append(Log("warning", "executor_update_for_unknown_task",
                           {"executor_id": executor.info.executor_id, "task_id": status.task_id}))
            if status.uuid is not None:
                out.append(SendToExecutor(peer, ex.Acknowledged(status.task_id, status.uuid)))
            return
        if status.uuid is not None and self.updates.holds((executor.framework_id, status.task_id), status.uuid):
            out.append(SendToExecutor(peer, ex.Acknowledged(status.task_id, status.uuid)))
            return
        # The agent vouches for where the update comes from, whatever the executor wrote.
        status = msgspec.structs.replace(status, agent_id=self.registration.agent_id,
                                         executor_id=executor.info.executor_id, source=TaskSource.EXECUTOR,
                                         timestamp=status.timestamp or now)
        record.state = status.state
        if status.state.is_terminal:
            self.tasks.finish(record)
            executor.tasks.discard(record.info.task_id)
            self.journal.executors_changed()
        self.reporter.enqueue(executor.framework_id, status, now, out)
        if status.uuid is not None:
            out.append(SendToExecutor(peer, ex.Acknowledged(status.task_id, status.uuid)))
        if status.state.is_terminal:
            self.drain.maybe_exit(now, out)

    # --- commands to executors ------------------------------------------------------------

    def kill_task(self, record: TaskRecord, msg: am.KillTask, now: float, out: list[AgentEffect]) -> None:
        assert record.info.executor is not None
        executor = self.executors.get((record.framework_id, record.info.executor.executor_id))
        if executor is not None and executor.peer is not None:
            out.append(SendToExecutor(executor.peer, ex.KillTaskEvent(record.info.task_id, msg.kill_policy)))
            return
        if executor is not None:
            executor.queued = [t for t in executor.queued if t.task_id != record.info.task_id]
            executor.tasks.discard(record.info.task_id)
        self.ends.terminal(record, TaskState.KILLED, TaskReason.TASK_KILLED_DURING_LAUNCH,
                            "killed before its executor subscribed", now, out)

    def framework_message(self, msg: am.FrameworkToExecutor, now: float, out: list[AgentEffect]) -> None:
        executor = self.executors.get((msg.framework_id, msg.executor_id))
        if executor is not None and executor.peer is not None:
            out.append(SendToExecutor(executor.peer, ex.MessageToExecutor(msg.data)))

    def shutdown_requested(self, msg: am.ShutdownExecutor, now: float, out: list[AgentEffect]) -> None:
        executor = self.executors.get((msg.framework_id, msg.executor_id))
        if executor is not None:
            self.shutdown(executor, now, out)

    def shutdown(self, executor: ExecutorRecord, now: float, out: list[AgentEffect]) -> None:
        """Mesos: SHUTDOWN, then SIGKILL after the executor shutdown grace period."""
        if executor.exited or executor.shutting_down:
            return
        executor.shutting_down = True
        self.journal.executors_changed()
        if executor.peer is not None:
            out.append(SendToExecutor(executor.peer, ex.ShutdownEvent()))
        else:
            out.append(SignalProcess(executor.framework_id, EXECUTOR_PREFIX + executor.info.executor_id, "TERM"))
        out.append(ScheduleTimer(now + self.kill_grace_period, ExecutorKill(*executor.key)))

    def kill_timer(self, key: ExecutorKill, now: float, out: list[AgentEffect]) -> None:
        executor = self.executors.get((key.framework_id, key.executor_id))
        if executor is not None and not executor.exited:
            out.append(SignalProcess(key.framework_id, EXECUTOR_PREFIX + key.executor_id, "KILL"))

    def reregister_timeout(self, key: ExecutorRegisterTimeout, now: float, out: list[AgentEffect]) -> None:
        """Mesos ``--executor_reregistration_timeout``: an executor that did not reconnect to
        the restarted agent is shut down; its tasks end with its exit."""
        executor = self.executors.get((key.framework_id, key.executor_id))
        if executor is None or executor.exited or executor.peer is not None:
            return
        out.append(Log("warning", "executor_did_not_reregister", {
            "framework_id": key.framework_id, "executor_id": key.executor_id,
            "timeout_seconds": self.executor_reregister_timeout}))
        self.shutdown(executor, now, out)

    # --- the executor's end ---------------------------------------------------------------

    def exited(self, framework_id: str, executor_id: str, exit_code: int | None, signal: int | None,
               now: float, out: list[AgentEffect]) -> None:
        executor = self.executors.get((framework_id, executor_id))
        if executor is None or executor.exited:
            return
        self.executors.exited(executor)
        self.journal.executors_changed()
        how = f"exited with status {exit_code}" if signal is None else f"was terminated by signal {signal}"
        for task_id in sorted(executor.tasks):
            record = self.tasks.get((framework_id, task_id))
            if record is not None:
                state = TaskState.KILLED if record.kill_requested else TaskState.FAILED
                message = f"its executor {executor_id!r} {how}"
                if executor.peer is None:
                    message += unsubscribed_hint(executor, exit_code, task_user(record.info, self.default_user))
                self.ends.terminal(record, state, TaskReason.EXECUTOR_TERMINATED, message, now, out)
        executor.tasks.clear()
        status = exit_code if signal is None else 128 + signal
        out.append(SendToMaster(am.ExecutorTerminated(framework_id, executor_id, status)))
        out.append(Log("info", "executor_exited", {"framework_id": framework_id, "executor_id": executor_id,
                                                   "how": how}))
        self.drain.maybe_exit(now, out)
