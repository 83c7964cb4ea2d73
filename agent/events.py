"""The agent core's vocabulary: what happens to it (events), what it asks for (effects), and
the keys of its timers — every one a frozen value, so a reader (and mypy) sees the whole
language of :class:`tepui.agent.core.AgentCore` in one file.

``AgentEvent`` is what ``AgentCore.handle`` takes and ``AgentEffect`` what it returns; the shell
(``agent/shell.py``) performs the effects in order. Timer keys (``AgentTimer``) come back in
``TimerFired`` and reach their handler through the core's table keyed by the key's type, not
by matching the fields of a tuple by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol.agent import AgentToMaster, MasterToAgent
from tepui.sdk.protocol.executor import ExecutorCall, ExecutorEvent
from tepui.sdk.protocol.values import CommandInfo, CommandURI, HealthCheck, TaskInfo

if TYPE_CHECKING:
    from tepui.agent.checkpointing.checkpoint import Checkpoint

__all__ = [
    "Start", "MasterReconnected", "MasterChanged", "Received", "TaskSpawned", "TaskLaunchFailed", "TaskExited", "Shutdown", "TimerFired",
    "FetchSucceeded", "FetchFailed", "HealthCheckResult", "RunHealthCheck", "ExecutorReceived", "SendToExecutor", "RemoveVolumes",
    "SendToMaster", "LaunchProcess", "LaunchContainer", "FetchURIs", "SignalProcess", "ScheduleTimer",
    "CancelTimer", "Log", "Exit", "AdoptProcess", "AdoptContainer",
    "Register", "MasterCheck", "StopDeadline", "RetryUpdate", "HealthProbe", "KillEscalation", "ExecutorKill",
    "ExecutorRegisterTimeout", "AgentTimer", "AgentEvent", "AgentEffect", "TaskKey",
]

TaskKey = tuple[str, str]  # (framework id, task id)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The agent process started: register (or re-register) with the master."""


@dataclass(frozen=True)
class MasterReconnected:
    """The connection to the master came back after a loss. A master that restarted has
    forgotten us: re-register now rather than after the silence limit."""


@dataclass(frozen=True)
class MasterChanged:
    """ZooKeeper names another serving master (an agent given ``--master zk://...``); the shell
    has already moved the connection to it. Register with it now — whether or not the agent
    counts itself registered, with the backoff started over — rather than after the silence
    limit: the old leader may have died without a word. ``leader`` and ``epoch`` are what it
    published (logged; the envelopes' epochs still do the fencing)."""

    leader: str
    epoch: int


@dataclass(frozen=True)
class Received:
    body: MasterToAgent
    epoch: int = 0


@dataclass(frozen=True)
class TaskSpawned:
    framework_id: str
    task_id: str
    pid: int  # 0 for a container
    container_id: str | None = None


@dataclass(frozen=True)
class FetchSucceeded:
    framework_id: str
    task_id: str


@dataclass(frozen=True)
class FetchFailed:
    framework_id: str
    task_id: str
    message: str


@dataclass(frozen=True)
class TaskLaunchFailed:
    framework_id: str
    task_id: str
    message: str


@dataclass(frozen=True)
class TaskExited:
    """``exit_code`` for a normal exit, ``signal`` when a signal ended the process."""

    framework_id: str
    task_id: str
    exit_code: int | None
    signal: int | None = None
    oom_killed: bool = False
    message: str | None = None  # the containerizer's own account, when it has one


@dataclass(frozen=True)
class HealthCheckResult:
    framework_id: str
    task_id: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class ExecutorReceived:
    """A decoded message from a custom executor on the agent's ipc:// socket."""

    peer: bytes
    body: ExecutorCall


@dataclass(frozen=True)
class Shutdown:
    """The operator drains the agent (SIGUSR1, as Mesos): end every task, report how they ended,
    unregister, exit. SIGTERM and Ctrl-C stop the agent without this event: its tasks keep
    running for the next agent to take back (agent/shell.py, ``AgentShell.drain``)."""


# --- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendToMaster:
    body: AgentToMaster


