"""The agent's checkpoint records, and the ``Checkpoint`` effect the core emits to write them.

Pure (the core and ``recovery.py`` build and read these): the files they live in, how they are
written and read back, are ``checkpoint_store.py``'s (the shell's side). A record is a msgspec
struct that refuses unknown fields and carries its ``format``, so a checkpoint written by another
version is recognised as such, not misread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from tepui.sdk.protocol.values import ExecutorInfo, FrameworkInfo, Resource, TaskInfo, TaskState, TaskStatus

FORMAT = 1


class AgentCheckpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    agent_id: str
    boot_id: str | None
    hostname: str
    resources: list[Resource]  # what the agent offered (for the reconfiguration policy)
    attributes: dict[str, str] = {}
    frameworks: dict[str, FrameworkInfo] = {}
    format: int = FORMAT


class TaskCheckpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    framework_id: str
    info: TaskInfo
    sandbox: str
    state: TaskState
    kind: str  # "process", "docker" or "executor" (runs inside a custom executor)
    launched: bool = False  # the launch (or hand-over to the executor) was performed
    terminal: bool = False  # ended; kept only for its unacknowledged updates
    kill_requested: bool = False
    kill_grace: float = 5.0
    kill_reason: str | None = None
    exit_code: int | None = None
    group: str | None = None
    gpus: tuple[int, ...] = ()
    environment: dict[str, str] = {}
    updates: list[TaskStatus] = []  # unacknowledged, oldest (in flight) first
    format: int = FORMAT


class ExecutorCheckpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    framework_id: str
    info: ExecutorInfo
    sandbox: str
    tasks: list[str] = []
    shutting_down: bool = False
    secret: str | None = None  # what its SUBSCRIBE must carry (the file is 0600 in a 0700 directory)


class ExecutorsCheckpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    executors: list[ExecutorCheckpoint] = []
    format: int = FORMAT


@dataclass(frozen=True)
class Checkpoint:
    """An effect: write these before doing anything else in the batch. ``tasks`` maps a task
    key to its new record, or None when the task is finished and fully acknowledged."""

    agent: AgentCheckpoint | None = None
    tasks: dict[tuple[str, str], TaskCheckpoint | None] = field(default_factory=dict)
    executors: ExecutorsCheckpoint | None = None


@dataclass
class Recovered:
    agent: AgentCheckpoint | None
    tasks: list[TaskCheckpoint]
    executors: list[ExecutorCheckpoint]
    discarded: list[str]  # what lenient mode threw away (paths, with why)
