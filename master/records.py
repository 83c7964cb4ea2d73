"""What the master remembers about agents, frameworks, tasks and offers (in memory; the
registry issue persists the durable part). Plain mutable records owned by the core."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import msgspec

from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus
from tepui.sdk.resources import Resources


MAX_KEPT_MESSAGE = 1024


def kept_status(status: TaskStatus) -> TaskStatus:
    """What the master keeps of a task's latest status: ``/state`` shows its message and exit
    code, nothing reads its data or labels. A custom executor (a framework's code) writes all
    three; kept whole, a megabyte message for each of the 1,000 completed tasks a framework
    keeps was a gigabyte of memory and of ``/state`` (issue 15). The framework still gets the
    whole update."""
    if status.data is None and not status.labels and len(status.message or "") <= MAX_KEPT_MESSAGE:
        return status
    message = status.message
    if message is not None and len(message) > MAX_KEPT_MESSAGE:
        message = f"{message[:MAX_KEPT_MESSAGE]}...[{len(message) - MAX_KEPT_MESSAGE} more characters]"
    return msgspec.structs.replace(status, message=message, data=None, labels={})


@dataclass
class TaskRecord:
    framework_id: str
    agent_id: str
    info: TaskInfo
    resources: Resources
    role: str
    state: TaskState = TaskState.STAGING
    status: TaskStatus | None = None
    launched_at: float = 0.0
    launch_mark: int = 0  # master/failures/task_audit.py: launched after which pings (0: learned from its agent)
    history: list[tuple[str, float]] = field(default_factory=list)  # (state, time), bounded

    def record(self, state: TaskState, at: float) -> None:
        """Keeps every state change for /state (Mesos's ``statuses``), at most 32."""
        self.history.append((state.value, at))
        del self.history[:-32]

    @property
    def task_id(self) -> str:
        return self.info.task_id


@dataclass
class AgentRecord:
    agent_id: str
    peer: bytes
    hostname: str
    total: Resources
    attributes: dict[str, str]
    version: str
    registered_at: float
    last_pong: float
    http_port: int | None = None
    address: str | None = None  # where its HTTP API is reached (AgentInfo.address)
    http_tls: bool = False  # that API is HTTPS only (AgentInfo.http_tls)
    reported: Resources | None = None  # what the agent itself says it has (its flags), when known
    incarnation: str | None = None  # of the agent process that registered last (fencing)
    task_user: str | None = None  # who its tasks without command.user run as (AgentInfo.task_user)
    tasks: dict[tuple[str, str], TaskRecord] = field(default_factory=dict)  # (fid, tid)
    offers: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class UnreachableAgent:
    """An agent that stopped answering pings (Mesos ``slaves.unreachable``). The master keeps
    what its registry held of it (its total resources carry dynamic reservations and volumes,
    so a returning agent gets them back) and since when it is unreachable (it becomes gone
    after ``agent_gone_timeout``)."""

    info: AgentInfo
    since: float


@dataclass
class FrameworkRecord:
    framework_id: str
    info: FrameworkInfo
    peer: bytes | None
    registered_at: float
    active: bool = True
    disconnected_at: float | None = None
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    completed: collections.deque[TaskRecord] = field(default_factory=lambda: collections.deque(maxlen=1000))
    offers: set[str] = field(default_factory=set)

    @property
    def partition_aware(self) -> bool:
        return "PARTITION_AWARE" in self.info.capabilities


@dataclass
class OfferRecord:
    offer_id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    created_at: float
