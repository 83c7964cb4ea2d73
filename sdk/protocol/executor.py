"""Executor ↔ agent messages (the Mesos v1 executor API), spoken over ``ipc://`` in the agent's
work dir. Handled by the agent from the custom-executor issue on; defined now so the
vocabulary is complete."""

from __future__ import annotations

from typing import Union

import msgspec
from tepui.sdk.protocol.values import (
    AgentInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    TaskGroupInfo,
    TaskInfo,
    TaskStatus,
)
from tepui.sdk.protocol.values import (
    Tagged as _Tagged,
)


class UnacknowledgedUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    framework_id: str
    status: TaskStatus


# --- executor → agent -------------------------------------------------------------------------


class ExecutorSubscribe(_Tagged, tag="SUBSCRIBE", frozen=True):
    """``secret``: the one the agent put in this executor's environment when it started it
    (``TEPUI_EXECUTOR_SECRET``, Mesos's executor token); the agent refuses a SUBSCRIBE without
    it, so another local process cannot pose as an executor the agent launched."""

    framework_id: str
    executor_id: str
    unacknowledged_tasks: list[TaskInfo] = []
    unacknowledged_updates: list[UnacknowledgedUpdate] = []
    secret: str | None = None

    def __repr__(self) -> str:  # a logged or printed SUBSCRIBE must not show the secret
        shown = "None" if self.secret is None else "'<redacted>'"
        return (f"ExecutorSubscribe(framework_id={self.framework_id!r}, executor_id={self.executor_id!r}, "
                f"unacknowledged_tasks=<{len(self.unacknowledged_tasks)}>, "
                f"unacknowledged_updates=<{len(self.unacknowledged_updates)}>, secret={shown})")


class ExecutorUpdate(_Tagged, tag="UPDATE", frozen=True):
    status: TaskStatus


class ExecutorMessage(_Tagged, tag="MESSAGE", frozen=True):
    data: bytes


class ExecutorHeartbeat(_Tagged, tag="HEARTBEAT", frozen=True):
    pass


ExecutorCall = Union[ExecutorSubscribe, ExecutorUpdate, ExecutorMessage, ExecutorHeartbeat]


# --- agent → executor -------------------------------------------------------------------------


class ExecutorSubscribed(_Tagged, tag="SUBSCRIBED", frozen=True):
    executor_info: ExecutorInfo
    framework_info: FrameworkInfo
    agent_info: AgentInfo


class LaunchTask(_Tagged, tag="LAUNCH", frozen=True):
    task: TaskInfo


class LaunchTaskGroup(_Tagged, tag="LAUNCH_GROUP", frozen=True):
    task_group: TaskGroupInfo


class KillTaskEvent(_Tagged, tag="KILL", frozen=True):
    task_id: str
    kill_policy: KillPolicy | None = None


class Acknowledged(_Tagged, tag="ACKNOWLEDGED", frozen=True):
    task_id: str
    uuid: bytes


class MessageToExecutor(_Tagged, tag="MESSAGE", frozen=True):
    data: bytes


class ExecutorError(_Tagged, tag="ERROR", frozen=True):
    message: str


class ShutdownEvent(_Tagged, tag="SHUTDOWN", frozen=True):
    pass


class ExecutorHeartbeatEvent(_Tagged, tag="HEARTBEAT", frozen=True):
    pass


ExecutorEvent = Union[
    ExecutorSubscribed,
    LaunchTask,
    LaunchTaskGroup,
    KillTaskEvent,
    Acknowledged,
    MessageToExecutor,
    ExecutorError,
    ShutdownEvent,
    ExecutorHeartbeatEvent,
]
