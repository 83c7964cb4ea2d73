"""The agent's answer to RECONCILE_TASKS (scenario 2), and its silence limit that follows the
master's announced ping interval (issue 5)."""

from __future__ import annotations

import itertools
from typing import Any

from tepui.agent.core import MASTER_CHECK, AgentConfig, AgentCore
from tepui.agent.events import LaunchProcess, Received, SendToMaster, Start, TaskSpawned
from tepui.sdk.effects import ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import CommandInfo, FrameworkInfo, MasterInfo, TaskInfo, TaskReason, TaskSource, \
    TaskState
from tepui.sdk.resources import Resources

MASTER = MasterInfo(id="m", address="127.0.0.1:5050", hostname="h", version="0.1.0", epoch=1)
AWARE = FrameworkInfo(user="u", name="fw", id="F1", capabilities=["PARTITION_AWARE"])
PLAIN = FrameworkInfo(user="u", name="fw", id="F1")


def core(**overrides: Any) -> AgentCore:
    counter = itertools.count(1)
    config = AgentConfig(hostname="a1", resources=Resources.parse("cpus:2;mem:1024"), work_dir="/w", **overrides)
    return AgentCore(config, lambda: f"uuid-{next(counter)}".encode())


def registered(agent: AgentCore, ping_interval: float = 2.0, now: float = 0.0) -> list[Any]:
    agent.handle(Start(), now)
    return agent.handle(Received(am.AgentRegistered("S1", MASTER, ping_interval), epoch=1), now)


def task(task_id: str) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="S1", resources=Resources.of(cpus=1).to_wire(),
                    command=CommandInfo(value="sleep 1"))


def updates(effects: list[Any]) -> list[Any]:
    return [e.body.status for e in effects if isinstance(e, SendToMaster) and isinstance(e.body, am.StatusUpdate)]


def test_2_unknown_tasks_are_answered_dropped_and_a_late_run_task_is_refused() -> None:
    agent = core()
    registered(agent)
    effects = agent.handle(Received(am.ReconcileTasks("F1", ["lost"], AWARE), epoch=1), 1.0)
    [status] = updates(effects)
    assert (status.task_id, status.state, status.reason, status.source) == (
        "lost", TaskState.DROPPED, TaskReason.RECONCILIATION, TaskSource.AGENT)
    assert status.uuid is not None and ("F1", "lost") in agent.pending, "sent reliably, until acknowledged"
    agent.handle(Received(am.StatusUpdateAck("F1", "lost", status.uuid), epoch=1), 2.0)
    # The RUN_TASK that was "lost" turns up late: the framework was told it never ran, so it never does.
    effects = agent.handle(Received(am.RunTask(AWARE, task("lost")), epoch=1), 3.0)
    assert not any(isinstance(e, LaunchProcess) for e in effects) and updates(effects) == []


def test_2_known_tasks_are_not_answered() -> None:
    agent = core()
    registered(agent)
    agent.handle(Received(am.RunTask(AWARE, task("running")), epoch=1), 1.0)
    agent.handle(TaskSpawned("F1", "running", 7), 1.0)
    effects = agent.handle(Received(am.ReconcileTasks("F1", ["running"], AWARE), epoch=1), 2.0)
    assert updates(effects) == [], "a task the agent runs needs no answer: its updates flow as usual"


def test_2_frameworks_that_are_not_partition_aware_get_lost() -> None:
    agent = core()
    registered(agent)
    [status] = updates(agent.handle(Received(am.ReconcileTasks("F1", ["a"], PLAIN), epoch=1), 1.0))
    assert status.state == TaskState.LOST
    # Without framework_info and never having seen the framework: LOST, the safe answer.
    [status] = updates(agent.handle(Received(am.ReconcileTasks("F2", ["b"]), epoch=1), 1.0))
    assert status.state == TaskState.LOST


def test_2_a_framework_being_shut_down_gets_no_answer() -> None:
    agent = core()
    registered(agent)
    agent.handle(Received(am.ShutdownFramework("F1"), epoch=1), 1.0)
    assert updates(agent.handle(Received(am.ReconcileTasks("F1", ["a"], AWARE), epoch=1), 2.0)) == []
    assert agent.pending == {}


def test_the_master_silence_limit_follows_the_announced_ping_interval() -> None:
    agent = core()  # no --master-silence-limit: 5 × the master's ping interval
    effects = registered(agent, ping_interval=2.0, now=0.0)
    assert ScheduleTimer(10.0, MASTER_CHECK) in effects
    effects = agent.handle(TimerFired(MASTER_CHECK), 10.0)
    assert not [e for e in effects if isinstance(e, SendToMaster)], "10 s is not more than 10 s"
    effects = agent.handle(TimerFired(MASTER_CHECK), 10.5)
    assert [type(e.body) for e in effects if isinstance(e, SendToMaster)] == [am.ReregisterAgent]


def test_an_explicit_master_silence_limit_wins() -> None:
    agent = core(master_silence_limit=30.0)
    assert ScheduleTimer(30.0, MASTER_CHECK) in registered(agent, ping_interval=2.0)
