"""The agent's pure core: registration, tasks, kills, and reliable status updates.

``AgentCore.handle(event, now)`` returns effects (send to master, launch or signal a process,
timers, logs); the shell performs them. The agent is the source of truth for its tasks (DESIGN
§6): it refuses duplicate task ids, reports every state change, and keeps each update until
the framework acknowledges its UUID.

The core is thin: it composes components that own their state, each with a narrow API, and
routes every event through explicit tables (event type → handler, message type → handler,
timer key type → handler). The vocabulary is ``events.py`` (``AgentEvent``, ``AgentEffect``,
the timer keys). The parts, and who holds what:

* state: ``Registration`` (link/registration.py: id, master link, epochs), ``TaskTable`` (tasks.py:
  running and completed tasks), ``Frameworks`` (frameworks.py), ``StatusUpdateQueue``
  (updates/status_updates.py: the reliable updates, shared with the simulator), ``Executors``
  (custom_executors/executors.py: custom executors, their secrets), ``CheckpointJournal`` (checkpointing/journal.py: what
  changed, the Checkpoint effect);
* flows, each given the components it uses: ``StatusReporter`` (updates/reporting.py), ``Drain`` and
  ``Stopping`` (lifecycle/stopping.py: kills, framework and agent shutdown), ``TaskEnds``
  (lifecycle/task_ends.py), ``TaskHealth`` (health_checks/task_health.py), ``ExecutorFlows`` (custom_executors/executor_flows.py),
  ``Launcher`` (lifecycle/launching.py: RUN_TASK and task groups to a running process),
  ``Reconciler`` (link/reconcile.py), ``MasterLink`` (link/master_link.py: registration, pings, the
  master's silence), and ``recover`` (checkpointing/recovery.py).

Nothing holds a reference to the core; what shells and tests read of it are the read-only
properties below.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from tepui.agent.checkpointing.checkpoint import Recovered
from tepui.agent.events import (
    AgentEffect,
    AgentEvent,
    ExecutorKill,
    ExecutorReceived,
    ExecutorRegisterTimeout,
    FetchFailed,
    FetchSucceeded,
    HealthCheckResult,
    HealthProbe,
    KillEscalation,
    MasterCheck,
    MasterChanged,
    MasterReconnected,
    Received,
    Register,
    RetryUpdate,
    SendToMaster,
    Shutdown,
    Start,
    StopDeadline,
    TaskExited,
    TaskKey,
    TaskLaunchFailed,
    TaskSpawned,
)
from tepui.agent.custom_executors.executor_flows import ExecutorFlows
from tepui.agent.custom_executors.executors import EXECUTOR_PREFIX, ExecutorRecord, Executors
from tepui.agent.frameworks import Frameworks
from tepui.agent.checkpointing.journal import CheckpointJournal
from tepui.agent.lifecycle.launching import SANDBOX_LABEL, Launcher
from tepui.agent.link.master_link import MasterLink
from tepui.agent.link.reconcile import Reconciler
from tepui.agent.checkpointing.recovery import recover
from tepui.agent.link.registration import MISSED_PINGS, Identity, Registration
from tepui.agent.updates.reporting import StatusReporter
from tepui.agent.updates.status_updates import Ack, StatusUpdateQueue
from tepui.agent.lifecycle.stopping import Drain, Stopping
from tepui.agent.lifecycle.task_ends import TaskEnds
from tepui.agent.health_checks.task_health import TaskHealth
from tepui.agent.tasks import CompletedTasks, TaskRecord, TaskTable
from tepui.sdk.effects import TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo, MasterInfo
from tepui.sdk.resources import Resources

__all__ = ["AgentConfig", "AgentCore", "TaskRecord", "CompletedTasks", "SANDBOX_LABEL", "REGISTER", "MASTER_CHECK",
           "MISSED_PINGS"]

REGISTER = Register()
MASTER_CHECK = MasterCheck()

Out = list[AgentEffect]
Handler = Callable[[Any, float, Out], None]
T = TypeVar("T")


def route(table: dict[type, Handler], kind: type[T], handler: Callable[[T, float, Out], None]) -> None:
    """``table[kind] = handler``, with the handler checked (by mypy) to take a ``kind``."""
    table[kind] = handler


@dataclass(frozen=True)
class AgentConfig:
    hostname: str
    resources: Resources
    work_dir: str
    attributes: dict[str, str] = field(default_factory=dict)
    version: str = "0.1.0"
    boot_id: str | None = None
    http_port: int | None = None
    kill_grace_period: float = 5.0  # Mesos --executor_shutdown_grace_period
    registration_backoff: float = 1.0  # Mesos --registration_backoff_factor
    max_registration_backoff: float = 10.0  # Mesos caps at 60 s; a partition heals faster here
    update_retry_initial: float = 10.0  # Mesos: 10 s doubling ...
    update_retry_max: float = 600.0  # ... to 10 min
    master_silence_limit: float | None = None  # None: MISSED_PINGS × the ping interval the master announces
    task_user: str | None = None  # who tasks run as by default (None: the agent's own user)
    docker_enabled: bool = False
    gpu_ids: tuple[int, ...] = ()  # the GPUs this agent offers, by index
    executor_endpoint: str = ""  # the ipc:// address custom executors connect to
    address: str | None = None  # where this agent's HTTP API (sandbox files) is reached
    http_tls: bool = False  # that API is HTTPS only (--tls-cert): the master must call it with https://
    allowed_users: frozenset[str] = frozenset()  # users a task may ask for in command.user
    checkpoint: bool = False  # emit Checkpoint effects (the agent process turns this on; see checkpointing/recovery.py)
    executor_reregister_timeout: float = 10.0  # after a restart (Mesos: 2 s)
    previous_agent_id: str | None = None  # the id this agent had before its host rebooted

    def identity(self) -> Identity:
        return Identity(hostname=self.hostname, resources=self.resources, attributes=self.attributes,
                        version=self.version, boot_id=self.boot_id, previous_agent_id=self.previous_agent_id,
                        http_port=self.http_port, address=self.address, http_tls=self.http_tls,
                        task_user=self.task_user)


class AgentCore:
    def __init__(self, config: AgentConfig, new_uuid: Callable[[], bytes],
                 new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> None:
        self.config = config
        # --- the components: state, each owned by one of them ---
        self.registration = Registration(config.identity(), config.registration_backoff,
                                         config.max_registration_backoff, config.master_silence_limit)
        self._frameworks = Frameworks()
        self._tasks = TaskTable(1000)
        self._updates: StatusUpdateQueue[SendToMaster] = StatusUpdateQueue(
            config.update_retry_initial, config.update_retry_max, new_uuid, SendToMaster, RetryUpdate)
        self._executors = Executors(config.work_dir, config.executor_endpoint, config.kill_grace_period, new_secret)
        self._journal = CheckpointJournal(config.checkpoint, self.registration, self._frameworks, self._tasks,
                                          self._updates, self._executors)
        # --- the flows, given what they use ---
        reporter = StatusReporter(self._updates, self.registration, self._journal)
        self._reporter = reporter
        self._drain = Drain(self._tasks, self._updates, self.registration)
        self._ends = TaskEnds(self._tasks, self._frameworks, reporter, self._journal, self._drain)
        self._health = TaskHealth(self._tasks, reporter, self._journal, config.task_user)
        self._executor_flows = ExecutorFlows(
            self._executors, self.registration, self._tasks, self._frameworks, self._updates, reporter,
            self._journal, self._ends, self._drain, config.kill_grace_period, config.executor_reregister_timeout,
            config.task_user)
        self._launcher = Launcher(config, self.registration, self._tasks, self._frameworks, self._updates, reporter,
                                  self._journal, self._ends, self._health, self._executor_flows, self._drain)
        self._stopping = Stopping(self.registration, self._tasks, self._frameworks, self._updates, reporter,
                                  self._journal, self._ends, self._executor_flows, self._drain)
        self._reconciler = Reconciler(config.work_dir, self.registration, self._tasks, self._frameworks,
                                      self._updates, reporter)
        self._master_link = MasterLink(self.registration, self._frameworks, self._reconciler, reporter,
                                       self._journal, self._drain)
        # --- dispatch: explicit tables, each handler checked against the type it is routed ---
        self._on_event: dict[type, Handler] = {}
        route(self._on_event, Received, self._received)
        route(self._on_event, TaskSpawned, self._launcher.spawned)
        route(self._on_event, TaskExited, self._exited)
        route(self._on_event, TaskLaunchFailed, self._ends.launch_failed)
        route(self._on_event, FetchSucceeded, self._launcher.fetched)
        route(self._on_event, FetchFailed, self._launcher.fetched)
        route(self._on_event, HealthCheckResult, self._health.result)
        route(self._on_event, ExecutorReceived, self._executor_flows.received)
        route(self._on_event, TimerFired, self._timer)
        route(self._on_event, Start, self._master_link.start)
        route(self._on_event, MasterReconnected, self._master_link.reconnected)
        route(self._on_event, MasterChanged, self._master_link.changed)
        route(self._on_event, Shutdown, lambda event, now, out: self._stopping.shutdown(now, out))
        self._on_message: dict[type, Handler] = {}  # what the master sends (am.MasterToAgent)
        route(self._on_message, am.AgentRegistered, self._master_link.registered)
        route(self._on_message, am.AgentReregistered, self._master_link.registered)
        route(self._on_message, am.Ping, self._master_link.ping)
        route(self._on_message, am.ShutdownAgent, self._stopping.shutdown_agent)
        route(self._on_message, am.RunTask, self._launcher.run_task)
        route(self._on_message, am.RunTaskGroup, self._launcher.run_task_group)
        route(self._on_message, am.KillTask, self._stopping.kill_task)
        route(self._on_message, am.StatusUpdateAck, self._acknowledged)
        route(self._on_message, am.ShutdownFramework, self._stopping.shutdown_framework)
        route(self._on_message, am.ShutdownExecutor, self._executor_flows.shutdown_requested)
        route(self._on_message, am.FrameworkToExecutor, self._executor_flows.framework_message)
        route(self._on_message, am.DestroyVolumes, self._launcher.destroy_volumes)
        route(self._on_message, am.ReconcileTasks, self._reconciler.reconcile)
        route(self._on_message, am.AuditTasks, self._reconciler.audit)
        route(self._on_message, am.Error, self._master_link.master_error)
        self._on_timer: dict[type, Handler] = {}  # by the key's type (events.AgentTimer)
        route(self._on_timer, Register, self._master_link.register_timer)
        route(self._on_timer, MasterCheck, self._master_link.master_check)
        route(self._on_timer, StopDeadline, self._stopping.deadline)
        route(self._on_timer, RetryUpdate, lambda key, now, out: reporter.retry((key.framework_id, key.task_id), now, out))
        route(self._on_timer, HealthProbe, self._health.probe)
        route(self._on_timer, KillEscalation, self._stopping.escalate)
        route(self._on_timer, ExecutorKill, self._executor_flows.kill_timer)
        route(self._on_timer, ExecutorRegisterTimeout, self._executor_flows.reregister_timeout)

    # --- entry points ---------------------------------------------------------------------

    def handle(self, event: AgentEvent, now: float) -> list[AgentEffect]:
        out: Out = []
        handler = self._on_event.get(type(event))
        if handler is None:
            raise TypeError(f"unknown event {event!r}")
        handler(event, now, out)
        checkpoint = self._journal.take()
        if checkpoint is not None:
            out.insert(0, checkpoint)  # recorded before anything in this batch is acted on
        return out

    def recover(self, recovered: Recovered, now: float) -> list[AgentEffect]:
        """Before ``Start``: takes back what the checkpoint holds (checkpointing/recovery.py)."""
        return recover(recovered, now, registration=self.registration, frameworks=self._frameworks,
                       tasks=self._tasks, updates=self._updates, executors=self._executors, ends=self._ends,
                       health=self._health, executor_reregister_timeout=self.config.executor_reregister_timeout)

    # --- what shells and tests read -------------------------------------------------------

    @property
    def agent_id(self) -> str | None:
        return self.registration.agent_id

    @property
    def registered(self) -> bool:
        return self.registration.registered

    @property
    def master_epoch(self) -> int:
        return self.registration.master_epoch

    @property
    def stale_epoch_dropped(self) -> int:
        return self.registration.stale_epoch_dropped

    @property
    def last_master_contact(self) -> float:
        return self.registration.last_master_contact

    @property
    def master_info(self) -> MasterInfo | None:
        return self.registration.master_info

    @property
    def stopping(self) -> bool:
        return self._drain.stopping

    @property
    def tasks(self) -> dict[TaskKey, TaskRecord]:
        """The running tasks (read them; the core changes them)."""
        return self._tasks.running

    @property
    def completed(self) -> CompletedTasks:
        return self._tasks.completed

    @property
    def pending(self) -> StatusUpdateQueue[SendToMaster]:
        """Unacknowledged status updates by task (a read-only mapping)."""
        return self._updates

    @property
    def frameworks(self) -> dict[str, FrameworkInfo]:
        return self._frameworks.infos

    @property
    def executors(self) -> dict[tuple[str, str], ExecutorRecord]:
        return self._executors.records

    @property
    def executor_peers(self) -> dict[bytes, tuple[str, str]]:
        return self._executors.peers

    @property
    def executor_subscribe_refused(self) -> int:
        return self._executors.subscribe_refused

    def agent_info(self) -> AgentInfo:
        return self.registration.agent_info()

    # --- routing --------------------------------------------------------------------------

    def _received(self, event: Received, now: float, out: Out) -> None:
        # Epoch fencing first (link/registration.py): a superseded master's message is dropped.
        if not self.registration.admit(event.epoch, type(event.body).__name__, now, out):
            return
        handler = self._on_message.get(type(event.body))
        if handler is not None:
            handler(event.body, now, out)

    def _timer(self, event: TimerFired, now: float, out: Out) -> None:
        handler = self._on_timer.get(type(event.key))
        if handler is not None:
            handler(event.key, now, out)

    def _exited(self, event: TaskExited, now: float, out: Out) -> None:
        if event.task_id.startswith(EXECUTOR_PREFIX):
            self._executor_flows.exited(event.framework_id, event.task_id[len(EXECUTOR_PREFIX):], event.exit_code,
                                        event.signal, now, out)
        else:
            self._ends.exited(event, now, out)

    def _acknowledged(self, msg: am.StatusUpdateAck, now: float, out: Out) -> None:
        if self._reporter.acknowledge(msg, now, out) is Ack.DRAINED:
            self._drain.maybe_exit(now, out)
