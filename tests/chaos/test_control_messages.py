"""Each kind of control message dropped once (issue 14): no decision may hang on one message.

On the in-process harness (fake clock, default timings: pings every 2 s, status update retries
from 10 s), one scenario per message kind drops the first message of that kind and checks that
master, agent and framework agree again within a bound — the same bounds docs/reliability.md
states: an agent's audit within three ping intervals of the loss, a kill within two, a status
update or acknowledgement within the agent's first retry (10 s here).

"Agree" (:func:`assert_converged`): every agent is registered with no update waiting for an
acknowledgement; the master holds exactly the tasks each agent runs, in the agent's state; the
framework's last word on every task the master knows is the master's state; no task runs that
nobody holds.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tepui.agent.events import Register
from tepui.sdk.effects import TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import TaskState

from ..harness import Sim

PING = 2.0  # the harness master's default ping interval


def drop_first(sim: Sim, kind: type, source: str | None = None) -> list[Any]:
    """Drops the first message of ``kind`` (from ``source``, if given); returns what it dropped."""
    dropped: list[Any] = []

    def rule(src: str, dst: str, body: Any) -> str | None:
        if not dropped and isinstance(body, kind) and source in (None, src):
            dropped.append(body)
            return "drop"
        return None

    sim.rules.append(rule)
    return dropped


def fid(sim: Sim) -> str:
    return sim.framework.framework_id or ""


def last_states(sim: Sim) -> dict[str, TaskState]:
    last: dict[str, TaskState] = {}
    for status in sim.framework.updates:
        last[status.task_id] = status.state
    return last


def assert_converged(sim: Sim) -> None:
    master, heard = sim.master, last_states(sim)
    for name, agent in sim.agents.items():
        assert agent.registered, f"{name} is not registered"
        assert not agent.pending, f"{name}: updates never acknowledged: {sorted(agent.pending)}"
        record = master.agents[agent.agent_id or ""]
        assert set(record.tasks) == set(agent.tasks), f"{name}: master holds {sorted(record.tasks)}, " \
                                                      f"agent runs {sorted(agent.tasks)}"
        for key, task in record.tasks.items():
            assert task.state == agent.tasks[key].state, f"{key}: master {task.state}, agent {agent.tasks[key].state}"
    for framework in master.frameworks.values():
        for task_id, task in framework.tasks.items():
            assert heard.get(task_id) == task.state, f"{task_id}: framework heard {heard.get(task_id)}, " \
                                                     f"master holds {task.state}"
    running = {(fid_, tid) for (_agent, fid_, tid) in sim.running}
    held = {key for agent in sim.agents.values() for key in agent.tasks}
    assert running <= held, f"processes nobody holds: {sorted(running - held)}"


def launched(sim: Sim, *task_ids: str) -> None:
    sim.launch(list(task_ids))
    sim.run_until(sim.now + 0.5)


def blip(sim: Sim, name: str = "agent-0") -> None:
    """The agent re-registers now, as after a lost connection."""
    agent = sim.agents[name]
    agent.registration.registered = False
    sim._do(name, agent.handle(TimerFired(Register()), sim.now))


# --- one scenario per message kind ---------------------------------------------------------


def run_task_lost(sim: Sim) -> float:
    """RUN_TASK lost on a link that stays up (no re-registration to notice it): the pongs'
    digests disagree twice, the master audits, the agent answers DROPPED."""
    drop_first(sim, am.RunTask)
    launched(sim, "t1")
    return 3 * PING + 1


def kill_task_lost(sim: Sim) -> float:
    launched(sim, "t1")
    drop_first(sim, am.KillTask)
    sim.send_from_framework(sm.Kill(fid(sim), "t1"))
    return 2 * PING + 1


def shutdown_framework_lost(sim: Sim) -> float:
    """A teardown whose SHUTDOWN_FRAMEWORK is lost: the agent's digest still counts the tasks,
    the audit's answer reports them, and the master shuts the framework down there again."""
    launched(sim, "t1")
    drop_first(sim, am.ShutdownFramework)
    sim.send_from_framework(sm.Teardown(fid(sim)))
    return 3 * PING + 1


def audit_lost(sim: Sim) -> float:
    """The original chaos failure: RUN_TASK lost, the agent re-registers without the task, and
    the question about it (RECONCILE_TASKS then, AUDIT_TASKS now) is lost too: asked again."""
    drop_first(sim, am.RunTask)
    drop_first(sim, am.AuditTasks)
    launched(sim, "t1")
    blip(sim)
    return 2 * PING + 1


def audit_answer_lost(sim: Sim) -> float:
    drop_first(sim, am.RunTask)
    drop_first(sim, am.TaskAudit)
    launched(sim, "t1")
    blip(sim)
    return 2 * PING + 1


def lost_while_launching(kind: type, bound: float) -> Callable[[Sim], float]:
    """A scenario: the first ``kind`` is lost while a task starts; recovered within ``bound``."""
    def scenario(sim: Sim) -> float:
        drop_first(sim, kind)
        launched(sim, "t1")
        return bound
    return scenario


