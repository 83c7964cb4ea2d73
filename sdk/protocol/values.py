"""Value types shared by every link of the wire protocol, in the Mesos v1 vocabulary.

Why msgspec Structs: decoding validates as it builds typed objects, so a bad message fails with
an error that names the exact field (``at $.body.task_infos[0].resources``), and it is about
twice as fast as decoding MessagePack into dicts. Every Struct is frozen and refuses unknown
fields: a typo in a field name is an error, never a silently ignored setting.

Naming follows Mesos (``TaskInfo``, ``TaskStatus``, ``Offer``, ``FrameworkInfo``) so that a
Mesos-compatible gateway stays a thin translation. Identifiers are plain strings on the wire.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec


class Value(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every value on the wire.

    Subclasses repeat ``frozen=True``: msgspec inherits it from here, but type checkers
    (PEP 681's ``dataclass_transform``) do not, and would take a subclass for a mutable
    dataclass under a frozen base. The same holds for :class:`Tagged`."""


class Tagged(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag_field="type"
):
    """Base of every message: the class's tag travels in the ``type`` field. Subclasses
    repeat ``frozen=True`` (see :class:`Value`)."""


class TaskState(str, enum.Enum):
    """Mesos task states (``TaskState`` in mesos.proto)."""

    STAGING = "TASK_STAGING"
    STARTING = "TASK_STARTING"
    RUNNING = "TASK_RUNNING"
    KILLING = "TASK_KILLING"
    FINISHED = "TASK_FINISHED"
    FAILED = "TASK_FAILED"
    KILLED = "TASK_KILLED"
    ERROR = "TASK_ERROR"
    LOST = "TASK_LOST"
    DROPPED = "TASK_DROPPED"
    UNREACHABLE = "TASK_UNREACHABLE"
    GONE = "TASK_GONE"
    GONE_BY_OPERATOR = "TASK_GONE_BY_OPERATOR"
    UNKNOWN = "TASK_UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """Mesos semantics: LOST counts as terminal for bookkeeping (it may still come back)."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        TaskState.FINISHED,
        TaskState.FAILED,
        TaskState.KILLED,
        TaskState.ERROR,
        TaskState.LOST,
        TaskState.DROPPED,
        TaskState.GONE,
        TaskState.GONE_BY_OPERATOR,
    }
)


class TaskSource(str, enum.Enum):
    """Who produced a status update (``TaskStatus.Source``)."""

    MASTER = "SOURCE_MASTER"
    AGENT = "SOURCE_AGENT"
    EXECUTOR = "SOURCE_EXECUTOR"


class TaskReason(str, enum.Enum):
    """Why a task changed state (``TaskStatus.Reason``, the Mesos names)."""

    COMMAND_EXECUTOR_FAILED = "REASON_COMMAND_EXECUTOR_FAILED"
    CONTAINER_LAUNCH_FAILED = "REASON_CONTAINER_LAUNCH_FAILED"
    CONTAINER_LIMITATION = "REASON_CONTAINER_LIMITATION"
    CONTAINER_LIMITATION_DISK = "REASON_CONTAINER_LIMITATION_DISK"
    CONTAINER_LIMITATION_MEMORY = "REASON_CONTAINER_LIMITATION_MEMORY"
    CONTAINER_PREEMPTED = "REASON_CONTAINER_PREEMPTED"
    CONTAINER_UPDATE_FAILED = "REASON_CONTAINER_UPDATE_FAILED"
    MAX_COMPLETION_TIME_REACHED = "REASON_MAX_COMPLETION_TIME_REACHED"
    EXECUTOR_REGISTRATION_TIMEOUT = "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
    EXECUTOR_REREGISTRATION_TIMEOUT = "REASON_EXECUTOR_REREGISTRATION_TIMEOUT"
    EXECUTOR_TERMINATED = "REASON_EXECUTOR_TERMINATED"
    EXECUTOR_UNREGISTERED = "REASON_EXECUTOR_UNREGISTERED"
    FRAMEWORK_REMOVED = "REASON_FRAMEWORK_REMOVED"
    GC_ERROR = "REASON_GC_ERROR"
    INVALID_FRAMEWORKID = "REASON_INVALID_FRAMEWORKID"
    INVALID_OFFERS = "REASON_INVALID_OFFERS"
    IO_SWITCHBOARD_EXITED = "REASON_IO_SWITCHBOARD_EXITED"
    MASTER_DISCONNECTED = "REASON_MASTER_DISCONNECTED"
    RECONCILIATION = "REASON_RECONCILIATION"
    RESOURCES_UNKNOWN = "REASON_RESOURCES_UNKNOWN"
    AGENT_DISCONNECTED = "REASON_AGENT_DISCONNECTED"
    AGENT_REMOVED = "REASON_AGENT_REMOVED"
    AGENT_REMOVED_BY_OPERATOR = "REASON_AGENT_REMOVED_BY_OPERATOR"
    AGENT_REREGISTERED = "REASON_AGENT_REREGISTERED"
    AGENT_RESTARTED = "REASON_AGENT_RESTARTED"
    AGENT_UNKNOWN = "REASON_AGENT_UNKNOWN"
    TASK_KILLED_DURING_LAUNCH = "REASON_TASK_KILLED_DURING_LAUNCH"
    TASK_CHECK_STATUS_UPDATED = "REASON_TASK_CHECK_STATUS_UPDATED"
    TASK_HEALTH_CHECK_STATUS_UPDATED = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
    TASK_GROUP_INVALID = "REASON_TASK_GROUP_INVALID"
    TASK_GROUP_UNAUTHORIZED = "REASON_TASK_GROUP_UNAUTHORIZED"
    TASK_INVALID = "REASON_TASK_INVALID"
    TASK_UNAUTHORIZED = "REASON_TASK_UNAUTHORIZED"
    TASK_UNKNOWN = "REASON_TASK_UNKNOWN"
    FETCH_FAILED = "REASON_FETCH_FAILED"


