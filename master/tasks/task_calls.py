"""What frameworks and agents say about tasks: status updates and their acknowledgements,
kills, messages to and from executors, executor shutdowns, and reconciliation.

Mesos semantics: status updates flow agent → master → framework and acknowledgements flow back
(the master passes on only the acknowledgement of an update it forwarded:
:mod:`tepui.master.tasks.pending_acks`); a kill is repeated until its task ends
(:mod:`tepui.master.failures.task_audit`); a question about a task the master does not know gets no
answer while the task's agent may still re-register after a failover, so the framework asks
again rather than acting on a guess.
"""

from __future__ import annotations

from typing import MutableMapping

from tepui.master.admission.validation import grace_problem
from tepui.master.durability.durable import Recovery
from tepui.master.events import Log, MasterEffect, Send
from tepui.master.failures.partitions import PartitionTracker
from tepui.master.tasks.pending_acks import PendingAcks
from tepui.master.records import TaskRecord, kept_status
from tepui.master.admission.refusals import agent_missing, executor_agent, shown
from tepui.master.members.roster import Roster
from tepui.master.failures.task_audit import TaskAudits
from tepui.master.tasks.task_ends import TaskEnds, update_to
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import TaskReason, TaskSource, TaskState, TaskStatus


class TaskCalls:
    def __init__(self, counters: MutableMapping[str, int], roster: Roster, tasks: TaskEnds,
                 pending_acks: PendingAcks, audits: TaskAudits, partitions: PartitionTracker,
                 recovery: Recovery) -> None:
        self._counters = counters
        self._roster = roster
        self._tasks = tasks
        self._pending_acks = pending_acks
        self._audits = audits
        self._partitions = partitions
        self._recovery = recovery

    def on_status_update(self, peer: bytes, msg: am.StatusUpdate, now: float, out: list[MasterEffect]) -> None:
        agent = self._roster.agent_by_peer(peer)
        if agent is None:
            # Mesos: dropped and counted. An agent the master marked unreachable is pinged no
            # more, so it notices and re-registers, then sends the update again.
            self._counters["invalid_status_updates"] += 1
            out.append(Log("warning", "update_from_unknown_agent", {
                "task_id": msg.status.task_id, "agent_id": msg.status.agent_id, "action": "dropped"}))
            return
        status = msg.status
        framework = self._roster.frameworks.get(msg.framework_id)
        task = agent.tasks.get((msg.framework_id, status.task_id))
        if task is not None:
            task.status = kept_status(status)
            if task.state != status.state:
                task.record(status.state, status.timestamp if status.timestamp is not None else now)
            if status.state.is_terminal:
                self._tasks.finish(task, status.state, now)
            else:
                task.state = status.state
        self._counters["status_updates"] += 1
        if status.uuid:
            self._pending_acks.forwarded(agent.agent_id, (msg.framework_id, status.task_id), status.uuid)
        if framework is not None and framework.peer is not None:
            out.append(Send(framework.peer, sm.Update(status)))

    def on_acknowledge(self, peer: bytes, msg: sm.Acknowledge, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is None:
            return
        agent = self._roster.agents.get(msg.agent_id)
        task = (framework.framework_id, msg.task_id)
        if agent is not None and msg.uuid and self._pending_acks.acknowledged(agent.agent_id, task, msg.uuid):
            out.append(Send(agent.peer, am.StatusUpdateAck(framework.framework_id, msg.task_id, msg.uuid)))
        elif agent is not None and msg.uuid:
            # Not passed on: safe, because an agent sends an unacknowledged update again and that
            # copy is recorded here (master/tasks/pending_acks.py).
            self._counters["acknowledgements_refused"] += 1
            out.append(Send(peer, sm.Error(
                f"ACKNOWLEDGE of no pending update: task {shown(msg.task_id)} on agent {agent.agent_id} has no "
                f"update with uuid {msg.uuid[:32].hex()}{'...' if len(msg.uuid) > 32 else ''} waiting for an "
                "acknowledgement (never sent, or an earlier update of the task); nothing to do — after a master "
                "failover the agent sends its update again: acknowledge that copy",
                field="$.body.uuid")))
        elif agent is not None:
            out.append(Send(peer, sm.Error("ACKNOWLEDGE names no status update: its uuid is empty; copy the "
                                           "update's uuid", field="$.body.uuid")))
        elif msg.agent_id in self._partitions.unreachable or msg.agent_id in self._recovery.recovered_agents:
            self._counters["acknowledgements_deferred"] += 1  # the agent sends the update again when back
        else:
            out.append(Send(peer, sm.Error(f"ACKNOWLEDGE: {agent_missing(msg.agent_id, self._partitions, self._recovery)}; it holds no "
                                           "update to acknowledge", field="$.body.agent_id")))

    def on_kill(self, peer: bytes, msg: sm.Kill, now: float, out: list[MasterEffect]) -> None:
        problem = grace_problem("", msg.kill_policy)
        if problem:
            out.append(Send(peer, sm.Error(f"KILL refused: {problem}",
                                           field="$.body.kill_policy.grace_period_seconds")))
            return
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is None:
            return
        task = framework.tasks.get(msg.task_id)
        agent = self._roster.agents.get(task.agent_id) if task is not None else None
        if task is None:
            ended = next((t for t in reversed(framework.completed) if t.task_id == msg.task_id), None)
            if ended is not None:
                # Answered as reconciliation answers it: its end. "Unknown" made a framework
                # relaunch work that had finished (a near miss in a chaos run).
                out.append(update_to(framework, msg.task_id, ended.agent_id, ended.state,
                                     TaskReason.RECONCILIATION, f"task {msg.task_id!r} has already ended", now))
                return
            if self._recovery.expecting(msg.agent_id):
                # After a failover its agent may still re-register with it (as reconciliation
                # does, no answer: the driver sends the kill again). "Unknown" here had a chaos
                # run's framework relaunch a task that then ran: its work ran twice.
                self._counters["kills_deferred"] += 1
                return
        elif agent is None:
            # Held, on an agent that is unreachable: its state, not "unknown" (which says it never
            # ran); the driver repeats the kill, which reaches the agent when it is back.
            out.append(update_to(framework, msg.task_id, task.agent_id, task.state, TaskReason.RECONCILIATION,
                                 f"cannot kill task {msg.task_id!r} now: its agent is unreachable", now))
            return
        if task is None or agent is None:
            state = TaskState.UNKNOWN if framework.partition_aware else TaskState.LOST
            out.append(update_to(framework, msg.task_id, msg.agent_id, state, TaskReason.TASK_UNKNOWN,
                                 f"cannot kill task {msg.task_id!r}: the master does not know it", now))
            return
        out.append(Send(agent.peer, am.KillTask(framework.framework_id, msg.task_id, msg.kill_policy)))
        self._audits.kill_sent((framework.framework_id, msg.task_id), agent.agent_id, msg.kill_policy, now)

    def on_message(self, peer: bytes, msg: sm.Message, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        agent = executor_agent(peer, framework, msg, self._roster.agents, self._partitions, self._recovery, out)
        if framework is not None and agent is not None:
            out.append(Send(agent.peer, am.FrameworkToExecutor(framework.framework_id, msg.executor_id, msg.data)))

    def on_shutdown(self, peer: bytes, msg: sm.Shutdown, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        agent = executor_agent(peer, framework, msg, self._roster.agents, self._partitions, self._recovery, out)
        if framework is not None and agent is not None:
            out.append(Send(agent.peer, am.ShutdownExecutor(framework.framework_id, msg.executor_id)))

    def on_executor_terminated(self, peer: bytes, msg: am.ExecutorTerminated, now: float,
                               out: list[MasterEffect]) -> None:
        agent = self._roster.agent_by_peer(peer)
        framework = self._roster.frameworks.get(msg.framework_id)
        if agent is not None and framework is not None and framework.peer is not None:
            out.append(Send(framework.peer, sm.Failure(agent.agent_id, msg.executor_id, msg.status)))

    def on_executor_to_framework(self, peer: bytes, msg: am.ExecutorToFramework, now: float,
                                 out: list[MasterEffect]) -> None:
        framework = self._roster.frameworks.get(msg.framework_id)
        if self._roster.agent_by_peer(peer) is not None and framework is not None and framework.peer is not None:
            out.append(Send(framework.peer, sm.FrameworkMessage(msg.agent_id, msg.executor_id, msg.data)))

    # --- reconciliation -------------------------------------------------------------------

    def on_reconcile(self, peer: bytes, msg: sm.Reconcile, now: float, out: list[MasterEffect]) -> None:
        """Mesos reconciliation. Implicit (no ids): the state of every task the master knows
        (unreachable ones included). Explicit: each id's known state; for an unknown one, no
        answer while its agent (or, without an agent id, any agent) may still re-register after
        a failover — the framework asks again later; otherwise UNREACHABLE or GONE when its agent
        is, else UNKNOWN (LOST for frameworks that are not PARTITION_AWARE, for all three)."""
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is None:
            return
        if not msg.tasks:
            for task in framework.tasks.values():
                out.append(Send(peer, sm.Update(_known(task, now))))
            return
        completed = {task.task_id: task for task in framework.completed}
        for wanted in msg.tasks:
            known = framework.tasks.get(wanted.task_id) or completed.get(wanted.task_id)
            agent_id = wanted.agent_id
            if known is not None:
                out.append(Send(peer, sm.Update(_known(known, now))))
                continue
            if self._recovery.expecting(agent_id):
                self._counters["reconciliations_deferred"] += 1
                continue
            if agent_id is not None and agent_id in self._partitions.unreachable:
                state, message = TaskState.UNREACHABLE, f"task unknown to the master; agent {agent_id} is unreachable"
            elif agent_id is not None and agent_id in self._partitions.gone:
                state, message = TaskState.GONE, f"task unknown to the master; agent {agent_id} is gone"
            else:
                state, message = TaskState.UNKNOWN, "task unknown to the master"
            if not framework.partition_aware:
                state = TaskState.LOST
            out.append(Send(peer, sm.Update(TaskStatus(
                task_id=wanted.task_id, state=state, source=TaskSource.MASTER, reason=TaskReason.RECONCILIATION,
                agent_id=agent_id, timestamp=now, message=message))))


def _known(task: TaskRecord, now: float) -> TaskStatus:
    return TaskStatus(task_id=task.task_id, state=task.state, source=TaskSource.MASTER,
                      reason=TaskReason.RECONCILIATION, agent_id=task.agent_id, timestamp=now,
                      exit_code=task.status.exit_code if task.status else None)
