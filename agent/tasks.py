"""The agent's tasks: those it runs, and the last ones that ended, pure.

The agent is the source of truth for its tasks (DESIGN §6): :class:`TaskTable` holds a
:class:`TaskRecord` per running task, keyed by (framework id, task id), and remembers the last
ended ones (:class:`CompletedTasks`) so that a RUN_TASK for a task that already ran is refused
as a duplicate — at most once per task id. A record moves from ``running`` to ``completed``
exactly once, when the task ends (``finish``).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Iterator

from tepui.agent.events import LaunchContainer, LaunchProcess, TaskKey
from tepui.agent.health_checks.health import HealthState
from tepui.sdk.protocol.values import TaskInfo, TaskState


@dataclass
class TaskRecord:
    framework_id: str
    info: TaskInfo
    sandbox: str
    state: TaskState = TaskState.STAGING
    pid: int | None = None
    kill_requested: bool = False
    kill_grace: float = 5.0
    exited: bool = False
    exit_code: int | None = None
    launch: LaunchProcess | LaunchContainer | None = None  # the launch effect held back while URIs are fetched
    environment: dict[str, str] = field(default_factory=dict)
    health: HealthState | None = None
    unhealthy: str | None = None  # why it was killed for failing its health checks
    gpus: tuple[int, ...] = ()  # GPU indices held
    group: str | None = None  # the task group (its executor id), for group-wide kills
    kill_reason: str | None = None  # why the agent itself killed it

    @property
    def key(self) -> TaskKey:
        return (self.framework_id, self.info.task_id)


class CompletedTasks:
    """The last ``limit`` finished tasks, oldest first, and which (framework, task) ids they
    are: a RUN_TASK for a finished task is a duplicate, and asking the deque was a scan per
    launch (6% of a busy agent's time)."""

    def __init__(self, limit: int) -> None:
        self._records: collections.deque[TaskRecord] = collections.deque()
        self._keys: collections.Counter[tuple[str, str]] = collections.Counter()
        self.limit = limit

    def append(self, record: TaskRecord) -> None:
        if len(self._records) >= self.limit:
            old = self._records.popleft()
            key = (old.framework_id, old.info.task_id)
            self._keys[key] -= 1
            if not self._keys[key]:
                del self._keys[key]
        self._records.append(record)
        self._keys[(record.framework_id, record.info.task_id)] += 1

    def has(self, framework_id: str, task_id: str) -> bool:
        return (framework_id, task_id) in self._keys

    def newest(self, key: TaskKey) -> TaskRecord | None:
        """The latest record of this task among the ended ones."""
        if key not in self._keys:
            return None
        return next((r for r in reversed(self._records) if (r.framework_id, r.info.task_id) == key), None)

    def __iter__(self) -> Iterator[TaskRecord]:
        return iter(self._records)

    def __reversed__(self) -> Iterator[TaskRecord]:
        return reversed(self._records)

    def __len__(self) -> int:
        return len(self._records)


class TaskTable:
    """Running tasks by key, and the ended ones remembered."""

    def __init__(self, completed_limit: int = 1000) -> None:
        self.running: dict[TaskKey, TaskRecord] = {}
        self.completed = CompletedTasks(completed_limit)

    def get(self, key: TaskKey) -> TaskRecord | None:
        return self.running.get(key)

    def add(self, record: TaskRecord) -> None:
        self.running[record.key] = record

    def finish(self, record: TaskRecord) -> None:
        """The task ended: from the running ones to the completed ones."""
        self.running.pop(record.key, None)
        self.completed.append(record)

    def seen(self, key: TaskKey) -> bool:
        """Running, or among the last ended (with the update queue: ``known``)."""
        return key in self.running or self.completed.has(*key)

    def of_framework(self, framework_id: str) -> list[TaskRecord]:
        return [r for r in self.running.values() if r.framework_id == framework_id]

    def gpus_held(self) -> set[int]:
        return {i for r in self.running.values() for i in r.gpus}

    def __len__(self) -> int:
        return len(self.running)


def task_user(task: TaskInfo, default: str | None) -> str | None:
    """Who the task runs as: its ``command.user``, else the agent's ``--task-user`` (``default``)."""
    requested = task.command.user if task.command else None
    return requested if requested is not None else default


def unsafe_name(value: str) -> bool:
    """True for what cannot be one path component under the agent's work dir."""
    return value in ("", ".", "..") or "/" in value or "\0" in value
