"""The agent's status updates as its task flows send them, pure: a :class:`StatusReporter` stamps
an update (source AGENT, this agent's id, the time, a fresh UUID), notes the task for the next
checkpoint (an update is recorded before it is forwarded), and hands it to the reliable
:class:`~tepui.agent.updates.status_updates.StatusUpdateQueue`, telling it whether the master link is up.

The queue itself is shared with the simulator and knows nothing of registration or
checkpoints; this is the agent's side of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tepui.agent.events import AgentEffect, Log, SendToMaster, TaskKey
from tepui.agent.checkpointing.journal import CheckpointJournal
from tepui.agent.link.registration import Registration
from tepui.agent.updates.status_updates import Ack, StatusUpdateQueue
from tepui.agent.tasks import TaskRecord
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskReason, TaskSource, TaskState, TaskStatus


@dataclass(eq=False)
class StatusReporter:
    updates: StatusUpdateQueue[SendToMaster]
    registration: Registration
    journal: CheckpointJournal

    def report(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str | None,
               now: float, out: list[AgentEffect], exit_code: int | None = None,
               labels: dict[str, str] | None = None, healthy: bool | None = None) -> None:
        """A new state (or health) of a task the agent runs, sent reliably."""
        status = TaskStatus(
            task_id=record.info.task_id, state=state, message=message, source=TaskSource.AGENT,
            reason=reason, agent_id=self.registration.agent_id, timestamp=now, uuid=self.updates.new_uuid(),
            exit_code=exit_code, labels=labels or {}, healthy=healthy,
        )
        self.enqueue(record.framework_id, status, now, out)

    def enqueue(self, framework_id: str, status: TaskStatus, now: float, out: list[AgentEffect]) -> None:
        self.journal.touch((framework_id, status.task_id))  # checkpointed before it is forwarded
        self.updates.enqueue(framework_id, status, now, self.registration.registered, out)

    def resend(self, key: TaskKey, now: float, out: list[AgentEffect]) -> None:
        """The task's head again now, rather than at its retry (the backoff goes on doubling)."""
        self.updates.send_head(key, now, self.registration.registered, out)

    def retry(self, key: TaskKey, now: float, out: list[AgentEffect]) -> None:
        self.updates.retry(key, now, self.registration.registered, out)

    def resend_all(self, now: float, out: list[AgentEffect]) -> None:
        """A new registration: what the old connection may have lost."""
        self.updates.resend_all(now, self.registration.registered, out)

    def acknowledge(self, msg: am.StatusUpdateAck, now: float, out: list[AgentEffect]) -> Ack:
        outcome = self.updates.acknowledge(msg.framework_id, msg.task_id, msg.uuid, now,
                                            self.registration.registered, out)
        if outcome is Ack.STALE:
            out.append(Log("debug", "stale_ack_ignored", {"task_id": msg.task_id}))
        else:
            self.journal.touch((msg.framework_id, msg.task_id))
        return outcome

    def drop_framework(self, framework_id: str, out: list[AgentEffect]) -> None:
        """The framework is gone: nobody is left to acknowledge its updates."""
        for key in self.updates.drop_framework(framework_id, out):
            self.journal.touch(key)
