"""Health checks: the pure judge, and the agent core's schedule and verdicts on a fake clock."""

from __future__ import annotations

import itertools
from typing import Any

from tepui.agent.core import AgentConfig, AgentCore
from tepui.agent.events import HealthCheckResult, HealthProbe, Received, RunHealthCheck, SendToMaster, \
    SignalProcess, Start, TaskExited, TaskSpawned
from tepui.agent.health_checks.health import HealthState, judge
from tepui.sdk.effects import ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import (
    CommandInfo,
    FrameworkInfo,
    HealthCheck,
    MasterInfo,
    TaskInfo,
    TaskReason,
    TaskState,
)
from tepui.sdk.resources import Resources

CHECK = HealthCheck(type="COMMAND", command=CommandInfo(value="true"), delay_seconds=15, interval_seconds=10,
                    timeout_seconds=20, consecutive_failures=3, grace_period_seconds=10)


def test_failures_in_the_grace_period_are_ignored_until_the_first_success() -> None:
    state = HealthState(started_at=0.0)
    assert judge(state, CHECK, False, "refused", now=5.0).report is None
    assert state.consecutive_failures == 0
    verdict = judge(state, CHECK, True, "ok", now=8.0)
    assert verdict.report is True and not verdict.kill
    # After a success even an in-grace failure counts.
    verdict = judge(state, CHECK, False, "refused", now=9.0)
    assert verdict.report is False and state.consecutive_failures == 1


def test_consecutive_failures_kill_and_a_success_resets_the_count() -> None:
    state = HealthState(started_at=0.0)
    assert judge(state, CHECK, False, "x", now=20.0).report is False  # became unhealthy: reported once
    assert judge(state, CHECK, False, "x", now=30.0).report is None
    assert judge(state, CHECK, True, "ok", now=40.0).report is True
    assert state.consecutive_failures == 0
    judge(state, CHECK, False, "x", now=50.0)
    judge(state, CHECK, False, "x", now=60.0)
    verdict = judge(state, CHECK, False, "last reason", now=70.0)
    assert verdict.kill and "3 consecutive" in verdict.message and "last reason" in verdict.message


MASTER = MasterInfo(id="m", address="a", hostname="h", version="v", epoch=1)


def running_agent(check: HealthCheck) -> AgentCore:
    counter = itertools.count(1)
    agent = AgentCore(AgentConfig(hostname="a1", resources=Resources.parse("cpus:2;mem:1024"), work_dir="/w"),
                      lambda: f"u{next(counter)}".encode())
    agent.handle(Start(), 0.0)
    agent.handle(Received(am.AgentRegistered("S1", MASTER, 15.0), 1), 0.0)
    task = TaskInfo(name="t", task_id="t", agent_id="S1", resources=Resources.of(cpus=1).to_wire(),
                    command=CommandInfo(value="sleep 100"), health_check=check)
    agent.handle(Received(am.RunTask(FrameworkInfo(user="u", name="f", id="F"), task), 1), 1.0)
    return agent


def updates(effects: list[Any]) -> list[Any]:
    return [e.body.status for e in effects if isinstance(e, SendToMaster) and isinstance(e.body, am.StatusUpdate)]


def test_core_schedules_probes_reports_health_and_kills_an_unhealthy_task() -> None:
    agent = running_agent(CHECK)
    effects = agent.handle(TaskSpawned("F", "t", 42), 2.0)
    assert ScheduleTimer(17.0, HealthProbe("F", "t")) in effects
    [probe] = [e for e in agent.handle(TimerFired(HealthProbe("F", "t")), 17.0) if isinstance(e, RunHealthCheck)]
    assert probe.check == CHECK and probe.sandbox == "/w/sandboxes/F/t"
    effects = agent.handle(HealthCheckResult("F", "t", True, "`true` exited 0"), 17.1)
    assert ScheduleTimer(27.1, HealthProbe("F", "t")) in effects
    healthy = agent.pending[("F", "t")].queue[-1]
    assert (healthy.state, healthy.healthy, healthy.reason) == (
        TaskState.RUNNING, True, TaskReason.TASK_HEALTH_CHECK_STATUS_UPDATED)
    for now in (30.0, 40.0):
        agent.handle(HealthCheckResult("F", "t", False, "exit 1"), now)
    effects = agent.handle(HealthCheckResult("F", "t", False, "exit 1"), 50.0)
    assert SignalProcess("F", "t", "TERM") in effects
    agent.handle(TaskExited("F", "t", None, signal=15), 50.5)
    last = agent.pending[("F", "t")].queue[-1]
    assert (last.state, last.healthy, last.reason) == (TaskState.FAILED, False, TaskReason.TASK_HEALTH_CHECK_STATUS_UPDATED)
    assert "3 consecutive health check failures" in (last.message or "")


def test_no_probe_after_the_task_is_being_killed() -> None:
    agent = running_agent(CHECK)
    agent.handle(TaskSpawned("F", "t", 42), 2.0)
    agent.handle(Received(am.KillTask("F", "t"), 1), 3.0)
    assert [e for e in agent.handle(TimerFired(HealthProbe("F", "t")), 17.0) if isinstance(e, RunHealthCheck)] == []
