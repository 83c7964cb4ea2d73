"""The agent's pure core: registration, tasks, kills, and reliable status updates.

``AgentCore.handle(event, now)`` returns effects (send to master, launch or signal a process,
timers, logs); the shell performs them. The agent is the source of truth for its tasks (DESIGN
§6): it refuses duplicate task ids, reports every state change, and keeps each update until
the framework acknowledges its UUID.

Status updates (Mesos ``TaskStatusUpdateManager`` semantics): one update in flight per task,
retried with doubling backoff until acknowledged; stale or unknown acks change nothing; the
next queued update goes out only after the ack of the one before, so a framework sees each
task's states in order and a terminal state exactly once per ack.
"""

from __future__ import annotations

import collections
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import msgspec

from tepui.agent.events import (
    ExecutorReceived,
    RemoveVolumes,
    HealthCheckResult,
    RunHealthCheck,
    FetchFailed,
    FetchSucceeded,
    FetchURIs,
    LaunchContainer,
    LaunchProcess,
    MasterReconnected,
    Received,
    SendToMaster,
    Shutdown,
    SignalProcess,
    Start,
    TaskExited,
    TaskLaunchFailed,
    TaskSpawned,
)
from tepui.agent.health import HealthState, first_probe_at, judge
from tepui.agent.executors import EXECUTOR_PREFIX, ExecutorHandling, ExecutorRecord
from tepui.agent.groups import TaskGroups
from tepui.agent.reconcile import TaskReconciliation
from tepui.agent.recovery import Recovery
from tepui.agent.stopping import STOP_DEADLINE, Stopping
from tepui.agent.status_updates import Ack, StatusUpdateQueue
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import (
    AgentInfo,
    FrameworkInfo,
    TaskInfo,
    TaskReason,
    TaskSource,
    TaskState,
    TaskStatus,
    Volume,
)
from tepui.sdk.resources import InvalidResources, Resources

Effect = Any

SANDBOX_LABEL = "tepui.sandbox"
REGISTER = ("register",)
MASTER_CHECK = ("master_check",)
MISSED_PINGS = 5  # silent for this many of the master's ping intervals → it is gone (Mesos)


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
    checkpoint: bool = False  # emit Checkpoint effects (the agent process turns this on; see recovery.py)
    executor_reregister_timeout: float = 10.0  # after a restart (Mesos: 2 s)
    previous_agent_id: str | None = None  # the id this agent had before its host rebooted


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
    launch: Any = None  # the launch effect held back while URIs are fetched
    environment: dict[str, str] = field(default_factory=dict)
    health: HealthState | None = None
    unhealthy: str | None = None  # why it was killed for failing its health checks
    gpus: tuple[int, ...] = ()  # GPU indices held
    group: str | None = None  # the task group (its executor id), for group-wide kills
    kill_reason: str | None = None  # why the agent itself killed it


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

    def __iter__(self) -> Iterator[TaskRecord]:
        return iter(self._records)

    def __reversed__(self) -> Iterator[TaskRecord]:
        return reversed(self._records)

    def __len__(self) -> int:
        return len(self._records)


