"""Framework ↔ master messages: the Mesos v1 scheduler API's calls, events and offer operations.

Each message is a tagged Struct; the tag travels in the ``type`` field, spelled as in Mesos
(``SUBSCRIBE``, ``ACCEPT``, ``OFFERS``...). A framework written in another language sends a
plain MessagePack map ``{"type": "DECLINE", "framework_id": ..., "offer_ids": [...]}``.
"""

from __future__ import annotations

from typing import Union

from tepui.sdk.protocol.values import (
    DemandShape,
    ExecutorInfo,
    Filters,
    FrameworkInfo,
    KillPolicy,
    MasterInfo,
    Offer,
    ReconcileTask,
    Resource,
    RoleExplanation,
    TaskGroupInfo,
    TaskInfo,
    TaskStatus,
)
from tepui.sdk.protocol.values import (
    Tagged as _Tagged,
)

# --- offer operations (Offer.Operation) -------------------------------------------------------


class Launch(_Tagged, tag="LAUNCH", frozen=True):
    task_infos: list[TaskInfo]


class LaunchGroup(_Tagged, tag="LAUNCH_GROUP", frozen=True):
    executor: ExecutorInfo
    task_group: TaskGroupInfo


class Reserve(_Tagged, tag="RESERVE", frozen=True):
    resources: list[Resource]
    source: list[Resource] = []


class Unreserve(_Tagged, tag="UNRESERVE", frozen=True):
    resources: list[Resource]


class Create(_Tagged, tag="CREATE", frozen=True):
    volumes: list[Resource]


class Destroy(_Tagged, tag="DESTROY", frozen=True):
    volumes: list[Resource]


Operation = Union[Launch, LaunchGroup, Reserve, Unreserve, Create, Destroy]


# --- calls: framework → master ----------------------------------------------------------------


class Subscribe(_Tagged, tag="SUBSCRIBE", frozen=True):
    """First call of a framework; with ``framework_info.id`` set it re-subscribes (failover).
    ``demand`` (Tepui extension) declares pending task shapes up front; None: not declared."""

    framework_info: FrameworkInfo
    suppressed_roles: list[str] = []
    demand: list[DemandShape] | None = None


class Teardown(_Tagged, tag="TEARDOWN", frozen=True):
    framework_id: str


class Accept(_Tagged, tag="ACCEPT", frozen=True):
    """Unused resources of the accepted offers count as declined for ``filters``."""

    framework_id: str
    offer_ids: list[str]
    operations: list[Operation] = []
    filters: Filters | None = None


class Decline(_Tagged, tag="DECLINE", frozen=True):
    framework_id: str
    offer_ids: list[str]
    filters: Filters | None = None


class Revive(_Tagged, tag="REVIVE", frozen=True):
    """Unsuppresses ``roles`` and clears their decline filters (all roles when empty)."""

    framework_id: str
    roles: list[str] = []


class Suppress(_Tagged, tag="SUPPRESS", frozen=True):
    framework_id: str
    roles: list[str] = []


class Kill(_Tagged, tag="KILL", frozen=True):
    framework_id: str
    task_id: str
    agent_id: str | None = None
    kill_policy: KillPolicy | None = None


class Shutdown(_Tagged, tag="SHUTDOWN", frozen=True):
    framework_id: str
    executor_id: str
    agent_id: str


class Acknowledge(_Tagged, tag="ACKNOWLEDGE", frozen=True):
    framework_id: str
    agent_id: str
    task_id: str
    uuid: bytes


class Reconcile(_Tagged, tag="RECONCILE", frozen=True):
    """Explicit with ``tasks``; implicit (every task of the framework) when empty."""

    framework_id: str
    tasks: list[ReconcileTask] = []


class Message(_Tagged, tag="MESSAGE", frozen=True):
    """A framework message to one of its executors; best effort, like in Mesos."""

    framework_id: str
    agent_id: str
    executor_id: str
    data: bytes


class UpdateFramework(_Tagged, tag="UPDATE_FRAMEWORK", frozen=True):
    framework_info: FrameworkInfo
    suppressed_roles: list[str] = []


class DeclareDemand(_Tagged, tag="DECLARE_DEMAND", frozen=True):
    """Tepui extension: replaces the framework's pending demand. An empty list means "nothing
    to launch" (no offers at all); None returns to plain Mesos behaviour (offers everywhere)."""

    framework_id: str
    demand: list[DemandShape] | None = None


class Explain(_Tagged, tag="EXPLAIN", frozen=True):
    """Tepui extension: asks why the framework is (not) getting offers; answered by EXPLANATION."""

    framework_id: str


SchedulerCall = Union[
    Subscribe,
    Teardown,
    Accept,
    Decline,
    Revive,
    Suppress,
    Kill,
    Shutdown,
    Acknowledge,
    Reconcile,
    Message,
    UpdateFramework,
    DeclareDemand,
    Explain,
]


# --- events: master → framework ---------------------------------------------------------------


class Subscribed(_Tagged, tag="SUBSCRIBED", frozen=True):
    framework_id: str
    heartbeat_interval_seconds: float
    master_info: MasterInfo


class Offers(_Tagged, tag="OFFERS", frozen=True):
    offers: list[Offer]


class Rescind(_Tagged, tag="RESCIND", frozen=True):
    offer_id: str


class Update(_Tagged, tag="UPDATE", frozen=True):
    status: TaskStatus


class FrameworkMessage(_Tagged, tag="MESSAGE", frozen=True):
    """An executor's message to its framework (the ``MESSAGE`` event)."""

    agent_id: str
    executor_id: str
    data: bytes


class Failure(_Tagged, tag="FAILURE", frozen=True):
    """An agent was removed (no ``executor_id``), or an executor ended (with its status)."""

    agent_id: str | None = None
    executor_id: str | None = None
    status: int | None = None


class Error(_Tagged, tag="ERROR", frozen=True):
    """The master refused a call, or part of one, or could not decode it (``message`` says
    what was wrong and what to do next). ``call_id`` echoes the call envelope's ``call_id`` (when it had one and it could be read),
    ``call_type`` is the call's ``type`` (when known) and ``field`` the JSON path of the one
    field at fault (``$.body.filters.refuse_seconds``), as the decoder names it. Not fatal: a
    framework logs it and carries on."""

    message: str
    call_id: str | None = None
    call_type: str | None = None
    field: str | None = None


class Heartbeat(_Tagged, tag="HEARTBEAT", frozen=True):
    pass


class Explanation(_Tagged, tag="EXPLANATION", frozen=True):
    """Tepui extension: the answer to EXPLAIN, one entry per role of the framework."""

    roles: list[RoleExplanation]


SchedulerEvent = Union[
    Subscribed, Offers, Rescind, Update, FrameworkMessage, Failure, Error, Heartbeat, Explanation
]