class Range(Value, frozen=True):
    """An inclusive range of integers, as in ``ports:[31000-32000]``."""

    begin: int
    end: int


class Reservation(Value, frozen=True):
    """Who reserved a resource. STATIC comes from agent flags, DYNAMIC from a Reserve operation."""

    type: str = "STATIC"
    principal: str | None = None
    labels: dict[str, str] = {}


class Persistence(Value, frozen=True):
    """A persistent volume's identity (unique per agent and role)."""

    id: str
    principal: str | None = None


class VolumeMount(Value, frozen=True):
    """Where a task sees the volume: a path relative to its sandbox."""

    container_path: str
    mode: str = "RW"


class DiskInfo(Value, frozen=True):
    persistence: Persistence | None = None
    volume: VolumeMount | None = None


class Resource(Value, frozen=True):
    """One named resource on the wire. Scalars travel as floats (Mesos compatible); the
    algebra in :mod:`tepui.sdk.resources` turns them into exact thousandths. ``disk`` marks
    reserved disk made a persistent volume (the CREATE operation)."""

    name: str
    type: str = "SCALAR"  # SCALAR | RANGES | SET
    scalar: float | None = None
    ranges: list[Range] | None = None
    set: list[str] | None = None
    role: str = "*"
    reservation: Reservation | None = None
    disk: DiskInfo | None = None


class CommandURI(Value, frozen=True):
    """An artifact the fetcher downloads into the sandbox before the task starts."""

    value: str
    executable: bool = False
    extract: bool = True
    cache: bool = False
    output_file: str | None = None


class CommandInfo(Value, frozen=True):
    """What to run. ``shell=True`` runs ``value`` with ``/bin/sh -c``; ``shell=False`` runs the
    argv ``arguments`` (``value`` then names the executable, defaulting to ``arguments[0]``)."""

    value: str | None = None
    arguments: list[str] = []
    shell: bool = True
    environment: dict[str, str] = {}
    uris: list[CommandURI] = []
    user: str | None = None


class PortMapping(Value, frozen=True):
    host_port: int
    container_port: int
    protocol: str = "tcp"


class DockerInfo(Value, frozen=True):
    image: str
    network: str = "BRIDGE"
    port_mappings: list[PortMapping] = []
    privileged: bool = False
    parameters: dict[str, str] = {}
    force_pull_image: bool = False


class Volume(Value, frozen=True):
    container_path: str
    host_path: str | None = None
    mode: str = "RW"


class ContainerInfo(Value, frozen=True):
    type: str = "MESOS"  # MESOS (process containerizer) | DOCKER
    docker: DockerInfo | None = None
    volumes: list[Volume] = []
    hostname: str | None = None


class HTTPCheck(Value, frozen=True):
    port: int
    path: str = "/"
    scheme: str = "http"
    statuses: list[int] = []


class TCPCheck(Value, frozen=True):
    port: int


class HealthCheck(Value, frozen=True):
    """Mesos defaults: delay 15 s, interval 10 s, timeout 20 s, 3 consecutive failures, grace 10 s."""

    type: str  # COMMAND | HTTP | TCP
    command: CommandInfo | None = None
    http: HTTPCheck | None = None
    tcp: TCPCheck | None = None
    delay_seconds: float = 15.0
    interval_seconds: float = 10.0
    timeout_seconds: float = 20.0
    consecutive_failures: int = 3
    grace_period_seconds: float = 10.0


