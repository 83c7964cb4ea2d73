"""Custom executors, the agent's side (Mesos v1 executor API over ``ipc://``), pure.

A task whose ``executor`` is a CUSTOM ``ExecutorInfo`` runs inside that executor: the agent
starts the executor's command once per (framework, executor id) with the environment the SDK's
``ExecutorDriver`` reads (``TEPUI_AGENT_ENDPOINT``, ``TEPUI_FRAMEWORK_ID``,
``TEPUI_EXECUTOR_ID``), queues tasks until the executor SUBSCRIBEs, then sends it LAUNCH, KILL,
MESSAGE and SHUTDOWN. The executor's UPDATEs go through the agent's status update manager (kept
until the framework acknowledges them) and are acknowledged to the executor at once; updates
the executor re-sends on re-subscribing are taken only once (by UUID). When the executor's
process ends, its unfinished tasks end FAILED (``REASON_EXECUTOR_TERMINATED``) and the master
tells the framework (FAILURE with the executor id).

Who may subscribe (Mesos's executor tokens): the socket is local but not private (executors run
as task users, so it is world-writable), so each launch of an executor gets a fresh random
secret, given to the executor only through its environment (``TEPUI_EXECUTOR_SECRET``, set
after the framework's own variables so that none can replace it) and checkpointed with the
executor (0600, so a restarted agent still accepts it). A SUBSCRIBE is accepted only with that
secret for that (framework, executor), compared in constant time; a missing or wrong one gets
an ERROR, is counted and logged (never the secret), and changes nothing — in particular it
does not take the connection of a subscribed executor over.

A mixin of :class:`tepui.agent.core.AgentCore`, whose state it shares.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import msgspec

from tepui.agent.events import LaunchProcess, SendToExecutor, SendToMaster, SignalProcess
from tepui.sdk.effects import Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import executor as ex
from tepui.sdk.protocol.values import ExecutorInfo, TaskInfo, TaskReason, TaskSource, TaskState, TaskStatus
from tepui.sdk.resources import Resources

if TYPE_CHECKING:
    from tepui.agent.core import AgentConfig, TaskRecord
    from tepui.sdk.protocol.values import FrameworkInfo

Effect = Any
EXECUTOR_PREFIX = "executor/"  # launcher keys of executor processes; task ids cannot contain '/'
ENV_SECRET = "TEPUI_EXECUTOR_SECRET"


@dataclass
class ExecutorRecord:
    framework_id: str
    info: ExecutorInfo
    sandbox: str
    peer: bytes | None = None
    queued: list[TaskInfo] = field(default_factory=list)
    tasks: set[str] = field(default_factory=set)
    exited: bool = False
    shutting_down: bool = False
    secret: str | None = None  # None only for one recovered from a checkpoint written before secrets


class ExecutorHandling:
    config: AgentConfig
    agent_id: str | None
    tasks: dict[tuple[str, str], TaskRecord]
    frameworks: dict[str, FrameworkInfo]
    executors: dict[tuple[str, str], ExecutorRecord]
    executor_peers: dict[bytes, tuple[str, str]]
    executor_subscribe_refused: int  # SUBSCRIBEs without the right secret (the agent's /health shows it)
    _new_secret: Callable[[], str]
    _executors_dirty: bool

    if TYPE_CHECKING:
        def _terminal(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str,
                      now: float, out: list[Effect], healthy: bool | None = None) -> None: ...
        def _enqueue(self, framework_id: str, status: TaskStatus, now: float, out: list[Effect]) -> None: ...
        def _maybe_exit(self, now: float, out: list[Effect], force: bool = False) -> None: ...
        def _user_for(self, task: TaskInfo) -> str | None: ...
        def agent_info(self) -> Any: ...

    # --- launching ------------------------------------------------------------------------

    def _run_in_executor(self, record: TaskRecord, now: float, out: list[Effect]) -> None:
        task = record.info
        assert task.executor is not None
        key = (record.framework_id, task.executor.executor_id)
        executor = self.executors.get(key)
        if executor is None or executor.exited:
            executor = self._start_executor(record, task.executor, out)
        executor.tasks.add(task.task_id)
        self._executors_dirty = True
        if executor.peer is not None:
            out.append(SendToExecutor(executor.peer, ex.LaunchTask(task)))
        else:
            executor.queued.append(task)

    def _start_executor(self, record: TaskRecord, info: ExecutorInfo, out: list[Effect]) -> ExecutorRecord:
        fid, eid = record.framework_id, info.executor_id
        sandbox = f"{self.config.work_dir}/executors/{fid}/{eid}"
        executor = ExecutorRecord(fid, info, sandbox, secret=self._new_secret())
        self.executors[(fid, eid)] = executor
        grace = max(1.0, self.config.kill_grace_period - 1.0)
        env = {
            "TEPUI_AGENT_ENDPOINT": self.config.executor_endpoint,
            "TEPUI_FRAMEWORK_ID": fid,
            "TEPUI_EXECUTOR_ID": eid,
            "TEPUI_AGENT_ID": self.agent_id or "",
            "TEPUI_SANDBOX": sandbox,
            "MESOS_SANDBOX": sandbox,
            "TEPUI_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{grace:g}",
        }
        assert info.command is not None
        env.update(info.command.environment)
        assert executor.secret is not None
        env[ENV_SECRET] = executor.secret  # after the framework's variables: none of them replaces it
        resources = Resources.from_wire(info.resources) if info.resources else Resources.from_wire(record.info.resources)
        out.append(LaunchProcess(fid, EXECUTOR_PREFIX + eid, sandbox, info.command, env, self._user_for(record.info),
                                 resources.scalar("cpus") or None, resources.scalar("mem") or None))
        out.append(Log("info", "executor_starting", {"framework_id": fid, "executor_id": eid}))
        return executor

    # --- messages from executors ----------------------------------------------------------

    def _on_executor_message(self, peer: bytes, body: Any, now: float, out: list[Effect]) -> None:
        if isinstance(body, ex.ExecutorSubscribe):
            self._on_executor_subscribe(peer, body, now, out)
            return
        key = self.executor_peers.get(peer)
        executor = self.executors.get(key) if key else None
        if executor is None:
            out.append(SendToExecutor(peer, ex.ExecutorError("not subscribed: send SUBSCRIBE first")))
            return
        if isinstance(body, ex.ExecutorUpdate):
            self._on_executor_update(executor, peer, body.status, now, out)
        elif isinstance(body, ex.ExecutorMessage):
            out.append(SendToMaster(am.ExecutorToFramework(executor.framework_id, executor.info.executor_id,
                                                           self.agent_id or "", body.data)))
        elif isinstance(body, ex.ExecutorHeartbeat):
            out.append(SendToExecutor(peer, ex.ExecutorHeartbeatEvent()))

    def _on_executor_subscribe(self, peer: bytes, msg: ex.ExecutorSubscribe, now: float, out: list[Effect]) -> None:
        key = (msg.framework_id, msg.executor_id)
        executor = self.executors.get(key)
        if executor is None or executor.exited:
            out.append(SendToExecutor(peer, ex.ExecutorError(
                f"executor {msg.executor_id!r} of framework {msg.framework_id!r} is unknown to this agent")))
            return
        problem = _secret_problem(executor, msg.secret)
        if problem is not None:
            self.executor_subscribe_refused += 1
            out.append(Log("warning", "executor_subscribe_refused", {
                "framework_id": msg.framework_id, "executor_id": msg.executor_id, "reason": problem[0],
                "refused_total": self.executor_subscribe_refused}))
            out.append(SendToExecutor(peer, ex.ExecutorError(
                f"SUBSCRIBE refused: executor {msg.executor_id!r} of framework {msg.framework_id!r} {problem[1]}. "
                f"Only the process this agent started as that executor can subscribe as it: it finds the secret "
                f"in its environment ({ENV_SECRET}), which tepui.sdk.ExecutorDriver sends")))
            return
        if executor.secret is None:
            out.append(Log("warning", "executor_subscribed_without_secret", {
                "framework_id": msg.framework_id, "executor_id": msg.executor_id,
                "reason": "started by an agent version without executor secrets; recovered from its checkpoint"}))
        if executor.peer is not None and executor.peer != peer:
            self.executor_peers.pop(executor.peer, None)
        executor.peer = peer
        self.executor_peers[peer] = key
        for update in msg.unacknowledged_updates:  # resent after a reconnect: each is taken once
            self._on_executor_update(executor, peer, update.status, now, out)
        framework = self.frameworks.get(msg.framework_id)
        assert framework is not None
        out.append(SendToExecutor(peer, ex.ExecutorSubscribed(executor.info, framework, self.agent_info())))
        for task in executor.queued:
            out.append(SendToExecutor(peer, ex.LaunchTask(task)))
        executor.queued.clear()

    def _on_executor_update(self, executor: ExecutorRecord, peer: bytes, status: TaskStatus, now: float,
                            out: list[Effect]) -> None:
        record = self.tasks.get((executor.framework_id, status.task_id))
        if record is None or status.task_id not in executor.tasks:
            out.append(Log("warning", "executor_update_for_unknown_task",
                           {"executor_id": executor.info.executor_id, "task_id": status.task_id}))
            if status.uuid is not None:
                out.append(SendToExecutor(peer, ex.Acknowledged(status.task_id, status.uuid)))
            return
        if status.uuid is not None and self._already_queued(executor.framework_id, status):
            out.append(SendToExecutor(peer, ex.Acknowledged(status.task_id, status.uuid)))
            return
        # The agent vouches for where the update comes from, whatever the executor wrote.
        status = msgspec.structs.replace(status, agent_id=self.agent_id, executor_id=executor.info.executor_id,
                                         source=TaskSource.EXECUTOR, timestamp=status.timestamp or now)
        record.state = status.state
        if status.state.is_terminal:
            self.tasks.pop((record.framework_id, record.info.task_id), None)
            executor.tasks.discard(record.info.task_id)
            self._executors_dirty = True
            self.completed.append(record)  # type: ignore[attr-defined]
        self._enqueue(executor.framework_id, status, now, out)
        if status.uuid is not None:
            out.append(SendToExecutor(peer, ex.Acknowledged(status.task_id, status.uuid)))
        if status.state.is_terminal:
            self._maybe_exit(now, out)

    def _already_queued(self, framework_id: str, status: TaskStatus) -> bool:
        pending = self.pending.get((framework_id, status.task_id))  # type: ignore[attr-defined]
        return pending is not None and any(s.uuid == status.uuid for s in pending.queue)

    # --- commands to executors ------------------------------------------------------------

    def _kill_in_executor(self, record: TaskRecord, msg: am.KillTask, now: float, out: list[Effect]) -> None:
        assert record.info.executor is not None
        executor = self.executors.get((record.framework_id, record.info.executor.executor_id))
        if executor is not None and executor.peer is not None:
            out.append(SendToExecutor(executor.peer, ex.KillTaskEvent(record.info.task_id, msg.kill_policy)))
            return
        if executor is not None:
            executor.queued = [t for t in executor.queued if t.task_id != record.info.task_id]
            executor.tasks.discard(record.info.task_id)
        self._terminal(record, TaskState.KILLED, TaskReason.TASK_KILLED_DURING_LAUNCH,
                       "killed before its executor subscribed", now, out)

    def _message_to_executor(self, msg: am.FrameworkToExecutor, out: list[Effect]) -> None:
        executor = self.executors.get((msg.framework_id, msg.executor_id))
        if executor is not None and executor.peer is not None:
            out.append(SendToExecutor(executor.peer, ex.MessageToExecutor(msg.data)))

    def _shutdown_executor(self, executor: ExecutorRecord, now: float, out: list[Effect]) -> None:
        """Mesos: SHUTDOWN, then SIGKILL after the executor shutdown grace period."""
        if executor.exited or executor.shutting_down:
            return
        executor.shutting_down = True
        self._executors_dirty = True
        if executor.peer is not None:
            out.append(SendToExecutor(executor.peer, ex.ShutdownEvent()))
        else:
            out.append(SignalProcess(executor.framework_id, EXECUTOR_PREFIX + executor.info.executor_id, "TERM"))
        out.append(ScheduleTimer(now + self.config.kill_grace_period,
                                 ("executor_kill", executor.framework_id, executor.info.executor_id)))

    def _on_ShutdownExecutor(self, msg: am.ShutdownExecutor, epoch: int, now: float, out: list[Effect]) -> None:
        executor = self.executors.get((msg.framework_id, msg.executor_id))
        if executor is not None:
            self._shutdown_executor(executor, now, out)

    def _on_FrameworkToExecutor(self, msg: am.FrameworkToExecutor, epoch: int, now: float, out: list[Effect]) -> None:
        self._message_to_executor(msg, out)

    def _executor_kill_timer(self, framework_id: str, executor_id: str, out: list[Effect]) -> None:
        executor = self.executors.get((framework_id, executor_id))
        if executor is not None and not executor.exited:
            out.append(SignalProcess(framework_id, EXECUTOR_PREFIX + executor_id, "KILL"))

    def _on_executor_exited(self, framework_id: str, executor_id: str, exit_code: int | None, signal: int | None,
                            now: float, out: list[Effect]) -> None:
        executor = self.executors.get((framework_id, executor_id))
        if executor is None or executor.exited:
            return
        executor.exited = True
        self._executors_dirty = True
        if executor.peer is not None:
            self.executor_peers.pop(executor.peer, None)
        how = f"exited with status {exit_code}" if signal is None else f"was terminated by signal {signal}"
        for task_id in sorted(executor.tasks):
            record = self.tasks.get((framework_id, task_id))
            if record is not None:
                state = TaskState.KILLED if record.kill_requested else TaskState.FAILED
                message = f"its executor {executor_id!r} {how}"
                if executor.peer is None:
                    message += _unsubscribed_hint(executor, exit_code, self._user_for(record.info))
                self._terminal(record, state, TaskReason.EXECUTOR_TERMINATED, message, now, out)
        executor.tasks.clear()
        status = exit_code if signal is None else 128 + signal
        out.append(SendToMaster(am.ExecutorTerminated(framework_id, executor_id, status)))
        out.append(Log("info", "executor_exited", {"framework_id": framework_id, "executor_id": executor_id,
                                                   "how": how}))
        self._maybe_exit(now, out)


def _unsubscribed_hint(executor: ExecutorRecord, exit_code: int | None, user: str | None) -> str:
    """Why an executor that never subscribed is worth a look at its stderr: what went wrong was
    said there (by the shell, the interpreter or the executor), not to the agent. 126 and 127
    are the shell's "cannot execute" and "not found", typically an interpreter the task user
    may not run (a virtualenv under /root for ``nobody``)."""
    hint = f" before subscribing; see its stderr, {executor.sandbox}/stderr"
    if exit_code in (126, 127):
        who = f"the task user {user!r}" if user else "the agent's user"
        hint += f" (status {exit_code}: its command, or the interpreter it names, is missing or not runnable by {who})"
    return hint


def _secret_problem(executor: ExecutorRecord, offered: str | None) -> tuple[str, str] | None:
    """(reason, what is wrong) when ``offered`` is not the executor's secret, else None.
    Constant time in the secret's content (``hmac.compare_digest``)."""
    if executor.secret is None:
        return None  # launched before secrets existed: it cannot have one (see the module's docstring)
    if not offered:
        return "missing_secret", "sent no secret"
    if not hmac.compare_digest(offered.encode("utf-8", "surrogatepass"), executor.secret.encode()):
        return "wrong_secret", "sent a secret that is not the one this agent gave it"
    return None
