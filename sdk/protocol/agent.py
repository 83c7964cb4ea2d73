"""Agent ↔ master messages (Mesos's internal ``RegisterSlaveMessage``, ``RunTaskMessage``...).

The agent is the source of truth for tasks: re-registration carries every task it runs, so a
master that lost its memory rebuilds it from the agents.
"""

from __future__ import annotations

import zlib
from typing import Iterable, Union

import msgspec
from tepui.sdk.protocol.values import (
    Resource,
    AgentInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    MasterInfo,
    TaskGroupInfo,
    TaskInfo,
    TaskState,
    TaskStatus,
)
from tepui.sdk.protocol.values import (
    Tagged as _Tagged,
)
from tepui.sdk.protocol.scheduler import Error  # the master's answer to a call it could not take (a standby's, a malformed one)


class TaskReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A task as the agent knows it, sent on re-registration."""

    framework_id: str
    task: TaskInfo
    state: TaskState


# --- agent → master ---------------------------------------------------------------------------


class RegisterAgent(_Tagged, tag="REGISTER_AGENT", frozen=True):
    agent_info: AgentInfo
    version: str
    boot_id: str | None = None
    # After a host reboot: the id this agent had before. Its tasks ended with the boot; the
    # master removes that agent at once rather than waiting for it to go unreachable.
    previous_agent_id: str | None = None


class ReregisterAgent(_Tagged, tag="REREGISTER_AGENT", frozen=True):
    """Sent by an agent that already has an id (after a master failover or a lost link)."""

    agent_info: AgentInfo
    version: str
    tasks: list[TaskReport] = []
    frameworks: list[FrameworkInfo] = []
    boot_id: str | None = None


class StatusUpdate(_Tagged, tag="STATUS_UPDATE", frozen=True):
    """A task status the framework must acknowledge by ``status.uuid``."""

    framework_id: str
    status: TaskStatus


class Pong(_Tagged, tag="PONG", frozen=True):
    """The answer to ``PING``. ``tasks`` and ``digest`` describe the tasks the agent holds that
    the master should hold as not ended (:func:`task_set_digest`): the master compares them
    with its own record and audits the agent when they disagree twice running. Both absent
    (an older agent, the simulator's minimal mode): nothing is compared."""

    seq: int
    tasks: int | None = None
    digest: int | None = None


class TaskAudit(_Tagged, tag="TASK_AUDIT", frozen=True):
    """The answer to ``AUDIT_TASKS`` ``seq``. ``tasks``: what a re-registration would report —
    every task the agent holds that has not ended, and every ended one whose final update still
    waits for an acknowledgement (sent again at once, same UUID, if it was asked about).
    ``ended``: asked tasks that ended here with their final update acknowledged, with that end.
    Asked ids it never saw are in neither: they are answered TASK_DROPPED (LOST for frameworks
    that are not PARTITION_AWARE) through the reliable status updates, sent before this."""

    seq: int
    tasks: list[TaskReport] = []
    ended: list[TaskReport] = []


class ExecutorToFramework(_Tagged, tag="EXECUTOR_TO_FRAMEWORK", frozen=True):
    framework_id: str
    executor_id: str
    agent_id: str
    data: bytes


class UnregisterAgent(_Tagged, tag="UNREGISTER_AGENT", frozen=True):
    agent_id: str


class ExecutorTerminated(_Tagged, tag="EXECUTOR_TERMINATED", frozen=True):
    """A custom executor's process ended (the framework hears FAILURE with the executor id)."""

    framework_id: str
    executor_id: str
    status: int | None = None


AgentToMaster = Union[
    RegisterAgent, ReregisterAgent, StatusUpdate, Pong, ExecutorToFramework, UnregisterAgent, ExecutorTerminated,
    TaskAudit,
]


# --- master → agent ---------------------------------------------------------------------------


class AgentRegistered(_Tagged, tag="AGENT_REGISTERED", frozen=True):
    agent_id: str
    master_info: MasterInfo
    ping_interval_seconds: float


class AgentReregistered(_Tagged, tag="AGENT_REREGISTERED", frozen=True):
    agent_id: str
    master_info: MasterInfo
    ping_interval_seconds: float


class RunTask(_Tagged, tag="RUN_TASK", frozen=True):
    framework_info: FrameworkInfo
    task: TaskInfo


class RunTaskGroup(_Tagged, tag="RUN_TASK_GROUP", frozen=True):
    framework_info: FrameworkInfo
    executor: ExecutorInfo
    task_group: TaskGroupInfo


class KillTask(_Tagged, tag="KILL_TASK", frozen=True):
    framework_id: str
    task_id: str
    kill_policy: KillPolicy | None = None


class StatusUpdateAck(_Tagged, tag="STATUS_UPDATE_ACK", frozen=True):
    framework_id: str
    task_id: str
    uuid: bytes


class Ping(_Tagged, tag="PING", frozen=True):
    """``interval_seconds``: the master's ping interval now (it grows with the cluster, see
    ``--max-agent-pings-per-second``), so that the agent judges the master's silence by it."""

    seq: int
    interval_seconds: float | None = None


class ShutdownFramework(_Tagged, tag="SHUTDOWN_FRAMEWORK", frozen=True):
    framework_id: str


class ShutdownExecutor(_Tagged, tag="SHUTDOWN_EXECUTOR", frozen=True):
    framework_id: str
    executor_id: str


class FrameworkToExecutor(_Tagged, tag="FRAMEWORK_TO_EXECUTOR", frozen=True):
    framework_id: str
    executor_id: str
    data: bytes


class ShutdownAgent(_Tagged, tag="SHUTDOWN_AGENT", frozen=True):
    message: str


class DestroyVolumes(_Tagged, tag="DESTROY_VOLUMES", frozen=True):
    """Persistent volumes the master destroyed: the agent deletes their data."""

    volumes: list[Resource]


class ReconcileTasks(_Tagged, tag="RECONCILE_TASKS", frozen=True):
    """Tasks the master placed on this agent that its re-registration did not report (Mesos
    ``ReconcileTasksMessage``). The master does not declare them lost itself: a RUN_TASK sent
    just before may still be on its way, and messages from the master arrive in order. The
    agent answers each id it has never seen with TASK_DROPPED (TASK_LOST for frameworks that
    are not PARTITION_AWARE) and ignores the ones it knows. ``framework_info`` tells an agent
    that never ran a task of the framework whether it is partition aware."""

    framework_id: str
    task_ids: list[str]
    framework_info: FrameworkInfo | None = None


class AuditTasks(_Tagged, tag="AUDIT_TASKS", frozen=True):
    """Anti-entropy (issue 14): every task this master holds on the agent as not ended
    (framework id → task ids), asked after a re-registration that left some unreported and
    whenever the agent's ``PONG`` digest disagrees with the master's twice running; asked again
    (with a new ``seq``) every ping interval until a ``TASK_AUDIT`` answers. Messages from the
    master arrive in order, so every RUN_TASK sent before the question has been handled when the
    agent answers: an asked id it never saw was lost on the way. ``frameworks`` tells an agent
    that never ran a task of a framework whether it is PARTITION_AWARE (DROPPED, else LOST)."""

    seq: int
    tasks: dict[str, list[str]]
    frameworks: list[FrameworkInfo] = []


MasterToAgent = Union[
    AgentRegistered,
    AgentReregistered,
    RunTask,
    RunTaskGroup,
    KillTask,
    StatusUpdateAck,
    Ping,
    ShutdownFramework,
    ShutdownExecutor,
    FrameworkToExecutor,
    ShutdownAgent,
    DestroyVolumes,
    ReconcileTasks,
    AuditTasks,
    Error,
]


def task_set_digest(keys: Iterable[tuple[str, str]]) -> int:
    """The digest of a set of (framework id, task id) pairs carried by ``PONG``: the sum, modulo
    2**32, of the CRC-32 of ``framework_id + "\\0" + task_id`` in UTF-8. A sum is independent of
    order, so both sides compute it from a dict without sorting; with the count beside it, two
    sets that differ agree by chance once in about four billion audits."""
    total = 0
    for framework_id, task_id in keys:
        total += zlib.crc32(f"{framework_id}\0{task_id}".encode())
    return total & 0xFFFFFFFF
