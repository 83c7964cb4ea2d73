"""Reliable status updates (Mesos ``TaskStatusUpdateManager`` semantics), pure, one per agent.

Every update gets a UUID and waits in a per-task queue until the framework acknowledges it:
one update in flight per task, retried with doubling backoff (10 s → 10 min by default), the
next one sent only after the previous one's ack, stale or unknown acks ignored. A framework so
sees each task's states in order and a terminal state exactly once per ack.

:class:`StatusUpdateQueue` owns the queues and nothing else: it is told whether the master link
is up (``connected``: an update is queued and its retry armed even while it is not, and every
head is sent again on registration), and how to name its effects — the real agent's
``SendToMaster(body)`` and ``RetryUpdate(framework id, task id)``, the simulator's with the
simulated agent's index — so that the agent (:mod:`tepui.agent.core`) and the simulator
(:mod:`tepui.sim.core`), which must behave alike on the wire, share one implementation.

It is a read-only mapping (task key → :class:`PendingUpdates`) for whoever needs to look:
checkpoints, re-registration reports, pong digests, tests.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Generic, Protocol, TypeVar

import msgspec

from tepui.sdk.effects import CancelTimer, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskStatus

TaskKey = tuple[str, str]  # (framework id, task id)
E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)


class Sink(Protocol[E_contra]):
    """Where effects go: the caller's effect list, whatever its own effect union."""

    def append(self, item: E_contra, /) -> None: ...


Out = Sink[E | ScheduleTimer | CancelTimer]


class PendingUpdates:
    """Updates of one task waiting for acknowledgement; the head (``queue[0]``) is in flight.
    A list, not a deque: it almost always holds one update, and 100,000 deques (a simulator's
    10,000 agents) cost 60 MB. ``timer`` is the task's retry key, made once: every schedule and
    cancel of it then passes the same object, which a shell's timer table finds by identity
    (a frozen dataclass compares field by field, ~0.8 µs, and costs ~0.5 µs to build)."""

    __slots__ = ("queue", "attempts", "timer")

    def __init__(self, timer: Hashable, queue: list[TaskStatus] | None = None) -> None:
        self.queue: list[TaskStatus] = queue if queue is not None else []
        self.attempts = 0
        self.timer = timer


class Ack(enum.Enum):
    """What an acknowledgement did."""

    STALE = "stale"  # not the head's UUID (or no update waits): nothing changed
    NEXT = "next"  # the head is done; the task's next update went out
    DRAINED = "drained"  # the head was the task's last waiting update; its retry timer is cancelled


class StatusUpdateQueue(Mapping[TaskKey, PendingUpdates], Generic[E]):
    __slots__ = ("_pending", "_retry_initial", "_retry_max", "_first_delay", "_new_uuid", "_send", "_retry_key")

    def __init__(self, retry_initial: float, retry_max: float, new_uuid: Callable[[], bytes],
                 send: Callable[[am.StatusUpdate], E], retry_key: Callable[[str, str], Hashable]) -> None:
        self._pending: dict[TaskKey, PendingUpdates] = {}
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._first_delay = min(retry_initial, retry_max)
        self._new_uuid = new_uuid
        self._send = send
        self._retry_key = retry_key

    # --- the mapping ----------------------------------------------------------------------

    def __getitem__(self, key: TaskKey) -> PendingUpdates:
        return self._pending[key]

    def __iter__(self) -> Iterator[TaskKey]:
        return iter(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def head(self, key: TaskKey) -> TaskStatus | None:
        """The update of this task in flight, if any."""
        pending = self._pending.get(key)
        return pending.queue[0] if pending is not None else None

    def holds(self, key: TaskKey, uuid: bytes) -> bool:
        """An update with this UUID waits for this task (an executor resending it is taken once)."""
        pending = self._pending.get(key)
        return pending is not None and any(s.uuid == uuid for s in pending.queue)

    # --- changes --------------------------------------------------------------------------

    def new_uuid(self) -> bytes:
        return self._new_uuid()

    def enqueue(self, framework_id: str, status: TaskStatus, now: float, connected: bool, out: Out[E]) -> TaskKey:
        """Queues ``status`` (given a UUID if it has none); sends it at once when it is the
        task's only waiting update. Returns the task's key."""
        if status.uuid is None:
            status = msgspec.structs.replace(status, uuid=self._new_uuid())
        key = (framework_id, status.task_id)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = PendingUpdates(self._retry_key(*key))
        pending.queue.append(status)
        if len(pending.queue) == 1:
            self._send_fresh(framework_id, pending, now, connected, out)
        return key

    def _send_fresh(self, framework_id: str, pending: PendingUpdates, now: float, connected: bool,
                    out: Out[E]) -> None:
        """``send_head(fresh=True)`` without looking the task up (the common path: a new head)."""
        pending.attempts = 1
        if connected:
            out.append(self._send(am.StatusUpdate(framework_id, pending.queue[0])))
        out.append(ScheduleTimer(now + self._first_delay, pending.timer))

    def send_head(self, key: TaskKey, now: float, connected: bool, out: Out[E], fresh: bool = False) -> None:
        """Sends the task's head (when connected) and arms its retry; ``fresh`` restarts the
        backoff (a new head, a new connection), else it doubles up to ``retry_max``."""
        pending = self._pending[key]
        if fresh:
            self._send_fresh(key[0], pending, now, connected, out)
            return
        delay = min(self._retry_initial * (2 ** pending.attempts), self._retry_max)
        pending.attempts += 1
        if connected:
            out.append(self._send(am.StatusUpdate(key[0], pending.queue[0])))
        out.append(ScheduleTimer(now + delay, pending.timer))

    def retry(self, key: TaskKey, now: float, connected: bool, out: Out[E]) -> bool:
        """The retry timer of ``key`` fired: the head again, if one still waits."""
        if key not in self._pending:
            return False
        self.send_head(key, now, connected, out)
        return True

    def resend_all(self, now: float, connected: bool, out: Out[E]) -> None:
        """Every head again, backoff restarted: what the old connection may have lost."""
        for key, pending in self._pending.items():
            self._send_fresh(key[0], pending, now, connected, out)

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes, now: float, connected: bool,
                    out: Out[E]) -> Ack:
        key = (framework_id, task_id)
        pending = self._pending.get(key)
        if pending is None or pending.queue[0].uuid != uuid:
            return Ack.STALE
        del pending.queue[0]
        if pending.queue:
            self._send_fresh(framework_id, pending, now, connected, out)
            return Ack.NEXT
        del self._pending[key]
        out.append(CancelTimer(pending.timer))
        return Ack.DRAINED

    def drop_framework(self, framework_id: str, out: Out[E]) -> list[TaskKey]:
        """Forgets the framework's updates (it is gone: nobody is left to acknowledge them)."""
        dropped = [k for k in self._pending if k[0] == framework_id]
        for key in dropped:
            out.append(CancelTimer(self._pending.pop(key).timer))
        return dropped

    def drop_all(self, out: Out[E]) -> None:
        for pending in self._pending.values():
            out.append(CancelTimer(pending.timer))
        self._pending.clear()

    def restore(self, key: TaskKey, updates: list[TaskStatus]) -> None:
        """Takes back a task's unacknowledged updates from a checkpoint (recovery); nothing is
        sent until registration resends every head."""
        self._pending[key] = PendingUpdates(self._retry_key(*key), list(updates))