class AgentCore(ExecutorHandling, TaskGroups, Recovery, TaskReconciliation, Stopping):
    def __init__(self, config: AgentConfig, new_uuid: Callable[[], bytes],
                 new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> None:
        self.config = config
        self._new_uuid = new_uuid
        self._new_secret = new_secret  # one per executor launch (executors.py); tests pass their own
        self.agent_id: str | None = None
        self.registered = False
        self.master_epoch = 0
        self.stale_epoch_dropped = 0  # messages from a superseded master, dropped (the agent's /health shows it)
        self.master_info: Any = None
        self.ping_interval = 15.0
        self.last_master_contact = 0.0
        self.frameworks: dict[str, FrameworkInfo] = {}
        self.tasks: dict[tuple[str, str], TaskRecord] = {}
        self.completed = CompletedTasks(1000)
        self.pending: StatusUpdateQueue[SendToMaster] = StatusUpdateQueue(
            config.update_retry_initial, config.update_retry_max, new_uuid, SendToMaster, lambda f, t: ("retry", f, t))
        self.shutting_down_frameworks: set[str] = set()
        self.executors: dict[tuple[str, str], ExecutorRecord] = {}
        self.executor_peers: dict[bytes, tuple[str, str]] = {}
        self.executor_subscribe_refused = 0
        self.stopping = False
        self._register_backoff = config.registration_backoff
        self._dirty_tasks: set[tuple[str, str]] = set()
        self._agent_dirty = False
        self._executors_dirty = False

    # --- entry point ----------------------------------------------------------------------

    def handle(self, event: Any, now: float) -> list[Effect]:
        out: list[Effect] = []
        if isinstance(event, Received):
            # Epoch fencing (master/epoch.py): a master claims a larger epoch than every earlier
            # one before it serves anyone, so a message from an older epoch comes from a master
            # that has been superseded (paused, partitioned, or its bytes queued across the
            # failover) and is dropped and counted — it must not kill, launch or ping-answer.
            # A newer epoch on *any* message is adopted at once, not only on (re)registration:
            # it proves a newer master exists (Mesos: the agent follows the leader its detector
            # reports, not the one it registered with), and dropping the old master's messages
            # before re-registering with the new one can only drop a superseded master's.
            if event.epoch < self.master_epoch:
                self.stale_epoch_dropped += 1
                out.append(Log("warning", "stale_master_message", {"epoch": event.epoch, "current": self.master_epoch,
                                                                   "type": type(event.body).__name__,
                                                                   "dropped": self.stale_epoch_dropped}))
                return out
            self.master_epoch = event.epoch
            self.last_master_contact = now
            handler = getattr(self, "_on_" + type(event.body).__name__, None)
            if handler is not None:
                handler(event.body, event.epoch, now, out)
        elif isinstance(event, TaskSpawned):
            self._on_spawned(event, now, out)
        elif isinstance(event, TaskExited):
            self._on_exited(event, now, out)
        elif isinstance(event, TaskLaunchFailed):
            self._on_launch_failed(event, now, out)
        elif isinstance(event, (FetchSucceeded, FetchFailed)):
            self._on_fetched(event, now, out)
        elif isinstance(event, HealthCheckResult):
            self._on_health(event, now, out)
        elif isinstance(event, ExecutorReceived):
            self._on_executor_message(event.peer, event.body, now, out)
        elif isinstance(event, TimerFired):
            self._on_timer(event.key, now, out)
        elif isinstance(event, Start):
            self.last_master_contact = now
            self._register(now, out)
        elif isinstance(event, MasterReconnected):
            if self.registered and not self.stopping:
                self.registered = False
                out.append(Log("info", "master_reconnected", {"action": "re-registering"}))
                self._register(now, out)
        elif isinstance(event, Shutdown):
            self._on_shutdown(now, out)
        else:
            raise TypeError(f"unknown event {event!r}")
        checkpoint = self._take_checkpoint()
        if checkpoint is not None:
            out.insert(0, checkpoint)  # recorded before anything in this batch is acted on
        return out

    # --- registration ---------------------------------------------------------------------

    def agent_info(self) -> AgentInfo:
        return AgentInfo(
            hostname=self.config.hostname,
            resources=self.config.resources.to_wire(),
            attributes=dict(self.config.attributes),
            id=self.agent_id,
            http_port=self.config.http_port,
            address=self.config.address,
            http_tls=self.config.http_tls,
            task_user=self.config.task_user,
        )

    def _register(self, now: float, out: list[Effect]) -> None:
        if self.agent_id is None:
            out.append(SendToMaster(am.RegisterAgent(self.agent_info(), self.config.version, self.config.boot_id,
                                                     self.config.previous_agent_id)))
        else:
            # Every task it runs, and every ended one whose final update is not acknowledged yet
            # (Mesos): a restarted master learns the truth about both, not "unknown".
            reports = self._task_reports()
            reported = {report.framework_id for report in reports}
            frameworks = [f for fid, f in self.frameworks.items() if fid in reported]
            out.append(SendToMaster(am.ReregisterAgent(
                self.agent_info(), self.config.version, reports, frameworks, self.config.boot_id)))
        out.append(ScheduleTimer(now + self._register_backoff, REGISTER))
        self._register_backoff = min(self._register_backoff * 2, self.config.max_registration_backoff)

    def _on_AgentRegistered(self, msg: am.AgentRegistered, epoch: int, now: float, out: list[Effect]) -> None:
        self._registered(msg.agent_id, msg.master_info, msg.ping_interval_seconds, epoch, now, out)

    def _on_AgentReregistered(self, msg: am.AgentReregistered, epoch: int, now: float, out: list[Effect]) -> None:
        self._registered(msg.agent_id, msg.master_info, msg.ping_interval_seconds, epoch, now, out)

    def _registered(self, agent_id: str, master_info: Any, ping_interval: float, epoch: int, now: float,
                    out: list[Effect]) -> None:
        first = self.agent_id is None
        if self.agent_id != agent_id:
            self._agent_dirty = True
        self.agent_id = agent_id
        self.master_info = master_info
        self.master_epoch = max(self.master_epoch, epoch, master_info.epoch)
        self.ping_interval = ping_interval
        if not self.registered:
            self.registered = True
            self._register_backoff = self.config.registration_backoff
            out.append(CancelTimer(REGISTER))
            out.append(ScheduleTimer(now + self._master_silence_limit(), MASTER_CHECK))
            out.append(Log("info", "agent_registered" if first else "agent_reregistered",
                           {"agent_id": agent_id, "master": master_info.address}))
            for key in self.pending:  # resend what the old connection may have lost
                self._send_head(key, now, out, fresh=True)

    def _master_silence_limit(self) -> float:
        """The operator's limit, else the master's own (Mesos: the agent follows the ping
        timeout its master announces), so both sides give up on each other at about the same time."""
        if self.config.master_silence_limit is not None:
            return self.config.master_silence_limit
        return self.ping_interval * MISSED_PINGS

    def _on_Ping(self, msg: am.Ping, epoch: int, now: float, out: list[Effect]) -> None:
        if msg.interval_seconds is not None and msg.interval_seconds > 0:
            self.ping_interval = msg.interval_seconds  # a growing cluster pings less often
        if self.registered:
            held = self._held_for_master()
            out.append(SendToMaster(am.Pong(msg.seq, len(held), am.task_set_digest(held))))

    def _on_ShutdownAgent(self, msg: am.ShutdownAgent, epoch: int, now: float, out: list[Effect]) -> None:
        out.append(Log("warning", "master_shut_down_agent", {"message": msg.message}))
        self._on_shutdown(now, out)

    # --- tasks ----------------------------------------------------------------------------

    def _on_RunTask(self, msg: am.RunTask, epoch: int, now: float, out: list[Effect]) -> None:
        task, framework_id = msg.task, msg.framework_info.id or ""
        if self.frameworks.get(framework_id) != msg.framework_info:
            self.frameworks[framework_id] = msg.framework_info
            self._agent_dirty = True
        self.shutting_down_frameworks.discard(framework_id)
        if self._already_known(framework_id, task.task_id):
            # At most once per task id: never start a second copy.
            out.append(Log("warning", "duplicate_task_refused", {"task_id": task.task_id}))
            return
        record = self._new_record(framework_id, task)
        problem = self._unsupported(task, framework_id)
        if problem is not None:
            self._terminal(record, TaskState.ERROR, TaskReason.TASK_INVALID, problem, now, out)
            return
        self._start(record, now, out)

    def _already_known(self, framework_id: str, task_id: str) -> bool:
        key = (framework_id, task_id)
        return key in self.tasks or key in self.pending or self.completed.has(framework_id, task_id)

    def _new_record(self, framework_id: str, task: TaskInfo) -> TaskRecord:
        sandbox = f"{self.config.work_dir}/sandboxes/{framework_id}/{task.task_id}"
        grace = self.config.kill_grace_period
        if task.kill_policy and task.kill_policy.grace_period_seconds is not None:
            grace = task.kill_policy.grace_period_seconds
        record = TaskRecord(framework_id, task, sandbox, kill_grace=grace)
        self.tasks[(framework_id, task.task_id)] = record
        self._touch((framework_id, task.task_id))
        return record

    def _start(self, record: TaskRecord, now: float, out: list[Effect], shared: str | None = None,
               envelope: tuple[str, float | None, float | None] | None = None) -> None:
        """Fetch (if needed) and launch one task; STARTING goes out at once. A task with its own
        executor goes to that executor, which reports its states itself."""
        task, framework_id, sandbox = record.info, record.framework_id, record.sandbox
        if task.executor is not None:
            self._run_in_executor(record, now, out)
            return
        env = {
            "TEPUI_TASK_ID": task.task_id,
            "TEPUI_FRAMEWORK_ID": framework_id,
            "TEPUI_AGENT_ID": self.agent_id or "",
            "TEPUI_SANDBOX": sandbox,
            "MESOS_SANDBOX": sandbox,
            "MESOS_TASK_ID": task.task_id,
        }
        wanted = int(Resources.from_wire(task.resources).scalar("gpus"))
        if wanted:
            held = {i for r in self.tasks.values() for i in r.gpus}
            free = [i for i in self.config.gpu_ids if i not in held]
            if len(free) < wanted:
                self._terminal(record, TaskState.ERROR, TaskReason.TASK_INVALID,
                               f"task asks for {wanted} GPUs but this agent has {len(free)} free", now, out)
                return
            record.gpus = tuple(free[:wanted])
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in record.gpus)
            env["NVIDIA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"]
        if shared is not None:
            env["TEPUI_SHARED"] = shared  # the group's shared volume (also linked as ./shared)
        record.environment = env
        volumes = self._volume_mounts(task)
        launch: Effect
        if task.container is not None and task.container.type == "DOCKER":
            if volumes:  # bind mounts, inside the container's view of the sandbox
                mounts = [Volume(container_path=f"/mnt/mesos/sandbox/{path}", host_path=directory)
                          for directory, path in volumes]
                task = msgspec.structs.replace(task, container=msgspec.structs.replace(
                    task.container, volumes=list(task.container.volumes) + mounts))
            launch = LaunchContainer(framework_id, task.task_id, sandbox, task, env)
        else:
            assert task.command is not None
            env.update(task.command.environment)
            resources = Resources.from_wire(task.resources)
            launch = LaunchProcess(framework_id, task.task_id, sandbox, task.command, env, self._user_for(task),
                                   resources.scalar("cpus") or None, resources.scalar("mem") or None, shared,
                                   tuple(volumes), envelope)
        record.state = TaskState.STARTING
        # STARTING goes out before the launch work begins (the shell sends it before it spawns),
        # so that its acknowledgement travels while the process starts and RUNNING can follow
        # the spawn at once (one update in flight per task). Where the task's files are: local
        # tools (``tepui run``) show stdout/stderr from it.
        self._update(record, TaskState.STARTING, None, None, now, out, labels={SANDBOX_LABEL: sandbox})
        uris = list(task.command.uris) if task.command is not None else []
        if uris:
            # Mesos: the fetcher runs first; the container starts only once every URI is in.
            record.launch = launch
            out.append(FetchURIs(framework_id, task.task_id, sandbox, uris, self._user_for(task)))
        else:
            out.append(launch)

    def _volume_dir(self, role: str, volume: str) -> str:
        return f"{self.config.work_dir}/volumes/{role.replace('/', '%2F')}/{volume}"

    def _volume_mounts(self, task: TaskInfo) -> list[tuple[str, str]]:
        """Persistent volumes among the task's resources: (directory, path in the sandbox)."""
        return [(self._volume_dir(key.role, key.volume), key.volume_path or key.volume)
                for key in Resources.from_wire(task.resources).volumes() if key.volume]

    def _on_DestroyVolumes(self, msg: am.DestroyVolumes, epoch: int, now: float, out: list[Effect]) -> None:
        try:
            keys = [key for key in Resources.from_wire(msg.volumes).volumes() if key.volume]
        except InvalidResources as exc:  # found by fuzzing: raised out of handle()
            out.append(Log("warning", "destroy_volumes_refused", {"error": str(exc)}))
            return
        # Never a path outside <work_dir>/volumes, whatever the message says (fuzzing again).
        paths = tuple(self._volume_dir(key.role, key.volume) for key in keys
                      if not _unsafe_name(key.volume) and key.role not in ("", ".", ".."))
        if paths:
            out.append(RemoveVolumes(paths))
            out.append(Log("info", "volumes_destroyed", {"paths": ",".join(paths)}))

    def _on_fetched(self, event: FetchSucceeded | FetchFailed, now: float, out: list[Effect]) -> None:
        record = self.tasks.get((event.framework_id, event.task_id))
        if record is None or record.launch is None:
            return
        launch, record.launch = record.launch, None
        if isinstance(event, FetchFailed):
            self._terminal(record, TaskState.FAILED, TaskReason.FETCH_FAILED, event.message, now, out)
        elif record.kill_requested:
            self._terminal(record, TaskState.KILLED, TaskReason.TASK_KILLED_DURING_LAUNCH,
                           "killed while its URIs were being fetched", now, out)
        else:
            out.append(launch)
            return
        self._maybe_exit(now, out)

    def _user_for(self, task: TaskInfo) -> str | None:
        requested = task.command.user if task.command else None
        return requested if requested is not None else self.config.task_user

    def _unsupported(self, task: TaskInfo, framework_id: str | None = None) -> str | None:
        """Honest refusals for what this agent cannot run (yet), and for what no master should
        have sent: ids that would leave the sandbox directory, resources that do not parse
        (the master validates both; the agent does not rely on it)."""
        if _unsafe_name(task.task_id) or (framework_id is not None and _unsafe_name(framework_id)):
            return f"task id {task.task_id!r} or framework id {framework_id!r} cannot name a sandbox directory"
        try:
            resources = Resources.from_wire(task.resources)
        except InvalidResources as exc:
            return f"the task's resources are invalid: {exc}"
        if any(_unsafe_name(key.volume) for key in resources.volumes() if key.volume is not None):
            return "a persistent volume id of the task cannot name a directory"
        requested = task.command.user if task.command else None
        if requested is not None and requested != self.config.task_user and requested not in self.config.allowed_users:
            return (f"task asks to run as user {requested!r}, which this agent does not allow "
                    f"(allowed: {', '.join(sorted(self.config.allowed_users)) or 'none'}; see --allowed-users)")
        if task.executor is not None:
            if task.executor.type != "CUSTOM" or task.executor.command is None:
                return "a task's own executor must be CUSTOM with a command (DEFAULT executors run task groups)"
            if not self.config.executor_endpoint:
                return "this agent runs no custom executors"
            return None
        if task.container is not None and task.container.type == "DOCKER":
            if not self.config.docker_enabled:
                return "this agent does not run Docker containers (start it with --containerizers mesos,docker)"
            if task.container.docker is None or not task.container.docker.image:
                return "a DOCKER container needs container.docker.image"
            return None
        if task.container is not None and task.container.type != "MESOS":
            return f"container type {task.container.type!r} is unknown (MESOS or DOCKER)"
        if task.command is None:
            return "task has no command"
        return None

    def _on_spawned(self, event: TaskSpawned, now: float, out: list[Effect]) -> None:
        if event.task_id.startswith(EXECUTOR_PREFIX):
            return  # an executor process: it subscribes on its own
        record = self.tasks.get((event.framework_id, event.task_id))
        if record is None:
            return
        record.pid = event.pid
        if record.kill_requested:
            self._signal(record, now, out)
            return
        record.state = TaskState.RUNNING
        self._update(record, TaskState.RUNNING, None, None, now, out)
        check = record.info.health_check
        if check is not None:
            record.health = HealthState(started_at=now)
            out.append(ScheduleTimer(first_probe_at(check, now), ("health", event.framework_id, event.task_id)))

    def _on_health(self, event: HealthCheckResult, now: float, out: list[Effect]) -> None:
        record = self.tasks.get((event.framework_id, event.task_id))
        check = record.info.health_check if record is not None else None
        if record is None or check is None or record.health is None or record.kill_requested or record.exited:
            return
        verdict = judge(record.health, check, event.ok, event.detail, now)
        if verdict.report is not None:
            self._update(record, TaskState.RUNNING, TaskReason.TASK_HEALTH_CHECK_STATUS_UPDATED, verdict.message,
                         now, out, healthy=verdict.report)
        if verdict.kill:
            record.unhealthy = verdict.message
            record.kill_requested = True
            self._touch((event.framework_id, event.task_id))
            out.append(Log("warning", "task_unhealthy", {"task_id": event.task_id, "message": verdict.message}))
            self._signal(record, now, out)
        else:
            out.append(ScheduleTimer(now + max(0.1, check.interval_seconds),
                                     ("health", event.framework_id, event.task_id)))

    def _on_launch_failed(self, event: TaskLaunchFailed, now: float, out: list[Effect]) -> None:
        record = self.tasks.get((event.framework_id, event.task_id))
        if record is not None:
            self._terminal(record, TaskState.FAILED, TaskReason.CONTAINER_LAUNCH_FAILED, event.message, now, out)

    def _on_exited(self, event: TaskExited, now: float, out: list[Effect]) -> None:
        if event.task_id.startswith(EXECUTOR_PREFIX):
            self._on_executor_exited(event.framework_id, event.task_id[len(EXECUTOR_PREFIX):], event.exit_code,
                                     event.signal, now, out)
            return
        record = self.tasks.get((event.framework_id, event.task_id))
        if record is None or record.exited:
            return
        record.exited = True
        out.append(CancelTimer(("escalate", event.framework_id, event.task_id)))
        if event.signal is not None:
            code, how = 128 + event.signal, f"terminated by signal {event.signal}"
        else:
            code, how = event.exit_code, f"exited with status {event.exit_code}"
        record.exit_code = code
        out.append(CancelTimer(("health", event.framework_id, event.task_id)))
        if record.unhealthy is not None:
            self._terminal(record, TaskState.FAILED, TaskReason.TASK_HEALTH_CHECK_STATUS_UPDATED, record.unhealthy,
                           now, out, healthy=False)
            self._maybe_exit(now, out)
            return
        if event.oom_killed and not record.kill_requested:
            mem = Resources.from_wire(record.info.resources).scalar("mem")
            message = (f"Memory limit exceeded: the task used more than its {mem:g} MiB (mem) and the kernel's "
                       "OOM killer ended it; ask for more mem")
            self._terminal(record, TaskState.FAILED, TaskReason.CONTAINER_LIMITATION_MEMORY, message, now, out)
            self._maybe_exit(now, out)
            return
        if record.kill_requested:
            state, reason, message = TaskState.KILLED, None, record.kill_reason or f"Command {how} after a kill request"
        elif event.signal is None and event.exit_code == 0:
            state, reason, message = TaskState.FINISHED, None, "Command exited with status 0"
        elif event.signal is None and event.exit_code is None:  # nobody saw how: not the command's failure
            state, reason, message = TaskState.FAILED, TaskReason.EXECUTOR_TERMINATED, "its supervisor ended unseen"
        else:
            state, reason, message = TaskState.FAILED, TaskReason.COMMAND_EXECUTOR_FAILED, f"Command {how}"
        if event.message and state != TaskState.FINISHED:
            message = event.message  # the containerizer's own account (e.g. why a container died)

        self._terminal(record, state, reason, message, now, out)
        self._maybe_exit(now, out)

    def _terminal(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str,
                  now: float, out: list[Effect], healthy: bool | None = None) -> None:
        record.state = state
        self._touch((record.framework_id, record.info.task_id))
        if record.group is not None and state in (TaskState.FAILED, TaskState.ERROR):
            self._kill_group_members(record, now, out)
        self.tasks.pop((record.framework_id, record.info.task_id), None)
        self.completed.append(record)
        if record.framework_id in self.shutting_down_frameworks:
            return  # the framework is gone; nobody is left to acknowledge
        self._update(record, state, reason, message, now, out, exit_code=record.exit_code, healthy=healthy)

    # --- status updates (the queue: status_updates.py) -----------------------------------

    def _update(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str | None,
                now: float, out: list[Effect], exit_code: int | None = None,
                labels: dict[str, str] | None = None, healthy: bool | None = None) -> None:
        status = TaskStatus(
            task_id=record.info.task_id, state=state, message=message, source=TaskSource.AGENT,
            reason=reason, agent_id=self.agent_id, timestamp=now, uuid=self._new_uuid(), exit_code=exit_code,
            labels=labels or {}, healthy=healthy,
        )
        self._enqueue(record.framework_id, status, now, out)

    def _enqueue(self, framework_id: str, status: TaskStatus, now: float, out: list[Effect]) -> None:
        self._dirty_tasks.add((framework_id, status.task_id))  # checkpointed before it is forwarded
        self.pending.enqueue(framework_id, status, now, self.registered, out)

    def _send_head(self, key: tuple[str, str], now: float, out: list[Effect], fresh: bool = False) -> None:
        self.pending.send_head(key, now, self.registered, out, fresh)

    def _on_StatusUpdateAck(self, msg: am.StatusUpdateAck, epoch: int, now: float, out: list[Effect]) -> None:
        outcome = self.pending.acknowledge(msg.framework_id, msg.task_id, msg.uuid, now, self.registered, out)
        if outcome is Ack.STALE:
            out.append(Log("debug", "stale_ack_ignored", {"task_id": msg.task_id}))
            return
        self._dirty_tasks.add((msg.framework_id, msg.task_id))
        if outcome is Ack.DRAINED:
            self._maybe_exit(now, out)

    # --- timers ---------------------------------------------------------------------------

    def _on_timer(self, key: Any, now: float, out: list[Effect]) -> None:
        if key == REGISTER:
            if not self.registered and not self.stopping:
                self._register(now, out)
        elif key == STOP_DEADLINE:
            for record in self.tasks.values():
                if not record.exited:
                    out.append(SignalProcess(record.framework_id, record.info.task_id, "KILL"))
            self._maybe_exit(now, out, force=True)
        elif key == MASTER_CHECK:
            if self.registered and now - self.last_master_contact > self._master_silence_limit():
                # No ping for too long: the master died or the link is cut. Re-register; the
                # master then reconciles our tasks (Mesos agent behaviour).
                self.registered = False
                out.append(Log("warning", "master_silent", {"seconds": round(now - self.last_master_contact, 1)}))
                self._register(now, out)
            out.append(ScheduleTimer(now + self._master_silence_limit() / 5, MASTER_CHECK))
        elif key[0] == "retry":
            task_key = (key[1], key[2])
            if task_key in self.pending:
                self._send_head(task_key, now, out)
        elif key[0] == "health":
            record = self.tasks.get((key[1], key[2]))
            check = record.info.health_check if record is not None else None
            if record is not None and check is not None and record.state == TaskState.RUNNING \
                    and not record.kill_requested:
                out.append(RunHealthCheck(record.framework_id, record.info.task_id, check, record.sandbox,
                                          record.environment, self._user_for(record.info)))
        elif key[0] == "executor_kill":
            self._executor_kill_timer(key[1], key[2], out)
        elif key[0] == "executor_reregister":
            self._executor_reregister_timer(key[1], key[2], now, out)
        elif key[0] == "escalate":
            record = self.tasks.get((key[1], key[2]))
            if record is not None and not record.exited:
                out.append(SignalProcess(record.framework_id, record.info.task_id, "KILL"))


def _unsafe_name(value: str) -> bool:
    """True for what cannot be one path component under the agent's work dir."""
    return value in ("", ".", "..") or "/" in value or "\0" in value
