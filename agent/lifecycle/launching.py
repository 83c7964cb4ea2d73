"""From RUN_TASK to a running process, the core's side (pure).

At most once per task id: a RUN_TASK for a task the agent runs, ran, or still reports is
refused (DESIGN §6). A task the agent cannot run gets an honest ERROR (``unsupported``). Then
STARTING goes out at once, URIs are fetched if the task has any (Mesos: the container starts
only once every URI is in), the process or container is launched, and RUNNING follows its
spawn. Task groups (``groups.py``) start the same way, together or not at all; a task with its
own executor goes to ``executor_flows.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import msgspec

from tepui.agent.events import (
    AgentEffect,
    FetchFailed,
    FetchSucceeded,
    FetchURIs,
    LaunchContainer,
    LaunchProcess,
    Log,
    RemoveVolumes,
    SendToMaster,
    TaskSpawned,
)
from tepui.agent.custom_executors.executor_flows import ExecutorFlows
from tepui.agent.custom_executors.executors import EXECUTOR_PREFIX
from tepui.agent.frameworks import Frameworks
from tepui.agent.custom_executors.groups import Envelope, group_envelope, group_problems
from tepui.agent.checkpointing.journal import CheckpointJournal
from tepui.agent.link.registration import Registration
from tepui.agent.updates.reporting import StatusReporter
from tepui.agent.updates.status_updates import StatusUpdateQueue
from tepui.agent.lifecycle.stopping import Drain, signal
from tepui.agent.lifecycle.task_ends import TaskEnds
from tepui.agent.health_checks.task_health import TaskHealth
from tepui.agent.tasks import TaskRecord, TaskTable, task_user, unsafe_name
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskInfo, TaskReason, TaskState, Volume
from tepui.sdk.resources import InvalidResources, Resources

if TYPE_CHECKING:
    from tepui.agent.core import AgentConfig

SANDBOX_LABEL = "tepui.sandbox"


@dataclass(eq=False)
class Launcher:
    config: AgentConfig
    registration: Registration
    tasks: TaskTable
    frameworks: Frameworks
    updates: StatusUpdateQueue[SendToMaster]
    reporter: StatusReporter
    journal: CheckpointJournal
    ends: TaskEnds
    health: TaskHealth
    executor_flows: ExecutorFlows
    drain: Drain

    def known(self, framework_id: str, task_id: str) -> bool:
        """Running, ended with an update still unacknowledged, or among the last ended."""
        key = (framework_id, task_id)
        return key in self.tasks.running or key in self.updates or self.tasks.completed.has(framework_id, task_id)

    def run_task(self, msg: am.RunTask, now: float, out: list[AgentEffect]) -> None:
        task, framework_id = msg.task, msg.framework_info.id or ""
        if self.frameworks.launching(msg.framework_info):
            self.journal.agent_changed()
        if self.known(framework_id, task.task_id):
            # At most once per task id: never start a second copy.
            out.append(Log("warning", "duplicate_task_refused", {"task_id": task.task_id}))
            return
        record = self._new_record(framework_id, task)
        problem = self.unsupported(task, framework_id)
        if problem is not None:
            self.ends.terminal(record, TaskState.ERROR, TaskReason.TASK_INVALID, problem, now, out)
            return
        self._start(record, now, out)

    def run_task_group(self, msg: am.RunTaskGroup, now: float, out: list[AgentEffect]) -> None:
        """Mesos default executor semantics: the group starts together or not at all, its tasks
        share a volume, and when one of them fails the others are killed."""
        framework_id = msg.framework_info.id or ""
        self.frameworks.launching(msg.framework_info)
        tasks = list(msg.task_group.tasks)
        if any(self.known(framework_id, t.task_id) for t in tasks):
            out.append(Log("warning", "duplicate_task_group_refused", {"executor_id": msg.executor.executor_id}))
            return
        group = msg.executor.executor_id
        records = [self._new_record(framework_id, task) for task in tasks]
        problems = group_problems(msg, self.unsupported)
        if problems:
            message = "the task group was not started: " + "; ".join(problems)
            for record in records:
                self.ends.terminal(record, TaskState.ERROR, TaskReason.TASK_GROUP_INVALID, message, now, out)
            return
        shared = f"{self.config.work_dir}/groups/{framework_id}/{group}"
        envelope = group_envelope(msg)
        for record in records:
            record.group = group
            self._start(record, now, out, shared, envelope)

    def _new_record(self, framework_id: str, task: TaskInfo) -> TaskRecord:
        sandbox = f"{self.config.work_dir}/sandboxes/{framework_id}/{task.task_id}"
        grace = self.config.kill_grace_period
        if task.kill_policy and task.kill_policy.grace_period_seconds is not None:
            grace = task.kill_policy.grace_period_seconds
        record = TaskRecord(framework_id, task, sandbox, kill_grace=grace)
        self.tasks.add(record)
        self.journal.touch(record.key)
        return record

    def _start(self, record: TaskRecord, now: float, out: list[AgentEffect], shared: str | None = None,
               envelope: Envelope | None = None) -> None:
        """Fetch (if needed) and launch one task; STARTING goes out at once. A task with its own
        executor goes to that executor, which reports its states itself."""
        task, framework_id, sandbox = record.info, record.framework_id, record.sandbox
        if task.executor is not None:
            self.executor_flows.run_task(record, now, out)
            return
        env = {
            "TEPUI_TASK_ID": task.task_id,
            "TEPUI_FRAMEWORK_ID": framework_id,
            "TEPUI_AGENT_ID": self.registration.agent_id or "",
            "TEPUI_SANDBOX": sandbox,
            "MESOS_SANDBOX": sandbox,
            "MESOS_TASK_ID": task.task_id,
        }
        wanted = int(Resources.from_wire(task.resources).scalar("gpus"))
        if wanted:
            held = self.tasks.gpus_held()
            free = [i for i in self.config.gpu_ids if i not in held]
            if len(free) < wanted:
                self.ends.terminal(record, TaskState.ERROR, TaskReason.TASK_INVALID,
                                    f"task asks for {wanted} GPUs but this agent has {len(free)} free", now, out)
                return
            record.gpus = tuple(free[:wanted])
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in record.gpus)
            env["NVIDIA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"]
        if shared is not None:
            env["TEPUI_SHARED"] = shared  # the group's shared volume (also linked as ./shared)
        record.environment = env
        volumes = self._volume_mounts(task)
        user = task_user(task, self.config.task_user)
        launch: LaunchProcess | LaunchContainer
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
            launch = LaunchProcess(framework_id, task.task_id, sandbox, task.command, env, user,
                                   resources.scalar("cpus") or None, resources.scalar("mem") or None, shared,
                                   tuple(volumes), envelope)
        record.state = TaskState.STARTING
        # STARTING goes out before the launch work begins (the shell sends it before it spawns),
        # so that its acknowledgement travels while the process starts and RUNNING can follow
        # the spawn at once (one update in flight per task). Where the task's files are: local
        # tools (``tepui run``) show stdout/stderr from it.
        self.reporter.report(record, TaskState.STARTING, None, None, now, out, labels={SANDBOX_LABEL: sandbox})
        uris = list(task.command.uris) if task.command is not None else []
        if uris:
            # Mesos: the fetcher runs first; the container starts only once every URI is in.
            record.launch = launch
            out.append(FetchURIs(framework_id, task.task_id, sandbox, uris, user))
        else:
            out.append(launch)

    def _volume_dir(self, role: str, volume: str) -> str:
        return f"{self.config.work_dir}/volumes/{role.replace('/', '%2F')}/{volume}"

    def _volume_mounts(self, task: TaskInfo) -> list[tuple[str, str]]:
        """Persistent volumes among the task's resources: (directory, path in the sandbox)."""
        return [(self._volume_dir(key.role, key.volume), key.volume_path or key.volume)
                for key in Resources.from_wire(task.resources).volumes() if key.volume]

    def destroy_volumes(self, msg: am.DestroyVolumes, now: float, out: list[AgentEffect]) -> None:
        try:
            keys = [key for key in Resources.from_wire(msg.volumes).volumes() if key.volume]
        except InvalidResources as exc:  # found by fuzzing: raised out of handle()
            out.append(Log("warning", "destroy_volumes_refused", {"error": str(exc)}))
            return
        # Never a path outside <work_dir>/volumes, whatever the message says (fuzzing again).
        paths = tuple(self._volume_dir(key.role, key.volume) for key in keys
                      if key.volume and not unsafe_name(key.volume) and key.role not in ("", ".", ".."))
        if paths:
            out.append(RemoveVolumes(paths))
            out.append(Log("info", "volumes_destroyed", {"paths": ",".join(paths)}))

    def fetched(self, event: FetchSucceeded | FetchFailed, now: float, out: list[AgentEffect]) -> None:
        record = self.tasks.get((event.framework_id, event.task_id))
        if record is None or record.launch is None:
            return
        launch, record.launch = record.launch, None
        if isinstance(event, FetchFailed):
            self.ends.terminal(record, TaskState.FAILED, TaskReason.FETCH_FAILED, event.message, now, out)
        elif record.kill_requested:
            self.ends.terminal(record, TaskState.KILLED, TaskReason.TASK_KILLED_DURING_LAUNCH,
                                "killed while its URIs were being fetched", now, out)
        else:
            out.append(launch)
            return
        self.drain.maybe_exit(now, out)

    def spawned(self, event: TaskSpawned, now: float, out: list[AgentEffect]) -> None:
        if event.task_id.startswith(EXECUTOR_PREFIX):
            return  # an executor process: it subscribes on its own
        record = self.tasks.get((event.framework_id, event.task_id))
        if record is None:
            return
        record.pid = event.pid
        if record.kill_requested:
            signal(record, now, out)
            return
        record.state = TaskState.RUNNING
        self.reporter.report(record, TaskState.RUNNING, None, None, now, out)
        self.health.started(record, now, out)

    def unsupported(self, task: TaskInfo, framework_id: str | None = None) -> str | None:
        """Honest refusals for what this agent cannot run (yet), and for what no master should
        have sent: ids that would leave the sandbox directory, resources that do not parse
        (the master validates both; the agent does not rely on it)."""
        config = self.config
        if unsafe_name(task.task_id) or (framework_id is not None and unsafe_name(framework_id)):
            return f"task id {task.task_id!r} or framework id {framework_id!r} cannot name a sandbox directory"
        try:
            resources = Resources.from_wire(task.resources)
        except InvalidResources as exc:
            return f"the task's resources are invalid: {exc}"
        if any(unsafe_name(key.volume) for key in resources.volumes() if key.volume is not None):
            return "a persistent volume id of the task cannot name a directory"
        requested = task.command.user if task.command else None
        if requested is not None and requested != config.task_user and requested not in config.allowed_users:
            return (f"task asks to run as user {requested!r}, which this agent does not allow "
                    f"(allowed: {', '.join(sorted(config.allowed_users)) or 'none'}; see --allowed-users)")
        if task.executor is not None:
            if task.executor.type != "CUSTOM" or task.executor.command is None:
                return "a task's own executor must be CUSTOM with a command (DEFAULT executors run task groups)"
            if not config.executor_endpoint:
                return "this agent runs no custom executors"
            return None
        if task.container is not None and task.container.type == "DOCKER":
            if not config.docker_enabled:
                return "this agent does not run Docker containers (start it with --containerizers mesos,docker)"
            if task.container.docker is None or not task.container.docker.image:
                return "a DOCKER container needs container.docker.image"
            return None
        if task.container is not None and task.container.type != "MESOS":
            return f"container type {task.container.type!r} is unknown (MESOS or DOCKER)"
        if task.command is None:
            return "task has no command"
        return None
