"""Run as a subprocess by test_executor_driver.py: plays the AGENT for examples/echo_executor.py
over a real ipc:// ROUTER on Twisted's asyncio reactor (a reactor runs once per process).

    python executor_probe.py lifecycle     # subscribe, launch, updates, acks, agent restart, kill, shutdown
    python executor_probe.py agent_gone    # the agent vanishes: the executor shuts down on its own

Prints one JSON object of observed facts; the test asserts on them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()

from tepui.sdk.codec import Codec, envelope  # noqa: E402
from tepui.sdk.protocol import executor as em  # noqa: E402
from tepui.sdk.protocol.envelope import AgentExecutorInbound  # noqa: E402
from tepui.sdk.protocol.values import (  # noqa: E402
    AgentInfo,
    CommandInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    TaskInfo,
)
from tepui.sdk.router import RouterEndpoint  # noqa: E402
from twisted.internet import defer, protocol  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "echo_executor.py")
codec: Codec[Any] = Codec(AgentExecutorInbound)


class Agent:
    """The agent's executor socket: answers HEARTBEAT itself, queues everything else."""

    def __init__(self, address: str, incarnation: str) -> None:
        self.incarnation = incarnation
        self.inbox: list[tuple[bytes, Any]] = []
        self.waiters: list[tuple[Callable[[Any], bool], defer.Deferred]] = []
        self.peer: bytes | None = None
        self.heartbeats = 0
        self.msg_id = 0
        self.router = RouterEndpoint(reactor, address, self.on_message)

    def on_message(self, peer: bytes, payload: bytes) -> None:
        for env in codec.envelopes(payload):  # the driver's transport may batch
            assert not isinstance(env, Exception), env
            self.peer = peer
            if isinstance(env.body, em.ExecutorHeartbeat):
                self.heartbeats += 1
                self.send(em.ExecutorHeartbeatEvent())
                continue
            self.inbox.append((peer, env.body))
        self.wake()

    def wake(self) -> None:
        for waiter in list(self.waiters):
            pred, d = waiter
            for item in self.inbox:
                if pred(item[1]):
                    self.inbox.remove(item)
                    self.waiters.remove(waiter)
                    d.callback(item[1])
                    break

    def wait_for(self, pred: Callable[[Any], bool], timeout: float = 10.0, what: str = "") -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.waiters.append((pred, d))
        self.wake()

        def expire() -> None:
            if not d.called:
                self.waiters.remove((pred, d))
                d.errback(TimeoutError(f"no {what or 'message'} within {timeout} s; inbox={self.inbox!r}"))

        reactor.callLater(timeout, expire)
        return d

    def send(self, body: Any) -> None:
        assert self.peer is not None
        self.msg_id += 1
        self.router.send(self.peer, codec.encode(envelope(body, self.msg_id, incarnation=self.incarnation)))

    def subscribed(self, executor_id: str) -> None:
        self.send(em.ExecutorSubscribed(
            executor_info=ExecutorInfo(executor_id=executor_id, framework_id="fw-1"),
            framework_info=FrameworkInfo(user="nobody", name="probe", id="fw-1"),
            agent_info=AgentInfo(hostname="localhost", resources=[], id="agent-1"),
        ))

    def ack(self, update: em.ExecutorUpdate) -> None:
        assert update.status.uuid is not None
        self.send(em.Acknowledged(task_id=update.status.task_id, uuid=update.status.uuid))


class ExecutorProcess(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: defer.Deferred = defer.Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        self.exit_code = reason.value.exitCode
        self.ended.callback(self.exit_code)


def spawn_executor(address: str, executor_id: str, **extra_env: str) -> ExecutorProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEPUI_", "MESOS_"))}
    env.update(TEPUI_AGENT_ENDPOINT=address, TEPUI_FRAMEWORK_ID="fw-1", TEPUI_EXECUTOR_ID=executor_id,
               TEPUI_EXECUTOR_HEARTBEAT_INTERVAL="0.2", TEPUI_EXECUTOR_SECRET=f"secret-of-{executor_id}", **extra_env)
    proc = ExecutorProcess()
    reactor.spawnProcess(proc, sys.executable, [sys.executable, EXAMPLE], env=env)
    return proc


def task(task_id: str, command: str) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="agent-1", resources=[],
                    command=CommandInfo(value=command), executor=ExecutorInfo(executor_id="ex-1"))