@dataclass(frozen=True)
class LaunchProcess:
    framework_id: str
    task_id: str
    sandbox: str
    command: CommandInfo
    environment: dict[str, str]
    user: str | None = None  # None: the agent's own user
    cpus: float | None = None
    mem_mib: float | None = None
    shared: str | None = None  # a task group's shared volume, linked into the sandbox as ./shared
    volumes: tuple[tuple[str, str], ...] = ()  # persistent volumes: (directory, path in the sandbox)
    envelope: tuple[str, float | None, float | None] | None = None  # a task group: (id, cpus, mem) in all


@dataclass(frozen=True)
class LaunchContainer:
    """Run the task in a Docker container (``container.type == "DOCKER"``)."""

    framework_id: str
    task_id: str
    sandbox: str
    task: TaskInfo
    environment: dict[str, str]


@dataclass(frozen=True)
class FetchURIs:
    """Download the task's URIs into its sandbox, then report FetchSucceeded / FetchFailed."""

    framework_id: str
    task_id: str
    sandbox: str
    uris: list[CommandURI]
    user: str | None = None  # whose privileges the fetch runs with (the task's); None: the agent's own


@dataclass(frozen=True)
class RunHealthCheck:
    """Probe the task's health (command, HTTP or TCP) and report a HealthCheckResult."""

    framework_id: str
    task_id: str
    check: HealthCheck
    sandbox: str
    environment: dict[str, str]
    user: str | None = None


@dataclass(frozen=True)
class SendToExecutor:
    peer: bytes
    body: ExecutorEvent


@dataclass(frozen=True)
class RemoveVolumes:
    """Delete the data of destroyed persistent volumes (directories under the work dir)."""

    paths: tuple[str, ...]


@dataclass(frozen=True)
class SignalProcess:
    """Send ``signal`` ("TERM" or "KILL") to the task's whole process group."""

    framework_id: str
    task_id: str
    signal: str


@dataclass(frozen=True)
class Exit:
    """Every task has ended after a Shutdown: the process may exit."""


@dataclass(frozen=True)
class AdoptProcess:
    """Watch the supervisor an earlier agent process started for this task (or executor)."""

    framework_id: str
    task_id: str
    group: str | None = None  # the task group (cgroup envelope) it belongs to


@dataclass(frozen=True)
class AdoptContainer:
    """Watch the Docker container an earlier agent process started for this task."""

    framework_id: str
    task_id: str
    sandbox: str


# --- timer keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Register:
    """Register (or re-register) again unless the master answered: doubling backoff."""


@dataclass(frozen=True)
class MasterCheck:
    """Has the master been silent for too long? (Armed again each time.)"""


@dataclass(frozen=True)
class StopDeadline:
    """The drain waited long enough for its tasks' final acknowledgements: SIGKILL, exit."""


@dataclass(frozen=True)
class RetryUpdate:
    """Send the task's unacknowledged status update again."""

    framework_id: str
    task_id: str


@dataclass(frozen=True)
class HealthProbe:
    """Probe the task's health now."""

    framework_id: str
    task_id: str


@dataclass(frozen=True)
class KillEscalation:
    """The task's kill grace period is over: SIGKILL if it is still there."""

    framework_id: str
    task_id: str


@dataclass(frozen=True)
class ExecutorKill:
    """The executor's shutdown grace period is over: SIGKILL if it is still there."""

    framework_id: str
    executor_id: str


@dataclass(frozen=True)
class ExecutorRegisterTimeout:
    """A recovered executor had its time to re-subscribe to the restarted agent."""

    framework_id: str
    executor_id: str


AgentTimer = (Register | MasterCheck | StopDeadline | RetryUpdate | HealthProbe | KillEscalation | ExecutorKill
              | ExecutorRegisterTimeout)

# --- the unions -------------------------------------------------------------------------------

AgentEvent = (Start | MasterReconnected | MasterChanged | Received | TaskSpawned | FetchSucceeded | FetchFailed | TaskLaunchFailed
              | TaskExited | HealthCheckResult | ExecutorReceived | Shutdown | TimerFired)

# A string: Checkpoint (agent/checkpointing/checkpoint.py) imports the executors module, which imports this one.
AgentEffect: TypeAlias = (
    "Checkpoint | SendToMaster | LaunchProcess | LaunchContainer | AdoptProcess | AdoptContainer | FetchURIs"
    " | RunHealthCheck | SendToExecutor | RemoveVolumes | SignalProcess | ScheduleTimer | CancelTimer | Log | Exit"
)