RETRY = 10.0 + 1  # the agent's first status update retry (the harness's update_retry_initial)


def reregistration_lost(sim: Sim) -> float:
    launched(sim, "t1")
    drop_first(sim, am.ReregisterAgent)
    blip(sim)
    return 2.0 + 1  # the agent's registration backoff: 1 s, then 2 s


def reregistration_answer_lost(sim: Sim) -> float:
    launched(sim, "t1")
    drop_first(sim, am.AgentReregistered)
    blip(sim)
    return 2.0 + 1


def ping_lost(sim: Sim) -> float:
    launched(sim, "t1")
    drop_first(sim, am.Ping)
    return 2 * PING + 1


def pong_lost(sim: Sim) -> float:
    launched(sim, "t1")
    drop_first(sim, am.Pong)
    return 2 * PING + 1


SCENARIOS: dict[str, Callable[[Sim], float]] = {
    "RUN_TASK": run_task_lost,
    "KILL_TASK": kill_task_lost,
    "SHUTDOWN_FRAMEWORK": shutdown_framework_lost,
    "AUDIT_TASKS": audit_lost,
    "TASK_AUDIT": audit_answer_lost,
    "STATUS_UPDATE": lost_while_launching(am.StatusUpdate, RETRY),
    "UPDATE": lost_while_launching(sm.Update, RETRY),
    "ACKNOWLEDGE": lost_while_launching(sm.Acknowledge, RETRY),
    "STATUS_UPDATE_ACK": lost_while_launching(am.StatusUpdateAck, RETRY),
    "REREGISTER_AGENT": reregistration_lost,
    "AGENT_REREGISTERED": reregistration_answer_lost,
    "PING": ping_lost,
    "PONG": pong_lost,
}


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_each_kind_of_control_message_dropped_once_is_recovered_within_its_bound(kind: str) -> None:
    sim = Sim()
    bound = SCENARIOS[kind](sim)
    dropped_at = sim.now
    sim.run_until(dropped_at + bound)
    assert any(rule for rule in sim.rules), "the scenario dropped nothing"
    assert_converged(sim)


def test_a_lost_run_task_ends_dropped_and_frees_its_resources() -> None:
    sim = Sim()
    run_task_lost(sim)
    sim.run_until(sim.now + 3 * PING + 1)
    assert last_states(sim)["t1"] == TaskState.DROPPED
    assert sim.launches == [] and sim.master.counters["task_audits"] == 1
    agent_id = next(iter(sim.master.agents))
    assert not sim.master.agents[agent_id].tasks and sim.master.counters["recover_mismatch"] == 0


def test_a_lost_kill_is_sent_again_until_the_task_ends() -> None:
    sim = Sim()
    kill_task_lost(sim)
    sim.run_until(sim.now + 2 * PING + 1)
    assert last_states(sim)["t1"] == TaskState.KILLED and sim.running == {}
    assert sim.master.counters["kills_retried"] == 1


def test_a_lost_shutdown_framework_is_sent_again_when_the_agent_reports_the_tasks() -> None:
    sim = Sim()
    shutdown_framework_lost(sim)
    sim.run_until(sim.now + 3 * PING + 1)
    assert sim.running == {} and sim.master.counters["shutdown_framework_resent"] == 1


@pytest.mark.parametrize("lost", [am.AuditTasks, am.TaskAudit])
def test_a_task_unreachable_on_an_agent_that_returned_is_resolved_though_the_audit_is_lost_once(lost: type) -> None:
    """Issue 14's chaos failure, end to end: the task is UNREACHABLE while its agent is cut off,
    the agent returns without it, and the first audit (or its answer) is lost."""
    sim = Sim()
    drop_first(sim, am.RunTask)
    launched(sim, "t1")
    cut = sim.cut("agent-0")
    sim.run_until(sim.now + 12.0)
    assert last_states(sim)["t1"] == TaskState.UNREACHABLE
    sim.heal(cut)
    drop_first(sim, lost)
    sim.run_until(sim.now + 12.0)  # the agent notices the silence (5 pings) and re-registers
    assert sim.agents["agent-0"].registered
    assert last_states(sim)["t1"] == TaskState.DROPPED
    assert sim.master.counters["task_audits_retried"] >= 1
    assert_converged(sim)


def test_nothing_lost_means_no_audit_even_while_updates_wait_for_a_slow_framework() -> None:
    """Tasks end while their earlier updates wait for acknowledgements: the digests still agree
    (no false audits on a busy cluster)."""
    sim = Sim()
    sim.framework.acknowledge = False
    launched(sim, "t1", "t2", "t3")
    for task_id in ("t1", "t2"):
        sim.finish_task("agent-0", task_id)
    sim.run_until(sim.now + 20 * PING)
    assert sim.master.counters["task_digest_mismatches"] == 0 and sim.master.counters["task_audits"] == 0
