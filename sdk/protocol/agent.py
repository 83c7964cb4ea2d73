"""Agent ↔ master messages (Mesos's internal ``RegisterSlaveMessage``, ``RunTaskMessage``...).

The agent is the source of truth for tasks: re-registration carries every task it runs, so a
master that lost its memory rebuilds it from the agents.
"""

from __future__ import annotations

from typing import Union

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


class TaskReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A task as the agent knows it, sent on re-registration."""

    framework_id: str
    task: TaskInfo
    state: TaskState


# --- agent → master ---------------------------------------------------------------------------


class RegisterAgent(_Tagged, tag="REGISTER_AGENT"):
    agent_info: AgentInfo
    version: str
    boot_id: str | None = None
    # After a host reboot: the id this agent had before. Its tasks ended with the boot; the
    # master removes that agent at once rather than waiting for it to go unreachable.
    previous_agent_id: str | None = None


class ReregisterAgent(_Tagged, tag="REREGISTER_AGENT"):
    """Sent by an agent that already has an id (after a master failover or a lost link)."""

    agent_info: AgentInfo
    version: str
    tasks: list[TaskReport] = []
    frameworks: list[FrameworkInfo] = []
    boot_id: str | None = None


class StatusUpdate(_Tagged, tag="STATUS_UPDATE"):
    """A task status the framework must acknowledge by ``status.uuid``."""

    framework_id: str
    status: TaskStatus


class Pong(_Tagged, tag="PONG"):
    seq: int


class ExecutorToFramework(_Tagged, tag="EXECUTOR_TO_FRAMEWORK"):
    framework_id: str
    executor_id: str
    agent_id: str
    data: bytes


class UnregisterAgent(_Tagged, tag="UNREGISTER_AGENT"):
    agent_id: str


class ExecutorTerminated(_Tagged, tag="EXECUTOR_TERMINATED"):
    """A custom executor's process ended (the framework hears FAILURE with the executor id)."""

    framework_id: str
    executor_id: str
    status: int | None = None


AgentToMaster = Union[
    RegisterAgent, ReregisterAgent, StatusUpdate, Pong, ExecutorToFramework, UnregisterAgent, ExecutorTerminated
]


# --- master → agent ---------------------------------------------------------------------------


class AgentRegistered(_Tagged, tag="AGENT_REGISTERED"):
    agent_id: str
    master_info: MasterInfo
    ping_interval_seconds: float


class AgentReregistered(_Tagged, tag="AGENT_REREGISTERED"):
    agent_id: str
    master_info: MasterInfo
    ping_interval_seconds: float


class RunTask(_Tagged, tag="RUN_TASK"):
    framework_info: FrameworkInfo
    task: TaskInfo


class RunTaskGroup(_Tagged, tag="RUN_TASK_GROUP"):
    framework_info: FrameworkInfo
    executor: ExecutorInfo
    task_group: TaskGroupInfo


class KillTask(_Tagged, tag="KILL_TASK"):
    framework_id: str
    task_id: str
    kill_policy: KillPolicy | None = None


class StatusUpdateAck(_Tagged, tag="STATUS_UPDATE_ACK"):
    framework_id: str
    task_id: str
    uuid: bytes


class Ping(_Tagged, tag="PING"):
    """``interval_seconds``: the master's ping interval now (it grows with the cluster, see
    ``--max-agent-pings-per-second``), so that the agent judges the master's silence by it."""

    seq: int
    interval_seconds: float | None = None


class ShutdownFramework(_Tagged, tag="SHUTDOWN_FRAMEWORK"):
    framework_id: str


class ShutdownExecutor(_Tagged, tag="SHUTDOWN_EXECUTOR"):
    framework_id: str
    executor_id: str


class FrameworkToExecutor(_Tagged, tag="FRAMEWORK_TO_EXECUTOR"):
    framework_id: str
    executor_id: str
    data: bytes


class ShutdownAgent(_Tagged, tag="SHUTDOWN_AGENT"):
    message: str


class DestroyVolumes(_Tagged, tag="DESTROY_VOLUMES"):
    """Persistent volumes the master destroyed: the agent deletes their data."""

    volumes: list[Resource]


class ReconcileTasks(_Tagged, tag="RECONCILE_TASKS"):
    """Tasks the master placed on this agent that its re-registration did not report (Mesos
    ``ReconcileTasksMessage``). The master does not declare them lost itself: a RUN_TASK sent
    just before may still be on its way, and messages from the master arrive in order. The
    agent answers each id it has never seen with TASK_DROPPED (TASK_LOST for frameworks that
    are not PARTITION_AWARE) and ignores the ones it knows. ``framework_info`` tells an agent
    that never ran a task of the framework whether it is partition aware."""

    framework_id: str
    task_ids: list[str]
    framework_info: FrameworkInfo | None = None


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
]
