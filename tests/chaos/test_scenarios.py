"""RELIABILITY.md scenarios on the in-process harness (fake clock, faulty network)."""

from __future__ import annotations

from typing import Any

from tepui.agent.events import Register
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
    agent.registration.registered = False
    sim._do("agent-0", agent.handle(TimerFired(Register()), sim.now))
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


def test_1_a_lost_accept_is_found_by_reconciliation_and_relaunched_under_a_new_id() -> None:
    from tepui.sdk.protocol import scheduler as sm
    from tepui.sdk.protocol.values import ReconcileTask

    sim = Sim()
    sim.rules.append(lambda s, d, b: "drop" if isinstance(b, sm.Accept) else None)
    sim.launch(["t1"])
    sim.run_until(2.0)
    sim.rules.clear()
    sim.send_from_framework(sm.Reconcile(sim.framework.framework_id or "", [ReconcileTask("t1")]))
    sim.run_until(3.0)
    assert sim.states("t1") == [TaskState.UNKNOWN], "the master never knew t1"
    sim.run_until(65.0)  # the unanswered offer times out (60 s), is rescinded and offered again
    sim.launch(["t1-retry"])
    sim.run_until(67.0)
    assert TaskState.RUNNING in sim.states("t1-retry") and sim.launches == [("agent-0", "t1-retry")]


def test_3_a_launch_from_a_framework_that_is_not_subscribed_is_dropped() -> None:
    from tepui.master.events import PeerUnreachable, Received
    from tepui.sdk.protocol import scheduler as sm

    sim = Sim()
    offer = sim.framework.offers.pop(0)
    sim._do("master", sim.master.handle(PeerUnreachable(b"fw"), sim.now))  # the framework's link broke
    from tepui.sdk.protocol.values import CommandInfo, TaskInfo
    from tepui.sdk.resources import Resources

    task = TaskInfo(name="t", task_id="t", agent_id=offer.agent_id, resources=Resources.of(cpus=0.1).to_wire(),
                    command=CommandInfo(value="true"))
    effects = sim.master.handle(Received(b"fw", sm.Accept(sim.framework.framework_id or "", [offer.id],
                                                          [sm.Launch([task])])), sim.now)
    [update] = [e.body for e in effects if isinstance(getattr(e, "body", None), sm.Update)]
    assert update.status.state == TaskState.DROPPED and sim.launches == []


def test_5_an_offer_from_before_a_master_failover_is_invalid() -> None:
    from tepui.master.core import MasterConfig, MasterCore
    from tepui.master.events import Received
    from tepui.sdk.protocol import scheduler as sm
    from tepui.sdk.protocol.values import CommandInfo, FrameworkInfo, TaskInfo
    from tepui.sdk.resources import Resources

    sim = Sim()
    old_offer = sim.framework.offers.pop(0)
    new_master = MasterCore(MasterConfig(master_id="m2"))
    new_master.start(sim.now)
    info = FrameworkInfo(user="u", name="sim", id=sim.framework.framework_id, capabilities=["PARTITION_AWARE"])
    new_master.handle(Received(b"fw", sm.Subscribe(info)), sim.now)
    task = TaskInfo(name="t", task_id="t", agent_id=old_offer.agent_id, resources=Resources.of(cpus=0.1).to_wire(),
                    command=CommandInfo(value="true"))
    effects = new_master.handle(Received(b"fw", sm.Accept(info.id or "", [old_offer.id], [sm.Launch([task])])),
                                sim.now)
    [update] = [e.body for e in effects if isinstance(getattr(e, "body", None), sm.Update)]
    assert update.status.state == TaskState.DROPPED and "not valid" in (update.status.message or "")


def test_19_a_one_way_cut_from_master_to_agent_makes_the_agent_reregister() -> None:
    sim = Sim(agent_ping_interval=15.0, max_agent_ping_timeouts=5)
    sim.launch(["t1"])
    sim.run_until(2.0)
    one_way = (lambda s, d, b: "drop" if (s, d) == ("master", "agent-0") else None)
    sim.rules.append(one_way)
    sim.run_until(85.0)
    sim.rules.remove(one_way)
    sim.run_until(120.0)
    rereg = [b for s, d, b in sim.delivered if isinstance(b, am.ReregisterAgent)]
    assert rereg, "the agent noticed the missing pings and re-registered"
    assert sim.launches == [("agent-0", "t1")]


def test_29_resubscribing_after_the_failover_timeout_is_refused() -> None:
    from tepui.master.events import FailoverExpired, PeerUnreachable, Received
    from tepui.sdk.effects import TimerFired as Fired
    from tepui.sdk.protocol import scheduler as sm

    sim = Sim()
    sim.launch(["t1"])
    sim.run_until(2.0)
    fid = sim.framework.framework_id or ""
    sim._do("master", sim.master.handle(PeerUnreachable(b"fw"), sim.now))
    sim._do("master", sim.master.handle(Fired(FailoverExpired(fid)), sim.now + 3600.0))
    sim.run_until(sim.now + 3601.0)
    assert sim.running == {}, "its tasks were killed"
    effects = sim.master.handle(Received(b"fw2", sm.Subscribe(sim.framework.info.__class__(
        user="u", name="sim", id=fid))), sim.now)
    [error] = [e.body for e in effects if isinstance(getattr(e, "body", None), sm.Error)]
    assert "was removed" in error.message
