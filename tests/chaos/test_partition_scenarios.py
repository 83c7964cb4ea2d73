"""RELIABILITY.md scenarios 2, 17, 18, 21, 22, 24 and 25 on the in-process harness: failure
detection with the default timings (2 s pings × 5), unreachable and gone agents, rate-limited
removals, a hung agent, reconciliation across a master failover, and lost launches."""

from __future__ import annotations

from typing import Any

import msgspec

from tepui.master.failures.partitions import RemovalRate
from tepui.master.durability.registry import AGENTS, GONE, UNREACHABLE
from tepui.agent.events import Register
from tepui.sdk.effects import TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import ReconcileTask, TaskReason, TaskSource, TaskState, TaskStatus
from tepui.sdk.resources import Resources

from ..harness import Sim

AGENT_TOTAL = Resources.parse("cpus:4;mem:4096")


def fid(sim: Sim) -> str:
    return sim.framework.framework_id or ""


def updates_of(sim: Sim, task_id: str, state: TaskState) -> list[TaskStatus]:
    return [s for s in sim.framework.updates if s.task_id == task_id and s.state == state]


def delivered(sim: Sim, kind: type) -> list[Any]:
    return [b for s, d, b in sim.delivered if isinstance(b, kind)]


def unused(sim: Sim, agent_id: str) -> Resources:
    """What no task holds on the agent: free, or offered to the framework."""
    offered = [o.resources for o in sim.master.offers.values() if o.agent_id == agent_id]
    return sum(offered, sim.master.allocator.available(agent_id))


def reconcile(sim: Sim, *tasks: ReconcileTask) -> list[TaskStatus]:
    """The answers (updates without uuid) a reconcile gets right away."""
    before = len(sim.framework.updates)
    sim.send_from_framework(sm.Reconcile(fid(sim), list(tasks)))
    sim.run_until(sim.now + 0.01)
    return [s for s in sim.framework.updates[before:] if s.reason == TaskReason.RECONCILIATION and s.uuid is None]


def launch_on_each_agent(sim: Sim) -> list[str]:
    """One task per agent, ``t0`` on agent-0 and so on; returns the agents' ids in that order."""
    ids = []
    for i in range(len(sim.agents)):
        offer = next(o for o in sim.framework.offers if o.hostname == f"agent-{i}")
        sim.framework.offers.remove(offer)
        sim.framework.offers.insert(0, offer)
        sim.launch([f"t{i}"])
        ids.append(offer.agent_id)
    sim.run_until(sim.now + 1.0)
    return ids


# --- 17, 18, 22: failure detection ---------------------------------------------------------------


def test_17_default_detection_is_10_seconds_and_the_registry_keeps_the_unreachable_agent() -> None:
    sim = Sim()  # the defaults: pings every 2 s, 5 missed
    sim.launch(["t1"])
    sim.run_until(3.0)
    agent_id = sim.agents["agent-0"].agent_id or ""
    cut = sim.cut("agent-0")
    sim.run_until(20.0)
    [unreachable] = updates_of(sim, "t1", TaskState.UNREACHABLE)
    last_pong = 2.0  # the ping at 2 s was answered, the one at 4 s was not
    assert 10.0 < (unreachable.timestamp or 0) - last_pong <= 12.0, "silent for 10 s, seen on the next ping"
    assert agent_id in sim.master.unreachable and agent_id not in sim.master.agents
    assert agent_id in sim.store[UNREACHABLE] and agent_id not in sim.store[AGENTS]
    sim.heal(cut)
    sim.run_until(60.0)  # pings stopped: the agent notices in 10 s and re-registers
    assert sim.states("t1")[-1] == TaskState.RUNNING
    assert sim.master.unreachable == {} and agent_id in sim.store[AGENTS] and sim.store[UNREACHABLE] == {}
    assert sim.launches == [("agent-0", "t1")], "the task ran once"


def test_18_an_update_from_an_unreachable_agent_is_dropped_and_the_agent_reregisters() -> None:
    sim = Sim()
    sim.launch(["t1"])
    sim.run_until(2.0)
    pongs_lost = sim.cut_one_way("agent-0", "master")
    sim.run_until(15.0)
    assert updates_of(sim, "t1", TaskState.UNREACHABLE), "its pongs stopped: unreachable"
    sim.heal(pongs_lost)
    sim.finish_task("agent-0", "t1", 0)
    sim.run_until(16.0)
    assert sim.master.counters["invalid_status_updates"] == 1, "the update from a removed agent was dropped"
    assert not updates_of(sim, "t1", TaskState.FINISHED)
    # The master pings it no more: the agent notices, re-registers, and sends the update again.
    sim.run_until(60.0)
    assert delivered(sim, am.ReregisterAgent)
    assert [s.state for s in sim.framework.updates if s.task_id == "t1"][-1] == TaskState.FINISHED
    assert not updates_of(sim, "t1", TaskState.DROPPED), "the agent knew the task: no false DROPPED"
    assert not sim.agents["agent-0"].pending, "acknowledged in the end"
    assert unused(sim, sim.agents["agent-0"].agent_id or "") == AGENT_TOTAL