class KillPolicy(Value, frozen=True):
    grace_period_seconds: float | None = None


class ExecutorInfo(Value, frozen=True):
    executor_id: str
    type: str = "CUSTOM"  # DEFAULT | CUSTOM
    framework_id: str | None = None
    command: CommandInfo | None = None
    container: ContainerInfo | None = None
    resources: list[Resource] = []
    name: str | None = None


class TaskInfo(Value, frozen=True):
    """A task a framework asks to run (``TaskInfo`` in mesos.proto)."""

    name: str
    task_id: str
    agent_id: str
    resources: list[Resource]
    command: CommandInfo | None = None
    executor: ExecutorInfo | None = None
    container: ContainerInfo | None = None
    health_check: HealthCheck | None = None
    kill_policy: KillPolicy | None = None
    data: bytes | None = None
    labels: dict[str, str] = {}


class TaskGroupInfo(Value, frozen=True):
    tasks: list[TaskInfo]


class TaskStatus(Value, frozen=True):
    """One observation of a task's state. ``uuid`` is set on updates that must be acknowledged
    (reconciliation answers carry none). ``exit_code`` is a Tepui extension: the command's real
    exit status, so that ``tepui run`` can exit with it."""

    task_id: str
    state: TaskState
    message: str | None = None
    source: TaskSource | None = None
    reason: TaskReason | None = None
    data: bytes | None = None
    agent_id: str | None = None
    executor_id: str | None = None
    timestamp: float | None = None
    uuid: bytes | None = None
    healthy: bool | None = None
    labels: dict[str, str] = {}
    exit_code: int | None = None


MAX_REFUSE_SECONDS = 365 * 24 * 3600.0


class Filters(Value, frozen=True):
    """Mesos semantics: for ``refuse_seconds`` (default 5 s) this framework is not offered, on
    that agent and in that role, anything the declined resources contain; a bigger offer of the
    agent still comes. From 0 to a year: the decoder refuses NaN, infinity, negative values and
    more than a year naming the field, where Mesos silently uses 5 s or a year instead — a
    client learns that its filter was not the one it asked for (issue 15)."""

    refuse_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_REFUSE_SECONDS)] = 5.0


class FrameworkInfo(Value, frozen=True):
    """How a framework introduces itself. Mesos defaults ``failover_timeout`` to 0 (tear down on
    disconnect); long-running frameworks should set it to a week or more."""

    user: str
    name: str
    id: str | None = None
    failover_timeout: float = 0.0
    checkpoint: bool = False
    roles: list[str] = msgspec.field(default_factory=lambda: ["*"])
    hostname: str | None = None
    principal: str | None = None
    webui_url: str | None = None
    capabilities: list[str] = []
    labels: dict[str, str] = {}


class MasterInfo(Value, frozen=True):
    id: str
    address: str
    hostname: str
    version: str
    epoch: int = 0
    http_port: int | None = None


class AgentInfo(Value, frozen=True):
    hostname: str
    resources: list[Resource]
    attributes: dict[str, str] = {}
    id: str | None = None
    http_port: int | None = None
    address: str | None = None  # IP where http_port is reached (agent --advertise-ip)
    # The files API on http_port is HTTPS only (agent --tls-cert): the master calls it with
    # https://. Left off the wire when False, so a master that predates it still decodes it.
    http_tls: bool = False
    # Who tasks without command.user run as (agent --task-user), so the master's run_tasks ACL
    # judges the user a task really gets; None: the agent's own user (never root by default).
    task_user: str | None = None


class Offer(Value, frozen=True):
    """Resources of one agent offered to one framework under one role."""

    id: str
    framework_id: str
    agent_id: str
    hostname: str
    resources: list[Resource]
    attributes: dict[str, str] = {}
    executor_ids: list[str] = []
    allocation_role: str = "*"
    # The IP where the agent (and the ports of its tasks) is reached (its AgentInfo.address):
    # Mesos offers carry the agent's URL for the same reason — a framework probing its own
    # tasks (readiness checks) cannot rely on the hostname resolving.
    address: str | None = None


class DemandShape(Value, frozen=True):
    """Tepui extension: a task shape a framework is waiting to launch (``count`` of them, in
    ``role`` or any of its roles). Declared demand steers offers to agents where it fits."""

    resources: list[Resource]
    count: int = 1
    role: str | None = None


class RoleExplanation(Value, frozen=True):
    """Tepui extension: why a framework got no offer for a role in the last cycle."""

    role: str
    reason: str
    message: str


class ReconcileTask(Value, frozen=True):
    task_id: str
    agent_id: str | None = None
