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

This module is the executors' table (:class:`Executors`: records, who is connected, the
secrets); what happens to their tasks is in ``executor_flows.py``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Callable

from tepui.agent.events import AgentEffect, LaunchProcess, SendToExecutor
from tepui.sdk.effects import Log
from tepui.sdk.protocol import executor as ex
from tepui.sdk.protocol.values import ExecutorInfo, TaskInfo
from tepui.sdk.resources import Resources

EXECUTOR_PREFIX = "executor/"  # launcher keys of executor processes; task ids cannot contain '/'
ENV_SECRET = "TEPUI_EXECUTOR_SECRET"
ExecutorKey = tuple[str, str]  # (framework id, executor id)


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

    @property
    def key(self) -> ExecutorKey:
        return (self.framework_id, self.info.executor_id)


class Executors:
    """The custom executors of this agent, by (framework id, executor id), and the connected
    ones by peer."""

    def __init__(self, work_dir: str, endpoint: str, kill_grace_period: float,
                 new_secret: Callable[[], str]) -> None:
        self._work_dir = work_dir
        self._endpoint = endpoint
        self._kill_grace_period = kill_grace_period
        self._new_secret = new_secret  # one per executor launch; tests pass their own
        self.records: dict[ExecutorKey, ExecutorRecord] = {}
        self.peers: dict[bytes, ExecutorKey] = {}
        self.subscribe_refused = 0  # SUBSCRIBEs without the right secret (the agent's /health shows it)

    def get(self, key: ExecutorKey) -> ExecutorRecord | None:
        return self.records.get(key)

    def connected(self, peer: bytes) -> ExecutorRecord | None:
        key = self.peers.get(peer)
        return self.records.get(key) if key else None

    def of_framework(self, framework_id: str) -> list[ExecutorRecord]:
        return [e for e in self.records.values() if e.framework_id == framework_id]

    def restore(self, executor: ExecutorRecord) -> None:
        self.records[executor.key] = executor

    def start(self, framework_id: str, info: ExecutorInfo, task: TaskInfo, agent_id: str | None,
              user: str | None, out: list[AgentEffect]) -> ExecutorRecord:
        """A new executor (its process is launched with a fresh secret; it subscribes on its own)."""
        fid, eid = framework_id, info.executor_id
        sandbox = f"{self._work_dir}/executors/{fid}/{eid}"
        executor = ExecutorRecord(fid, info, sandbox, secret=self._new_secret())
        self.records[(fid, eid)] = executor
        grace = max(1.0, self._kill_grace_period - 1.0)
        env = {
            "TEPUI_AGENT_ENDPOINT": self._endpoint,
            "TEPUI_FRAMEWORK_ID": fid,
            "TEPUI_EXECUTOR_ID": eid,
            "TEPUI_AGENT_ID": agent_id or "",
            "TEPUI_SANDBOX": sandbox,
            "MESOS_SANDBOX": sandbox,
            "TEPUI_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{grace:g}",
        }
        assert info.command is not None
        env.update(info.command.environment)
        assert executor.secret is not None
        env[ENV_SECRET] = executor.secret  # after the framework's variables: none of them replaces it
        resources = Resources.from_wire(info.resources) if info.resources else Resources.from_wire(task.resources)
        out.append(LaunchProcess(fid, EXECUTOR_PREFIX + eid, sandbox, info.command, env, user,
                                 resources.scalar("cpus") or None, resources.scalar("mem") or None))
        out.append(Log("info", "executor_starting", {"framework_id": fid, "executor_id": eid}))
        return executor

    def subscribe(self, peer: bytes, msg: ex.ExecutorSubscribe, out: list[AgentEffect]) -> ExecutorRecord | None:
        """The executor behind ``peer`` if its SUBSCRIBE is accepted (it is then connected
        there, replacing an earlier connection); else None, with the ERROR it gets."""
        key = (msg.framework_id, msg.executor_id)
        executor = self.records.get(key)
        if executor is None or executor.exited:
            out.append(SendToExecutor(peer, ex.ExecutorError(
                f"executor {msg.executor_id!r} of framework {msg.framework_id!r} is unknown to this agent")))
            return None
        problem = _secret_problem(executor, msg.secret)
        if problem is not None:
            self.subscribe_refused += 1
            out.append(Log("warning", "executor_subscribe_refused", {
                "framework_id": msg.framework_id, "executor_id": msg.executor_id, "reason": problem[0],
                "refused_total": self.subscribe_refused}))
            out.append(SendToExecutor(peer, ex.ExecutorError(
                f"SUBSCRIBE refused: executor {msg.executor_id!r} of framework {msg.framework_id!r} {problem[1]}. "
                f"Only the process this agent started as that executor can subscribe as it: it finds the secret "
                f"in its environment ({ENV_SECRET}), which tepui.sdk.ExecutorDriver sends")))
            return None
        if executor.secret is None:
            out.append(Log("warning", "executor_subscribed_without_secret", {
                "framework_id": msg.framework_id, "executor_id": msg.executor_id,
                "reason": "started by an agent version without executor secrets; recovered from its checkpoint"}))
        if executor.peer is not None and executor.peer != peer:
            self.peers.pop(executor.peer, None)
        executor.peer = peer
        self.peers[peer] = key
        return executor

    def exited(self, executor: ExecutorRecord) -> None:
        executor.exited = True
        if executor.peer is not None:
            self.peers.pop(executor.peer, None)


def unsubscribed_hint(executor: ExecutorRecord, exit_code: int | None, user: str | None) -> str:
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
