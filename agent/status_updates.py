"""The agent's status update manager (Mesos ``TaskStatusUpdateManager`` semantics), pure.

Every update gets a UUID and waits in a per-task queue until the framework acknowledges it:
one update in flight per task, retried with doubling backoff (10 s → 10 min by default), the
next one sent only after the previous one's ack, stale or unknown acks ignored. A mixin of
:class:`tepui.agent.core.AgentCore`, whose state it shares.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import msgspec

from tepui.agent.events import SendToMaster
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskReason, TaskSource, TaskState, TaskStatus

if TYPE_CHECKING:
    from tepui.agent.core import AgentConfig, TaskRecord

Effect = Any


@dataclass
class _Pending:
    """Updates of one task waiting for acknowledgement; the head is in flight."""

    queue: collections.deque[TaskStatus] = field(default_factory=collections.deque)
    attempts: int = 0


class StatusUpdateManager:
    config: AgentConfig
    agent_id: str | None
    registered: bool
    pending: dict[tuple[str, str], _Pending]
    _dirty_tasks: set[tuple[str, str]]
    _new_uuid: Callable[[], bytes]

    if TYPE_CHECKING:
        def _maybe_exit(self, now: float, out: list[Effect], force: bool = False) -> None: ...

    def _update(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str | None,
                now: float, out: list[Effect], exit_code: int | None = None,
                labels: dict[str, str] | None = None, healthy: bool | None = None) -> None:
        status = TaskStatus(
            task_id=record.info.task_id, state=state, message=message, source=TaskSource.AGENT,
            reason=reason, agent_id=self.agent_id, timestamp=now, uuid=self._new_uuid(), exit_code=exit_code,
            labels=labels or {}, healthy=healthy,
        )
        self._enqueue(record.framework_id, status, now, out)

    def _enqueue(self, framework_id: str, status: TaskStatus, now: float, out: list[Effect]) -> None:
        if status.uuid is None:
            status = msgspec.structs.replace(status, uuid=self._new_uuid())
        key = (framework_id, status.task_id)
        self._dirty_tasks.add(key)  # checkpointed before it is forwarded
        pending = self.pending.setdefault(key, _Pending())
        pending.queue.append(status)
        if len(pending.queue) == 1:
            self._send_head(key, now, out, fresh=True)

    def _send_head(self, key: tuple[str, str], now: float, out: list[Effect], fresh: bool = False) -> None:
        pending = self.pending[key]
        if fresh:
            pending.attempts = 0
        delay = min(self.config.update_retry_initial * (2 ** pending.attempts), self.config.update_retry_max)
        pending.attempts += 1
        if self.registered:
            out.append(SendToMaster(am.StatusUpdate(key[0], pending.queue[0])))
        out.append(ScheduleTimer(now + delay, ("retry",) + key))

    def _on_StatusUpdateAck(self, msg: am.StatusUpdateAck, epoch: int, now: float, out: list[Effect]) -> None:
        key = (msg.framework_id, msg.task_id)
        pending = self.pending.get(key)
        if pending is None or pending.queue[0].uuid != msg.uuid:
            out.append(Log("debug", "stale_ack_ignored", {"task_id": msg.task_id}))
            return
        pending.queue.popleft()
        self._dirty_tasks.add(key)
        if pending.queue:
            self._send_head(key, now, out, fresh=True)
        else:
            del self.pending[key]
            out.append(CancelTimer(("retry",) + key))
            self._maybe_exit(now, out)
