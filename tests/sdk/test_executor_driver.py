"""The executor driver: its contract on a fake clock with a fake endpoint, then the real thing —
examples/echo_executor.py against a probe playing the agent over ipc:// (in a subprocess, since
a reactor runs once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from tepui.sdk import Executor, ExecutorDriver, TaskState
from tepui.sdk.codec import Codec, envelope
from tepui.sdk.protocol import executor as em
from tepui.sdk.protocol.envelope import AgentExecutorInbound
from tepui.sdk.protocol.values import (
    AgentInfo,
    CommandInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    TaskGroupInfo,
    TaskInfo,
    TaskSource,
)
from twisted.internet.task import Clock

PROBE = os.path.join(os.path.dirname(__file__), "executor_probe.py")
AGENT_CODEC: Codec[Any] = Codec(AgentExecutorInbound)
ENV_NAMES = [
    f"{p}_{n}" for p in ("TEPUI", "MESOS") for n in ("AGENT_ENDPOINT", "FRAMEWORK_ID", "EXECUTOR_ID", "RECOVERY_TIMEOUT")
] + ["TEPUI_EXECUTOR_HEARTBEAT_INTERVAL", "TEPUI_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
      "TEPUI_EXECUTOR_SECRET"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


# --- configuration from the environment -----------------------------------------------------


def agent_env(monkeypatch: pytest.MonkeyPatch, prefix: str = "TEPUI") -> None:
    monkeypatch.setenv(f"{prefix}_AGENT_ENDPOINT", "ipc:///tmp/agent.sock")
    monkeypatch.setenv(f"{prefix}_FRAMEWORK_ID", "fw-1")
    monkeypatch.setenv(f"{prefix}_EXECUTOR_ID", "ex-1")
    monkeypatch.setenv("TEPUI_EXECUTOR_SECRET", "s3cret")


@pytest.mark.parametrize("missing", ["TEPUI_AGENT_ENDPOINT", "TEPUI_FRAMEWORK_ID", "TEPUI_EXECUTOR_ID",
                                     "TEPUI_EXECUTOR_SECRET"])
def test_a_missing_variable_is_named_and_explained(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    agent_env(monkeypatch)
    monkeypatch.delenv(missing)
    with pytest.raises(ValueError, match=f"{missing} is not set.*must be started by an agent"):
        ExecutorDriver(Executor(), reactor=Clock())


def test_mesos_variables_are_fallbacks_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    agent_env(monkeypatch, "MESOS")
    monkeypatch.setenv("MESOS_RECOVERY_TIMEOUT", "1mins")
    driver = ExecutorDriver(Executor(), reactor=Clock())
    assert (driver.endpoint, driver.framework_id, driver.executor_id) == ("ipc:///tmp/agent.sock", "fw-1", "ex-1")
    assert driver.recovery_timeout == 60.0
    monkeypatch.setenv("TEPUI_EXECUTOR_ID", "ex-tepui")
    assert ExecutorDriver(Executor(), reactor=Clock(), secret="s").executor_id == "ex-tepui"  # (the first took it)
    driver = ExecutorDriver(Executor(), reactor=Clock(), endpoint="ipc:///x", executor_id="mine", recovery_timeout=3,
                            secret="s")
    assert (driver.endpoint, driver.executor_id, driver.recovery_timeout) == ("ipc:///x", "mine", 3.0)


def test_no_environment_needed_when_everything_is_passed() -> None:
    driver = ExecutorDriver(Executor(), reactor=Clock(), endpoint="ipc:///a", framework_id="f", executor_id="e",
                            secret="s")
    assert driver.recovery_timeout == 900.0


def test_the_secret_is_taken_out_of_the_environment_so_that_tasks_do_not_inherit_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent_env(monkeypatch)
    endpoints: list[FakeEndpoint] = []
    driver = ExecutorDriver(Executor(), reactor=Clock(),
                            endpoint_factory=lambda r, a, m: endpoints.append(FakeEndpoint(r, a, m)) or endpoints[-1])
    assert "TEPUI_EXECUTOR_SECRET" not in os.environ
    driver.start()
    (subscribe,) = endpoints[0].take(em.ExecutorSubscribe)
    assert subscribe.secret == "s3cret" and "s3cret" not in repr(subscribe)


def test_bad_values_are_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    agent_env(monkeypatch)
    monkeypatch.setenv("TEPUI_AGENT_ENDPOINT", "127.0.0.1:5051")
    with pytest.raises(ValueError, match="not a ZeroMQ address: expected ipc://PATH"):
        ExecutorDriver(Executor(), reactor=Clock())
    agent_env(monkeypatch)
    monkeypatch.setenv("TEPUI_RECOVERY_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TEPUI_RECOVERY_TIMEOUT='soon' is not a duration"):
        ExecutorDriver(Executor(), reactor=Clock())


# --- the contract, on a fake clock ----------------------------------------------------------


class FakeEndpoint:
    def __init__(self, reactor: Any, address: str, on_message: Any) -> None:
        self.address, self.on_message = address, on_message
        self.sent: list[Any] = []
        self.closed = False

    def send(self, payload: bytes) -> None:
        self.sent.append(AGENT_CODEC.decode(payload).body)

    def close(self) -> None:
        self.closed = True

    def deliver(self, body: Any, incarnation: str | None = "inc-1") -> None:
        self.on_message(AGENT_CODEC.encode(envelope(body, 1, incarnation=incarnation)))

    def take(self, kind: type | None = None) -> list[Any]:
        got = [b for b in self.sent if kind is None or isinstance(b, kind)]
        self.sent = [b for b in self.sent if b not in got]
        return got


class Recorder(Executor):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in ("subscribed", "disconnected", "launch_task", "launch_task_group", "kill_task",
                    "acknowledged", "framework_message", "shutdown", "error"):
            return lambda driver, *args: object.__getattribute__(self, "calls").append((name, args))
        return object.__getattribute__(self, name)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


SUBSCRIBED = em.ExecutorSubscribed(
    executor_info=ExecutorInfo(executor_id="ex-1", framework_id="fw-1"),
    framework_info=FrameworkInfo(user="u", name="f", id="fw-1"),
    agent_info=AgentInfo(hostname="h", resources=[], id="agent-1"),
)


def make(executor: Executor | None = None, **kwargs: Any) -> tuple[ExecutorDriver, FakeEndpoint, Clock, Any]:
    clock = Clock()
    endpoints: list[FakeEndpoint] = []
    executor = executor or Recorder()
    driver = ExecutorDriver(
        executor, reactor=clock, endpoint="ipc:///tmp/a.sock", framework_id="fw-1", executor_id="ex-1", secret="s",
        endpoint_factory=lambda r, a, m: endpoints.append(FakeEndpoint(r, a, m)) or endpoints[-1], **kwargs,
    )
    driver.start()
    return driver, endpoints[0], clock, executor


def subscribed(**kwargs: Any) -> tuple[ExecutorDriver, FakeEndpoint, Clock, Any]:
    driver, ep, clock, executor = make(**kwargs)
    ep.deliver(SUBSCRIBED)
    ep.take()
    return driver, ep, clock, executor


def task(task_id: str) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="agent-1", resources=[], command=CommandInfo(value="true"))


def test_subscribes_with_backoff_until_subscribed_then_heartbeats() -> None:
    driver, ep, clock, executor = make()
    for _ in range(6):
        clock.advance(2.0)
    subscribes = ep.take(em.ExecutorSubscribe)
    assert 4 <= len(subscribes) <= 8  # 0.25 s doubling to 2 s, jittered: not a storm, not silence
    assert subscribes[0] == em.ExecutorSubscribe("fw-1", "ex-1", [], [], secret="s")
    ep.take()
    ep.deliver(em.LaunchTask(task("early")))  # nothing but SUBSCRIBED counts before subscribing
    ep.deliver(SUBSCRIBED)
    ep.deliver(SUBSCRIBED)  # an answer to an earlier SUBSCRIBE: no second callback
    assert executor.calls == [("subscribed", (SUBSCRIBED.executor_info, SUBSCRIBED.framework_info, SUBSCRIBED.agent_info))]
    assert driver.connected and driver.agent_info == SUBSCRIBED.agent_info
    clock.advance(1.0)  # the default heartbeat interval
    clock.advance(1.0)
    assert ep.take() == [em.ExecutorHeartbeat(), em.ExecutorHeartbeat()]  # and no more SUBSCRIBE


def test_updates_are_kept_until_acknowledged_and_resent_only_in_a_resubscription() -> None:
    driver, ep, clock, executor = subscribed()
    ep.deliver(em.LaunchTask(task("a")))
    ep.deliver(em.LaunchTaskGroup(TaskGroupInfo([task("b"), task("c")])))
    assert executor.calls[-2:] == [("launch_task", (task("a"),)), ("launch_task_group", ([task("b"), task("c")],))]
    ua = driver.send_status_update("a", TaskState.RUNNING)
    ub = driver.send_status_update("b", TaskState.RUNNING, "up", b"d", True)
    ua2 = driver.send_status_update("a", TaskState.FINISHED, "exit code 0", exit_code=0)
    sent = [u.status for u in ep.take(em.ExecutorUpdate)]
    assert [(s.task_id, s.state, s.uuid) for s in sent] == [
        ("a", TaskState.RUNNING, ua), ("b", TaskState.RUNNING, ub), ("a", TaskState.FINISHED, ua2)]
    b = sent[1]
    assert (b.source, b.executor_id, b.agent_id, b.message, b.data, b.healthy) == (
        TaskSource.EXECUTOR, "ex-1", "agent-1", "up", b"d", True)
    assert all(s.timestamp for s in sent) and len({ua, ub, ua2}) == 3
    ep.deliver(em.Acknowledged("a", ua))
    ep.deliver(em.Acknowledged("b", ub))
    ep.deliver(em.Acknowledged("b", ua2))  # wrong task for that uuid: ignored
    assert [c for c in executor.calls if c[0] == "acknowledged"] == [("acknowledged", ("a", ua)), ("acknowledged", ("b", ub))]
    clock.advance(10.0)  # nothing is retried on a timer
    assert ep.take(em.ExecutorUpdate) == []
    # The agent restarts: its next message has a new incarnation → re-subscribe at once.
    ep.deliver(em.ExecutorHeartbeatEvent(), incarnation="inc-2")
    (resub,) = ep.take(em.ExecutorSubscribe)
    assert [u.status.uuid for u in resub.unacknowledged_updates] == [ua2]
    assert {u.framework_id for u in resub.unacknowledged_updates} == {"fw-1"}
    assert [t.task_id for t in resub.unacknowledged_tasks] == ["c"]  # launched, nothing acknowledged
    assert executor.names()[-1] == "disconnected" and not driver.connected
    ep.deliver(SUBSCRIBED, incarnation="inc-2")
    assert executor.names()[-1] == "subscribed"
    ep.deliver(em.Acknowledged("a", ua2), incarnation="inc-2")
    assert driver.unacknowledged_updates == []


def test_an_update_while_not_subscribed_travels_in_the_next_subscribe() -> None:
    driver, ep, clock, executor = make()
    uuid = driver.send_status_update("x", TaskState.RUNNING)
    assert ep.take(em.ExecutorUpdate) == []
    clock.advance(0.3)
    assert [u.status.uuid for u in ep.take(em.ExecutorSubscribe)[-1].unacknowledged_updates] == [uuid]
    later = driver.send_status_update("x", TaskState.FINISHED)  # after that SUBSCRIBE left: held
    ep.deliver(SUBSCRIBED)
    assert [u.status.uuid for u in ep.take(em.ExecutorUpdate)] == [later]  # sent once subscribed


def test_executors_may_not_send_staging() -> None:
    driver, ep, clock, executor = subscribed()
    with pytest.raises(ValueError, match="TASK_STAGING"):
        driver.send_status_update("a", TaskState.STAGING)


def test_a_task_id_is_launched_at_most_once() -> None:
    driver, ep, clock, executor = subscribed()
    ep.deliver(em.LaunchTask(task("a")))
    ep.deliver(em.LaunchTask(task("a")))
    assert executor.names().count("launch_task") == 1


def test_kill_message_error_and_malformed_input() -> None:
    driver, ep, clock, executor = subscribed()
    ep.deliver(em.KillTaskEvent("a", KillPolicy(grace_period_seconds=1.0)))
    ep.deliver(em.MessageToExecutor(b"hi"))
    ep.deliver(em.ExecutorError("bad update"))
    ep.on_message(b"\xc1 not msgpack")
    assert executor.calls[-3:] == [
        ("kill_task", ("a", KillPolicy(grace_period_seconds=1.0))), ("framework_message", (b"hi",)), ("error", ("bad update",))]
    driver.send_framework_message(b"out")
    assert ep.take() == [em.ExecutorMessage(b"out")]


def test_a_callback_that_raises_does_not_break_the_driver() -> None:
    class Broken(Executor):
        def framework_message(self, driver: ExecutorDriver, data: bytes) -> None:
            raise RuntimeError("bug")

    driver, ep, clock, _ = make(Broken())
    ep.deliver(SUBSCRIBED)
    ep.deliver(em.MessageToExecutor(b"x"))
    assert driver.connected


def test_silent_agent_means_resubscribing_then_shutdown_after_the_recovery_timeout() -> None:
    driver, ep, clock, executor = subscribed(heartbeat_interval=1.0, recovery_timeout=10.0)
    for _ in range(3):
        clock.advance(1.0)
    assert driver.connected  # three intervals of silence are tolerated
    clock.advance(1.0)
    assert not driver.connected and executor.names()[-1] == "disconnected"
    assert ep.take(em.ExecutorSubscribe)
    for _ in range(5):
        clock.advance(1.0)
    assert "shutdown" not in executor.names()
    clock.advance(2.0)  # 11 s since the agent last spoke
    assert executor.names()[-1] == "shutdown"
    clock.advance(0.1)
    assert ep.closed and driver.unacknowledged_updates == []


def test_shutdown_waits_for_terminal_updates_to_be_acknowledged() -> None:
    driver, ep, clock, executor = subscribed()
    ep.deliver(em.LaunchTask(task("a")))
    ep.deliver(em.ShutdownEvent())
    assert executor.names()[-1] == "shutdown"
    clock.advance(1.0)
    assert not ep.closed  # task "a" still runs
    uuid = driver.send_status_update("a", TaskState.KILLED)
    clock.advance(1.0)
    assert not ep.closed  # its update is not acknowledged yet
    ep.deliver(em.Acknowledged("a", uuid))
    clock.advance(0.1)
    clock.advance(0.1)
    assert ep.closed


def test_shutdown_gives_up_after_the_grace_period() -> None:
    driver, ep, clock, executor = subscribed(shutdown_grace_period=2.0)
    ep.deliver(em.LaunchTask(task("a")))
    ep.deliver(em.ShutdownEvent())
    for _ in range(25):
        clock.advance(0.1)
    assert ep.closed
    assert driver.stop() is driver.stop()  # idempotent


# --- the real thing -------------------------------------------------------------------------


def run_probe(scenario: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, PROBE, scenario], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "error" not in result, result["error"] + "\n--- executor stderr ---\n" + result.get("executor_stderr", "")
    return result


@pytest.mark.slow
def test_echo_executor_against_an_agent_over_ipc() -> None:
    r = run_probe("lifecycle")
    assert r["subscribe"] == {"framework_id": "fw-1", "executor_id": "ex-1", "secret": "secret-of-ex-1",
                              "tasks": 0, "updates": 0}
    for task_id, updates in r["updates"].items():
        running, final = updates
        assert running["state"] == "TASK_RUNNING"
        assert (running["source"], running["executor_id"], running["agent_id"]) == ("SOURCE_EXECUTOR", "ex-1", "agent-1")
        if task_id == "t3":
            assert (final["state"], final["message"], final["exit_code"]) == ("TASK_FAILED", "exit code 3", 3)
        else:
            assert (final["state"], final["message"], final["exit_code"]) == ("TASK_FINISHED", "exit code 0", 0)
    # Tasks write to the executor's own stdout (the sandbox), without the executor's secret.
    assert r["executor_stdout"] == "hi\n" * 4
    assert r["echo"] == "echo: ping"
    # After the agent restarted: exactly the unacknowledged updates come back, none acknowledged.
    resub = r["resubscribe"]
    assert resub["updates"] == resub["expected_updates"] and resub["acked_resent"] == []
    assert resub["update_framework_ids"] == ["fw-1"] and resub["tasks"] == ["t5"]
    assert r["resubscribe_after"] < 3.0
    assert r["t5_killed"]["state"] == "TASK_KILLED"
    assert r["t6_on_shutdown"]["state"] == "TASK_KILLED"
    assert r["exit_code"] == 0 and r["leftovers"] == []
    assert r["unexpected_messages"] == []


@pytest.mark.slow
def test_echo_executor_shuts_down_when_its_agent_is_gone() -> None:
    r = run_probe("agent_gone")
    assert r["heartbeats_seen"] >= 1
    assert r["exit_code"] == 0 and r["leftovers"] == []
    assert r["exit_after_agent_gone"] < 6.0  # recovery timeout 1 s, heartbeats every 0.2 s
