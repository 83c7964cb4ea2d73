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


# --- audits (issue 14) -------------------------------------------------------------------------


def audit_answer(effects: list[Any]) -> am.TaskAudit:
    [answer] = [e.body for e in effects if isinstance(e, SendToMaster) and isinstance(e.body, am.TaskAudit)]
    return answer


def ran(agent: AgentCore, task_id: str, exit_code: int | None = 0, pid: int = 7) -> None:
    """``task_id`` is launched, spawned, and ends with ``exit_code`` (None: nobody saw how)."""
    from tepui.agent.events import TaskExited
    agent.handle(Received(am.RunTask(AWARE, task(task_id)), epoch=1), 1.0)
    agent.handle(TaskSpawned("F1", task_id, pid), 1.0)
    agent.handle(TaskExited("F1", task_id, exit_code, None), 1.5)


def test_an_audit_is_answered_with_every_task_held_and_dropped_for_ids_never_seen() -> None:
    agent = core()
    registered(agent)
    agent.handle(Received(am.RunTask(AWARE, task("running")), epoch=1), 1.0)
    agent.handle(TaskSpawned("F1", "running", 7), 1.0)
    [starting, running] = [s for s in agent.pending[("F1", "running")].queue]
    agent.handle(Received(am.StatusUpdateAck("F1", "running", starting.uuid), epoch=1), 1.1)
    agent.handle(Received(am.StatusUpdateAck("F1", "running", running.uuid), epoch=1), 1.2)
    effects = agent.handle(Received(am.AuditTasks(4, {"F1": ["running", "lost"]}, [AWARE]), epoch=1), 2.0)
    [dropped] = updates(effects)
    assert (dropped.task_id, dropped.state, dropped.reason) == ("lost", TaskState.DROPPED, TaskReason.RECONCILIATION)
    answer = audit_answer(effects)
    assert answer.seq == 4 and answer.ended == []
    # The dropped one is reported too, as ended with its update on its way (as re-registration does).
    assert [(r.framework_id, r.task.task_id, r.state) for r in answer.tasks] == [
        ("F1", "running", TaskState.RUNNING), ("F1", "lost", TaskState.DROPPED)]
    order = [type(e.body) for e in effects if isinstance(e, SendToMaster)]
    assert order == [am.StatusUpdate, am.TaskAudit], "the DROPPED update reaches the master before the answer"


def test_an_audit_resends_the_unacknowledged_final_update_of_an_asked_task_with_the_same_uuid() -> None:
    agent = core()
    registered(agent)
    agent.handle(Received(am.RunTask(AWARE, task("t")), epoch=1), 1.0)
    agent.handle(TaskSpawned("F1", "t", 7), 1.0)
    effects = agent.handle(Received(am.AuditTasks(1, {"F1": ["t"]}, [AWARE]), epoch=1), 2.0)
    [again] = updates(effects)
    assert again.uuid == agent.pending[("F1", "t")].queue[0].uuid, "a retry, not a new update"
    assert [r.task.task_id for r in audit_answer(effects).tasks] == ["t"]


def test_an_audit_reports_the_end_of_an_asked_task_whose_final_update_was_acknowledged() -> None:
    agent = core()
    registered(agent)
    ran(agent, "t")
    while ("F1", "t") in agent.pending:
        head = agent.pending[("F1", "t")].queue[0]
        agent.handle(Received(am.StatusUpdateAck("F1", "t", head.uuid), epoch=1), 1.6)
    effects = agent.handle(Received(am.AuditTasks(2, {"F1": ["t"]}, [AWARE]), epoch=1), 2.0)
    assert updates(effects) == [], "known: no DROPPED, nothing to resend"
    answer = audit_answer(effects)
    assert answer.tasks == [] and [(r.task.task_id, r.state) for r in answer.ended] == [("t", TaskState.FINISHED)]


def test_pongs_carry_the_count_and_digest_of_the_tasks_held() -> None:
    agent = core()
    registered(agent)
    agent.handle(Received(am.RunTask(AWARE, task("a")), epoch=1), 1.0)
    agent.handle(Received(am.RunTask(AWARE, task("b")), epoch=1), 1.0)
    [pong] = [e.body for e in agent.handle(Received(am.Ping(3), epoch=1), 2.0) if isinstance(e, SendToMaster)]
    assert pong == am.Pong(3, 2, am.task_set_digest([("F1", "a"), ("F1", "b")]))
    agent.handle(Received(am.ShutdownFramework("F1"), epoch=1), 2.5)
    [pong] = [e.body for e in agent.handle(Received(am.Ping(4), epoch=1), 3.0) if isinstance(e, SendToMaster)]
    assert pong == am.Pong(4, 0, 0), "tasks being shut down are no longer the master's"


def test_a_kill_sent_again_for_a_task_that_ended_changes_nothing() -> None:
    agent = core()
    registered(agent)
    ran(agent, "t")
    assert updates(agent.handle(Received(am.KillTask("F1", "t"), epoch=1), 2.0)) == [], \
        "no DROPPED after FINISHED: the master sends kills again until the task ends"


def test_a_pong_counts_an_ended_task_whose_final_update_waits_behind_an_unacknowledged_one() -> None:
    """Its FINISHED has not left (RUNNING is not acknowledged yet), so the master still holds it:
    counting it keeps the two digests equal on a busy agent."""
    agent = core()
    registered(agent)
    ran(agent, "t")
    [pong] = [e.body for e in agent.handle(Received(am.Ping(1), epoch=1), 2.0) if isinstance(e, SendToMaster)]
    assert pong == am.Pong(1, 1, am.task_set_digest([("F1", "t")]))
    while agent.pending[("F1", "t")].queue[0].state != TaskState.FINISHED:
        head = agent.pending[("F1", "t")].queue[0]
        agent.handle(Received(am.StatusUpdateAck("F1", "t", head.uuid), epoch=1), 2.5)
    [pong] = [e.body for e in agent.handle(Received(am.Ping(2), epoch=1), 3.0) if isinstance(e, SendToMaster)]
    assert pong == am.Pong(2, 0, 0), "FINISHED has left: the master drops the task when it reads it"


def test_a_task_whose_end_nobody_saw_fails_for_an_agent_side_reason_not_the_commands() -> None:
    """Issue 14's chaos hunt: an agent SIGKILLed just after a launch, its supervisor gone without
    an exit record; FAILED/COMMAND_EXECUTOR_FAILED made the framework take it as final (lost)."""
    agent = core()
    registered(agent)
    ran(agent, "t", exit_code=None)
    final = agent.pending[("F1", "t")].queue[-1]
    assert (final.state, final.reason) == (TaskState.FAILED, TaskReason.EXECUTOR_TERMINATED)
    ran(agent, "u", exit_code=3, pid=8)
    final = agent.pending[("F1", "u")].queue[-1]
    assert (final.state, final.reason, final.exit_code) == (TaskState.FAILED, TaskReason.COMMAND_EXECUTOR_FAILED, 3)