def is_(kind: type) -> Callable[[Any], bool]:
    return lambda body: isinstance(body, kind)


def update_of(task_id: str) -> Callable[[Any], bool]:
    return lambda body: isinstance(body, em.ExecutorUpdate) and body.status.task_id == task_id


def describe(update: em.ExecutorUpdate) -> dict[str, Any]:
    s = update.status
    return {"task_id": s.task_id, "state": s.state.value, "message": s.message, "exit_code": s.exit_code,
            "source": s.source.value if s.source else None, "executor_id": s.executor_id,
            "agent_id": s.agent_id, "uuid": s.uuid.hex() if s.uuid else None, "timestamp": s.timestamp}


def leftover_processes(marker: str) -> list[str]:
    """Processes whose command line still mentions ``marker`` (a killed task must leave none)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "executor_probe" not in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def sleep(seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


@defer.inlineCallbacks
def lifecycle(workdir: str, result: dict[str, Any]):  # type: ignore[no-untyped-def]
    address = f"ipc://{workdir}/agent.sock"
    agent = Agent(address, "incarnation-1")
    proc = spawn_executor(address, "ex-1")
    result["proc"] = proc

    sub = yield agent.wait_for(is_(em.ExecutorSubscribe), what="SUBSCRIBE")
    result["subscribe"] = {"framework_id": sub.framework_id, "executor_id": sub.executor_id, "secret": sub.secret,
                           "tasks": len(sub.unacknowledged_tasks), "updates": len(sub.unacknowledged_updates)}
    agent.subscribed("ex-1")

    # The driver takes the secret out of the environment: the tasks print "hi" and nothing more.
    commands = {f"t{i}": "echo hi$TEPUI_EXECUTOR_SECRET" for i in range(5)}
    commands["t3"] = "exit 3"
    for task_id, command in commands.items():
        agent.send(em.LaunchTask(task(task_id, command)))
    updates: dict[str, list[dict[str, Any]]] = {}
    held = None  # t4's terminal update: deliberately not acknowledged
    for task_id in commands:
        for _ in range(2):
            update = yield agent.wait_for(update_of(task_id), what=f"update of {task_id}")
            updates.setdefault(task_id, []).append(describe(update))
            if task_id == "t4" and update.status.state.is_terminal:
                held = update
            else:
                agent.ack(update)
    result["updates"] = updates

    agent.send(em.MessageToExecutor(b"ping"))
    echo = yield agent.wait_for(is_(em.ExecutorMessage), what="echo")
    result["echo"] = echo.data.decode()

    marker = f"sleep 60.{random.randrange(10**6):06d}"
    agent.send(em.LaunchTask(task("t5", marker)))
    t5_running = yield agent.wait_for(update_of("t5"), what="t5 RUNNING")  # not acknowledged either
    result["t5_running"] = describe(t5_running)

    # The agent restarts: a new process, a new incarnation, the same socket path. (Never close
    # a RouterEndpoint from inside its own message handler: its drain loop would read on.)
    yield sleep(0.01)
    agent.router.close()
    yield sleep(0.3)
    restarted = Agent(address, "incarnation-2")
    t0 = time.monotonic()
    resub = yield restarted.wait_for(is_(em.ExecutorSubscribe), what="re-SUBSCRIBE")
    result["resubscribe_after"] = time.monotonic() - t0
    acked = {u["uuid"] for task_id, us in updates.items() for u in us} - {held.status.uuid.hex()}
    result["resubscribe"] = {
        "updates": [u.status.uuid.hex() for u in resub.unacknowledged_updates],
        "update_framework_ids": sorted({u.framework_id for u in resub.unacknowledged_updates}),
        "tasks": [t.task_id for t in resub.unacknowledged_tasks],
        "expected_updates": [held.status.uuid.hex(), t5_running.status.uuid.hex()],
        "acked_resent": sorted(acked & {u.status.uuid.hex() for u in resub.unacknowledged_updates}),
    }
    restarted.subscribed("ex-1")
    for update in resub.unacknowledged_updates:
        restarted.send(em.Acknowledged(task_id=update.status.task_id, uuid=update.status.uuid))

    restarted.send(em.KillTaskEvent("t5", KillPolicy(grace_period_seconds=2.0)))
    killed = yield restarted.wait_for(update_of("t5"), what="t5 KILLED")
    restarted.ack(killed)
    result["t5_killed"] = describe(killed)

    marker6 = f"sleep 60.{random.randrange(10**6):06d}"
    restarted.send(em.LaunchTask(task("t6", marker6)))
    restarted.ack((yield restarted.wait_for(update_of("t6"), what="t6 RUNNING")))
    result["heartbeats_seen"] = agent.heartbeats + restarted.heartbeats
    t0 = time.monotonic()
    restarted.send(em.ShutdownEvent())
    t6_end = yield restarted.wait_for(update_of("t6"), what="t6 KILLED on SHUTDOWN")
    result["t6_on_shutdown"] = describe(t6_end)
    restarted.ack(t6_end)
    yield proc.ended
    result["exit_after_shutdown"] = time.monotonic() - t0
    result["leftovers"] = leftover_processes(marker) + leftover_processes(marker6)
    late = [type(b).__name__ for _, b in restarted.inbox if not isinstance(b, em.ExecutorSubscribe)]
    result["unexpected_messages"] = late
    restarted.router.close()


@defer.inlineCallbacks
def agent_gone(workdir: str, result: dict[str, Any]):  # type: ignore[no-untyped-def]
    address = f"ipc://{workdir}/agent.sock"
    agent = Agent(address, "incarnation-1")
    proc = spawn_executor(address, "ex-2", TEPUI_RECOVERY_TIMEOUT="1")
    result["proc"] = proc
    yield agent.wait_for(is_(em.ExecutorSubscribe), what="SUBSCRIBE")
    agent.subscribed("ex-2")
    marker = f"sleep 60.{random.randrange(10**6):06d}"
    agent.send(em.LaunchTask(task("orphan", marker)))
    agent.ack((yield agent.wait_for(update_of("orphan"), what="RUNNING")))
    yield sleep(0.5)  # a few heartbeats
    result["heartbeats_seen"] = agent.heartbeats
    agent.router.close()  # the agent is gone for good (outside the handler, see lifecycle)
    t0 = time.monotonic()
    yield proc.ended
    result["exit_after_agent_gone"] = time.monotonic() - t0
    result["leftovers"] = leftover_processes(marker)


def main() -> None:
    scenario = {"lifecycle": lifecycle, "agent_gone": agent_gone}[sys.argv[1]]
    workdir = tempfile.mkdtemp(prefix="tepui-ex-")
    result: dict[str, Any] = {}

    def finish(outcome: Any) -> None:
        if result.get("finished"):
            return
        result["finished"] = True
        if isinstance(outcome, Failure):
            result["error"] = outcome.getTraceback()
        proc = result.get("proc")
        if proc is not None and proc.exit_code is None:
            try:
                proc.transport.signalProcess("KILL")
            except Exception:
                pass
        reactor.callLater(0.2, reactor.stop)

    def run() -> None:
        d = scenario(workdir, result)
        d.addBoth(finish)

    reactor.callWhenRunning(run)
    reactor.callLater(25, lambda: finish(Failure(TimeoutError("probe ran out of time"))))
    reactor.run()
    result.pop("finished", None)
    proc = result.pop("proc", None)
    if proc is not None:
        result["exit_code"] = proc.exit_code
        result["executor_stdout"] = proc.out.decode(errors="replace")
        result["executor_stderr"] = proc.err.decode(errors="replace")[-4000:]
    shutil.rmtree(workdir, ignore_errors=True)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