def test_22_an_agent_whose_main_loop_hangs_with_its_link_up_is_detected_by_pings() -> None:
    sim = Sim()
    sim.launch(["t1"])
    sim.run_until(3.0)
    sim.hang("agent-0")  # reads nothing, answers nothing; the network is fine
    sim.run_until(20.0)
    assert sim.rules == [], "nothing was dropped on the way"
    [unreachable] = updates_of(sim, "t1", TaskState.UNREACHABLE)
    assert (unreachable.timestamp or 0) <= 3.0 + 12.0
    sim.resume("agent-0")  # it works through the pings that waited, then hears none
    sim.run_until(60.0)
    assert sim.states("t1")[-1] == TaskState.RUNNING
    assert sim.launches == [("agent-0", "t1")]


# --- 21: rate-limited removals -------------------------------------------------------------------


def test_21_removals_are_rate_limited_and_a_returning_agent_cancels_its_removal() -> None:
    sim = Sim(agents=3, agent_removal_rate=RemovalRate(1, 20.0))
    ids = launch_on_each_agent(sim)
    start = sim.now
    cuts = {name: sim.cut(name) for name in sim.agents}
    sim.run_until(start + 20.0)
    sim.heal(cuts["agent-2"])  # it answers again while it waits for its slot
    sim.run_until(start + 80.0)
    first, = updates_of(sim, "t0", TaskState.UNREACHABLE)
    second, = updates_of(sim, "t1", TaskState.UNREACHABLE)
    assert (second.timestamp or 0) - (first.timestamp or 0) == 20.0, "one removal per 20 s slot"
    assert not updates_of(sim, "t2", TaskState.UNREACHABLE), "agent-2 came back before its turn"
    assert ids[2] in sim.master.agents and set(sim.master.unreachable) == {ids[0], ids[1]}
    assert sim.master.counters["agent_unreachable_canceled"] == 1
    assert sim.master.counters["agent_unreachable_completed"] == 2


# --- gone agents ---------------------------------------------------------------------------------


def test_17_an_agent_unreachable_past_the_gone_timeout_is_gone_and_refused() -> None:
    sim = Sim(agent_gone_timeout=100.0)
    sim.launch(["t1"])
    sim.run_until(2.0)
    agent_id = sim.agents["agent-0"].agent_id or ""
    cut = sim.cut("agent-0")
    sim.run_until(130.0)
    assert sim.states("t1")[-2:] == [TaskState.UNREACHABLE, TaskState.GONE]
    assert agent_id in sim.master.gone and agent_id in sim.store[GONE] and sim.store[UNREACHABLE] == {}
    sim.heal(cut)
    sim.run_until(200.0)
    shutdowns = delivered(sim, am.ShutdownAgent)
    assert shutdowns and all("may not re-register" in s.message and agent_id in s.message for s in shutdowns)
    assert sim.running == {}, "the gone agent shut down and ended its task"
    assert agent_id not in sim.master.agents


# --- 24, 25: master failover ---------------------------------------------------------------------


def test_24_a_reconcile_during_the_failover_window_is_answered_only_once_the_agent_is_back() -> None:
    sim = Sim()
    sim.launch(["t1"])
    sim.run_until(3.0)
    agent_id = sim.agents["agent-0"].agent_id or ""
    sim.restart_master()
    info = msgspec.structs.replace(sim.framework.info, id=fid(sim))
    sim.send_from_framework(sm.Subscribe(info))
    sim.run_until(4.0)
    assert agent_id in sim.master.recovered_agents, "the agent has not re-registered yet"
    assert reconcile(sim, ReconcileTask("t1", agent_id)) == [], "its agent may still come back: no answer"
    assert reconcile(sim, ReconcileTask("t1")) == [], "any recovering agent may hold it: no answer"
    assert reconcile(sim) == [], "implicit: only tasks the master knows, and it knows none yet"
    sim.run_until(30.0)  # the agent notices the silence and re-registers with its tasks
    assert agent_id in sim.master.agents
    [truth] = reconcile(sim, ReconcileTask("t1", agent_id))
    assert (truth.task_id, truth.state) == ("t1", TaskState.RUNNING)
    assert [(s.task_id, s.state) for s in reconcile(sim)] == [("t1", TaskState.RUNNING)]
    assert [s.state for s in reconcile(sim, ReconcileTask("never", agent_id))] == [TaskState.UNKNOWN]


