"""RELIABILITY.md scenarios on the in-process harness (fake clock, faulty network)."""

from __future__ import annotations

from typing import Any

from tepui.sdk.effects import TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskState

from ..harness import Sim


def test_7_first_update_lost_is_retried_with_doubling_backoff_until_acked() -> None:
    sim = Sim()
    dropped: list[float] = []

    def lose_first_starting(source: str, destination: str, body: Any) -> str | None:
        if isinstance(body, am.StatusUpdate) and body.status.state == TaskState.STARTING and len(dropped) < 2:
            dropped.append(sim.now)
            return "drop"
        return None

    sim.rules.append(lose_first_starting)
    sim.launch(["t1"])
    sim.run_until(200.0)
    assert sim.states("t1") == [TaskState.STARTING, TaskState.RUNNING]
    sent = [sim.now for s, d, b in sim.delivered if isinstance(b, am.StatusUpdate)]
    assert dropped[1] - dropped[0] == 10.0  # first retry after 10 s, the next after 20 s
    assert not sim.agents["agent-0"].pending, "everything acknowledged in the end"
    assert len(sent) == 2


def test_8_stale_or_random_acks_change_nothing() -> None:
    sim = Sim()
    sim.framework.acknowledge = False
    sim.launch(["t1"])
    sim.run_until(2.0)
    agent = sim.agents["agent-0"]
    before = [s.uuid for s in agent.pending[(sim.framework.framework_id or "", "t1")].queue]
    for uuid in (b"random", b"u0"):
        sim.send_from_framework(sim_ack(sim, "t1", uuid))
    sim.run_until(3.0)
    assert [s.uuid for s in agent.pending[(sim.framework.framework_id or "", "t1")].queue] == before


def sim_ack(sim: Sim, task_id: str, uuid: bytes) -> Any:
    from tepui.sdk.protocol import scheduler as sm

    return sm.Acknowledge(sim.framework.framework_id or "", "m-S0001", task_id, uuid)


def test_9_duplicated_updates_deliver_one_terminal_state() -> None:
    sim = Sim()
    sim.rules.append(lambda s, d, b: "duplicate" if isinstance(b, (am.StatusUpdate, am.StatusUpdateAck)) else None)
    sim.launch(["t1"])
    sim.run_until(2.0)
    sim.finish_task("agent-0", "t1", 0)
    sim.run_until(30.0)
    finished = [s for s in sim.framework.updates if s.task_id == "t1" and s.state == TaskState.FINISHED]
    assert {s.uuid for s in finished} == {finished[0].uuid}, "one terminal update, perhaps seen twice, never two"
    assert not sim.agents["agent-0"].pending


def test_17_silent_agent_becomes_unreachable_and_nothing_is_launched_twice() -> None:
    sim = Sim(agent_ping_interval=1.0, max_agent_ping_timeouts=3)
    sim.launch(["t1"])
    sim.run_until(2.0)
    cut = sim.cut("agent-0")
    sim.run_until(10.0)
    assert TaskState.UNREACHABLE in sim.states("t1")
    sim.heal(cut)
    sim.run_until(200.0)  # the agent notices the silent master and re-registers with its tasks
    assert "m-S0001" in sim.master.agents and "t1" in sim.master.frameworks[sim.framework.framework_id or ""].tasks
    assert sim.states("t1")[-2:] == [TaskState.UNREACHABLE, TaskState.RUNNING], sim.states("t1")
    assert sim.launches == [("agent-0", "t1")], "the task ran once"


def test_20_a_reregistering_agent_kills_nothing() -> None:
    sim = Sim()
    sim.launch(["t1", "t2"])
    sim.run_until(2.0)
    agent = sim.agents["agent-0"]
    agent.registered = False
    sim._do("agent-0", agent.handle(TimerFired(("register",)), sim.now))
    sim.run_until(5.0)
    assert len(sim.running) == 2
    assert all(state not in sim.states(t) for t in ("t1", "t2") for state in (TaskState.KILLED, TaskState.LOST))


def test_27_messages_from_an_old_master_epoch_are_ignored() -> None:
    sim = Sim()
    sim.launch(["t1"])
    sim.run_until(2.0)
    agent = sim.agents["agent-0"]
    from tepui.agent.events import Received

    effects = agent.handle(Received(am.KillTask(sim.framework.framework_id or "", "t1"), epoch=0), sim.now)
    assert effects and all(type(e).__name__ == "Log" for e in effects)
    assert sim.running, "the stale kill did nothing"