def test_25_an_agent_that_never_returns_after_failover_becomes_unreachable() -> None:
    sim = Sim(agents=2)
    launch_on_each_agent(sim)
    lost = sim.agents["agent-1"].agent_id or ""
    sim.cut("agent-1")  # it never comes back
    sim.restart_master(agent_reregister_timeout=30.0)
    restarted = sim.now
    sim.send_from_framework(sm.Subscribe(msgspec.structs.replace(sim.framework.info, id=fid(sim))))
    sim.run_until(restarted + 29.0)
    assert lost in sim.master.recovered_agents and reconcile(sim, ReconcileTask("t1", lost)) == []
    sim.run_until(restarted + 31.0)
    assert sim.aborted == [] and lost in sim.master.unreachable and lost in sim.store[UNREACHABLE]
    assert [s.state for s in reconcile(sim, ReconcileTask("t1", lost))] == [TaskState.UNREACHABLE]
    assert sim.master.agents.keys() == {sim.agents["agent-0"].agent_id}


def test_25_the_master_exits_when_too_many_agents_are_missing_after_failover() -> None:
    sim = Sim(agents=2)
    ids = launch_on_each_agent(sim)
    for name in sim.agents:
        sim.cut(name)
    sim.restart_master(agent_reregister_timeout=30.0, recovery_agent_removal_limit=50.0)
    sim.run_until(sim.now + 31.0)
    [reason] = sim.aborted
    assert "2 of the 2 agents" in reason and "--recovery-agent-removal-limit" in reason
    assert sorted(sim.store[AGENTS]) == sorted(ids), "nothing was removed from the registry"
    assert sim.store.get(UNREACHABLE, {}) == {}


# --- 2: a lost RUN_TASK ------------------------------------------------------------------------


def test_2_a_lost_run_task_is_dropped_on_reregistration_and_its_resources_freed() -> None:
    sim = Sim()
    sim.rules.append(lambda s, d, b: "drop" if isinstance(b, am.RunTask) else None)
    sim.launch(["t1"])
    sim.run_until(2.0)
    sim.rules.clear()
    agent_id = sim.agents["agent-0"].agent_id or ""
    assert unused(sim, agent_id) != AGENT_TOTAL, "the master holds t1's resources"
    blip(sim, "agent-0")  # the agent re-registers, without t1
    sim.run_until(5.0)
    [dropped] = updates_of(sim, "t1", TaskState.DROPPED)
    assert (dropped.source, dropped.reason) == (TaskSource.AGENT, TaskReason.RECONCILIATION)
    assert unused(sim, agent_id) == AGENT_TOTAL, "its resources are free again"
    assert "t1" not in sim.master.frameworks[fid(sim)].tasks
    assert not sim.agents["agent-0"].pending, "the DROPPED update was acknowledged"
    # The lost RUN_TASK turns up after all (queued somewhere): refused, never run.
    framework_info = sim.master.frameworks[fid(sim)].info
    task = next(b for s, d, b in sim.delivered if isinstance(b, sm.Accept)).operations[0].task_infos[0]
    sim._deliver("master", "agent-0", am.RunTask(framework_info, task))
    sim.run_until(10.0)
    assert sim.launches == [] and sim.running == {}


def test_2_a_run_task_racing_a_reregistration_is_not_dropped() -> None:
    sim = Sim()
    offer = sim.framework.offers[0]
    sim.launch(["t1"])  # the accept reaches the master first ...
    blip(sim, "agent-0")  # ... while the agent's re-registration, sent before RUN_TASK arrives, follows
    sim.run_until(5.0)
    [question] = delivered(sim, am.AuditTasks)
    assert question.tasks == {fid(sim): ["t1"]}, "the master asked instead of declaring t1 lost"
    assert not updates_of(sim, "t1", TaskState.DROPPED), "RUN_TASK came first (in order): no false DROPPED"
    assert sim.states("t1")[-1] == TaskState.RUNNING and sim.launches == [("agent-0", "t1")]
    assert sim.master.agents[offer.agent_id].tasks


def blip(sim: Sim, name: str) -> None:
    """The agent re-registers now (as after a lost link), with the tasks it has."""
    agent = sim.agents[name]
    agent.registration.registered = False
    sim._do(name, agent.handle(TimerFired(Register()), sim.now))


def test_17_a_task_reported_lost_to_a_framework_that_is_not_partition_aware_is_killed_when_its_agent_returns() -> None:
    sim = Sim(partition_aware=False, agent_ping_interval=1.0, max_agent_ping_timeouts=3)
    sim.launch(["t1"])
    sim.run_until(2.0)
    cut = sim.cut("agent-0")
    sim.run_until(10.0)
    assert sim.states("t1")[-1] == TaskState.LOST
    sim.heal(cut)
    sim.run_until(40.0)
    assert sim.running == {}, "the framework was told LOST: the returning copy must not keep running"
    assert sim.states("t1")[-2:] == [TaskState.LOST, TaskState.KILLED]
    assert sim.launches == [("agent-0", "t1")]
