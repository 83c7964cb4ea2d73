"""The master core's failure detection and partitions (master/failures/partitions.py): flags, the
registry of unreachable and gone agents, re-admission, refusal, and reconciliation answers."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from tepui.cli.main import cli
from tepui.master.events import AgentGone
from tepui.master.core import PING, MasterConfig, MasterCore
from tepui.master.events import Received
from tepui.master.failures.partitions import RemovalRate, parse_percent, parse_removal_rate
from tepui.master.records import UnreachableAgent
from tepui.master.durability.registry import AGENTS, GONE, UNREACHABLE, Persist, Recovered, decode
from tepui.sdk.effects import CancelTimer, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import AgentInfo, ReconcileTask, TaskState
from tepui.sdk.resources import Resources

from tests.master.test_core import AGENT, FW, AGENT_RES, launched, register_agent, sends, subscribe, task
from tests.master.durability.test_registry import as_store, persists
from tests.master.failures.test_task_audit import unreachable_with_t1

RESERVED = Resources.parse("cpus:3;mem:4096") + Resources.from_wire(Resources.parse("cpus(db):1").to_wire())


def core_with(**overrides: Any) -> MasterCore:
    core = MasterCore(MasterConfig(master_id="m", **overrides))
    core.start(0.0)
    return core


# --- flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rate"), [
    ("1/20mins", RemovalRate(1, 1200.0)), ("5/1m", RemovalRate(5, 60.0)), ("1/30s", RemovalRate(1, 30.0)),
    ("10/min", RemovalRate(10, 60.0)), ("2 / 1.5hrs", RemovalRate(2, 5400.0)), ("unlimited", None), ("", None),
])
def test_removal_rates_parse_like_mesos(text: str, rate: RemovalRate | None) -> None:
    assert parse_removal_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "1/20parsecs", "0/1s", "1/0s", "-1/1s", "1/"])
def test_bad_removal_rates_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"agent removal rate"):
        parse_removal_rate(text)


def test_percentages() -> None:
    assert parse_percent("100%") == 100.0 and parse_percent("12.5") == 12.5
    for bad in ("lots", "120%", "-1"):
        with pytest.raises(ValueError):
            parse_percent(bad)


def test_the_cli_refuses_a_bad_rate_or_percentage_with_a_clear_message() -> None:
    result = CliRunner().invoke(cli, ["master", "--agent-removal-rate", "1/20parsecs"])
    assert result.exit_code == 2 and "--agent-removal-rate" in result.output and "1/20mins" in result.output
    result = CliRunner().invoke(cli, ["master", "--recovery-agent-removal-limit", "150%"])
    assert result.exit_code == 2 and "between 0% and 100%" in result.output


def test_the_defaults_detect_a_silent_agent_in_10_seconds() -> None:
    config = MasterConfig(master_id="m")
    assert config.agent_ping_interval * config.max_agent_ping_timeouts == 10.0
    assert config.agent_removal_rate is None and config.recovery_agent_removal_limit == 100.0
    assert config.agent_gone_timeout == 86400.0


# --- the registry of unreachable and gone agents -----------------------------------------------


def test_17_unreachable_agents_are_persisted_and_readmitted_with_their_reservations() -> None:
    core = core_with()
    core.handle(Received(AGENT, am.RegisterAgent(AgentInfo(hostname="a1", resources=RESERVED.to_wire()), "v")), 0.0)
    writes = persists(core.handle(TimerFired(PING), 10.5))
    assert [(w.ns, w.key, w.value is None) for w in writes] == [(AGENTS, "m-S0001", True),
                                                                 (UNREACHABLE, "m-S0001", False)]
    recovered = decode(as_store(writes))
    assert recovered.unreachable["m-S0001"].since == 10.5
    assert Resources.from_wire(recovered.unreachable["m-S0001"].info.resources) == RESERVED
    # It comes back reporting only its flags' resources: the kept copy (with the reservation) wins.
    flags_only = AgentInfo(hostname="a1", resources=Resources.parse("cpus:4;mem:4096").to_wire(), id="m-S0001")
    effects = core.handle(Received(b"new-conn", am.ReregisterAgent(flags_only, "v")), 20.0)
    assert core.agents["m-S0001"].total == RESERVED and core.unreachable == {}
    assert Persist(UNREACHABLE, "m-S0001", None) in effects and CancelTimer(AgentGone("m-S0001")) in effects
    assert [w.ns for w in persists(effects) if w.value is not None] == [AGENTS]


def test_a_restarted_master_keeps_unreachable_and_gone_agents() -> None:
    kept = AgentInfo(hostname="a1", resources=RESERVED.to_wire(), id="old-S1")
    recovered = Recovered(unreachable={"old-S1": UnreachableAgent(kept, 100.0)}, gone={"old-S2": 50.0})
    core = MasterCore(MasterConfig(master_id="new", agent_gone_timeout=1000.0))
    effects = core.recover(recovered, 500.0)
    assert ScheduleTimer(1100.0, AgentGone("old-S1")) in effects
    effects = core.handle(Received(b"a2", am.ReregisterAgent(AgentInfo(hostname="g", resources=[], id="old-S2"),
                                                             "v")), 501.0)
    [refusal] = sends(effects, b"a2")
    assert isinstance(refusal, am.ShutdownAgent) and "may not re-register under this id" in refusal.message
    assert "old-S2" not in core.agents
    core.handle(Received(b"a1", am.ReregisterAgent(AgentInfo(hostname="a1", resources=[], id="old-S1"), "v")), 502.0)
    assert core.agents["old-S1"].total == RESERVED


def test_a_gone_timer_for_an_agent_that_came_back_or_went_unreachable_again_later_does_nothing() -> None:
    core = core_with(agent_gone_timeout=100.0)
    register_agent(core)
    core.handle(TimerFired(PING), 10.5)
    core.handle(Received(AGENT, am.ReregisterAgent(AgentInfo(hostname="a1", resources=AGENT_RES.to_wire(),
                                                             id="m-S0001"), "v")), 20.0)
    assert core.handle(TimerFired(AgentGone("m-S0001")), 110.5) == []
    core.handle(TimerFired(PING), 40.0)  # silent again: unreachable since 40
    assert persists(core.handle(TimerFired(AgentGone("m-S0001")), 110.5)) == []
    assert [w.ns for w in persists(core.handle(TimerFired(AgentGone("m-S0001")), 140.0))] == [UNREACHABLE, GONE]


def test_the_registry_forgets_the_oldest_gone_agents_past_its_bound() -> None:
    core = MasterCore(MasterConfig(master_id="m", max_gone_agents=2, agent_gone_timeout=1.0))
    core.recover(Recovered(unreachable={f"S{i}": UnreachableAgent(AgentInfo(hostname="h", resources=[]), float(i))
                                        for i in range(3)}), 0.0)
    writes: list[Persist] = []
    for i in range(3):
        writes += persists(core.handle(TimerFired(AgentGone(f"S{i}")), 10.0 + i))
    assert list(core.gone) == ["S1", "S2"] and Persist(GONE, "S0", None) in writes
    assert list(decode(as_store(writes)).gone) == ["S1", "S2"]


# --- reconciliation ----------------------------------------------------------------------------


def test_reconcile_answers_unreachable_gone_and_unknown_agents_mesos_style() -> None:
    core = core_with(agent_gone_timeout=100.0)
    register_agent(core)
    register_agent(core, peer=b"a2", hostname="a2")
    subscribe(core, capabilities=["PARTITION_AWARE"])
    core.handle(Received(AGENT, am.Pong(1)), 9.0)
    core.handle(TimerFired(PING), 10.5)  # a2 silent since it registered at 0: unreachable
    assert list(core.agents) == ["m-S0001"] and list(core.unreachable) == ["m-S0002"]
    wanted = [ReconcileTask("x", "m-S0002"), ReconcileTask("y", "m-S0001"), ReconcileTask("z", "nowhere")]
    effects = core.handle(Received(FW, sm.Reconcile("m-F0001", wanted)), 21.0)
    assert [(b.status.task_id, b.status.state) for b in sends(effects, FW)] == [
        ("x", TaskState.UNREACHABLE), ("y", TaskState.UNKNOWN), ("z", TaskState.UNKNOWN)]
    core.handle(TimerFired(AgentGone("m-S0002")), 111.0)
    effects = core.handle(Received(FW, sm.Reconcile("m-F0001", wanted[:1])), 112.0)
    assert [b.status.state for b in sends(effects, FW)] == [TaskState.GONE]


def test_frameworks_that_are_not_partition_aware_hear_lost_for_unreachable_and_gone() -> None:
    core = core_with()
    register_agent(core)
    subscribe(core)
    core.handle(TimerFired(PING), 10.5)
    effects = core.handle(Received(FW, sm.Reconcile("m-F0001", [ReconcileTask("x", "m-S0001")])), 11.0)
    assert [b.status.state for b in sends(effects, FW)] == [TaskState.LOST]


# --- scenario 2, the master's side -------------------------------------------------------------


def test_2_a_task_the_reregistering_agent_did_not_report_is_reconciled_with_it_not_declared_lost() -> None:
    core = core_with()
    launched(core)
    info = AgentInfo(hostname="a1", resources=AGENT_RES.to_wire(), id="m-S0001")
    effects = core.handle(Received(AGENT, am.ReregisterAgent(info, "v")), 2.0)
    audit = [b for b in sends(effects, AGENT) if isinstance(b, am.AuditTasks)]
    assert [(a.tasks, a.frameworks) for a in audit] == [({"m-F0001": ["t1"]}, [core.frameworks["m-F0001"].info])]
    assert not [b for b in sends(effects, FW) if isinstance(b, sm.Update)], "nothing declared lost"
    assert "t1" in core.frameworks["m-F0001"].tasks
    # Reported tasks are not questioned (the audit above is answered: nothing is asked again).
    core.handle(Received(AGENT, am.TaskAudit(audit[0].seq, [am.TaskReport("m-F0001", task("t1"), TaskState.RUNNING)])),
                2.5)
    report = am.TaskReport("m-F0001", task("t1"), TaskState.RUNNING)
    effects = core.handle(Received(AGENT, am.ReregisterAgent(info, "v", [report])), 3.0)
    assert not [b for b in sends(effects, AGENT) if isinstance(b, am.AuditTasks)]


def test_2_tasks_of_a_returning_unreachable_agent_it_does_not_report_are_reconciled_and_freed() -> None:
    core = unreachable_with_t1()
    assert core.frameworks["m-F0001"].tasks["t1"].state == TaskState.UNREACHABLE
    info = AgentInfo(hostname="a1", resources=AGENT_RES.to_wire(), id="m-S0001")
    effects = core.handle(Received(AGENT, am.ReregisterAgent(info, "v")), 20.0)
    [audit] = [b for b in sends(effects, AGENT) if isinstance(b, am.AuditTasks)]
    assert audit.tasks == {"m-F0001": ["t1"]}
    dropped = am.StatusUpdate("m-F0001", _status("t1", TaskState.DROPPED))
    effects = core.handle(Received(AGENT, dropped), 21.0)
    assert [b.status.state for b in sends(effects, FW) if isinstance(b, sm.Update)] == [TaskState.DROPPED]
    assert "t1" not in core.frameworks["m-F0001"].tasks and core.counters["recover_mismatch"] == 0
    assert core.allocator.available("m-S0001") == AGENT_RES


def _status(task_id: str, state: TaskState) -> Any:
    from tepui.sdk.protocol.values import TaskStatus

    return TaskStatus(task_id=task_id, state=state, agent_id="m-S0001", uuid=b"u1")



# --- scenario 15: an agent whose host rebooted -------------------------------------------------


def _registers_after_reboot(core: MasterCore, previous: str, now: float) -> list[Any]:
    info = AgentInfo(hostname="a1", resources=AGENT_RES.to_wire())
    return core.handle(Received(b"rebooted", am.RegisterAgent(info, "v", "boot-2", previous_agent_id=previous)), now)


def test_15_a_rebooted_agent_registers_anew_and_its_old_tasks_are_gone_at_once() -> None:
    core = core_with()
    launched(core)
    effects = _registers_after_reboot(core, "m-S0001", 5.0)
    updates = [b.status for b in sends(effects, FW) if isinstance(b, sm.Update)]
    # The framework is not PARTITION_AWARE: LOST (a PARTITION_AWARE one hears TASK_GONE).
    assert [(u.task_id, u.state, u.reason.value if u.reason else None) for u in updates] == [
        ("t1", TaskState.LOST, "REASON_AGENT_RESTARTED")]
    assert "m-S0001" not in core.agents and "m-S0001" in core.gone
    assert [(w.ns, w.key) for w in persists(effects) if w.key == "m-S0001"] == [(AGENTS, "m-S0001"),
                                                                              (GONE, "m-S0001")]
    [registered] = [b for b in sends(effects, b"rebooted") if isinstance(b, am.AgentRegistered)]
    assert registered.agent_id == "m-S0002"


def test_15_an_unreachable_or_recovered_old_id_is_gone_at_once_too() -> None:
    core = core_with()
    register_agent(core)
    core.handle(TimerFired(PING), 10.5)  # silent: unreachable
    assert "m-S0001" in core.unreachable
    _registers_after_reboot(core, "m-S0001", 20.0)
    assert "m-S0001" in core.gone and "m-S0001" not in core.unreachable
    after_failover = MasterCore(MasterConfig(master_id="new"))
    after_failover.recover(Recovered(agents={"old-S1": AgentInfo(hostname="a1", resources=[], id="old-S1")}), 0.0)
    effects = _registers_after_reboot(after_failover, "old-S1", 1.0)
    assert "old-S1" in after_failover.gone and "old-S1" not in after_failover.recovered_agents
    assert Persist(AGENTS, "old-S1", None) in effects


# --- scenario 16: an agent restarted with more (its additive reconfiguration policy) -----------

MORE = Resources.parse("cpus:8;mem:8192;disk:1000;ports:[31000-32000]")


def _reregisters_with(core: MasterCore, resources: Resources, agent_id: str = "m-S0001",
                      now: float = 5.0) -> list[Any]:
    info = AgentInfo(hostname="a1", resources=resources.to_wire(), id=agent_id)
    return core.handle(Received(AGENT, am.ReregisterAgent(info, "v")), now)


def test_16_an_agent_that_comes_back_with_more_offers_the_extra() -> None:
    core = core_with()
    register_agent(core)
    assert persists(_reregisters_with(core, AGENT_RES)) == [], "the same resources change nothing"
    effects = _reregisters_with(core, MORE)
    assert core.agents["m-S0001"].total == MORE
    assert core.allocator.available("m-S0001") == MORE
    [entry] = persists(effects)
    assert entry.ns == AGENTS and Resources.from_wire(decode(as_store([entry])).agents["m-S0001"].resources) == MORE
    _reregisters_with(core, AGENT_RES)  # less: the agent's policy refuses it; the master keeps what it has
    assert core.agents["m-S0001"].total == MORE


def test_16_after_a_failover_growth_counts_unless_the_registry_holds_reservations() -> None:
    plain = MasterCore(MasterConfig(master_id="new"))
    plain.recover(Recovered(agents={"m-S0001": AgentInfo(hostname="a1", resources=AGENT_RES.to_wire(),
                                                         id="m-S0001")}), 0.0)
    _reregisters_with(plain, MORE)
    assert plain.agents["m-S0001"].total == MORE
    reserved = MasterCore(MasterConfig(master_id="new"))
    reserved.recover(Recovered(agents={"m-S0001": AgentInfo(hostname="a1", resources=RESERVED.to_wire(),
                                                            id="m-S0001")}), 0.0)
    _reregisters_with(reserved, MORE)
    assert reserved.agents["m-S0001"].total == RESERVED


def test_a_reregistration_from_an_older_agent_incarnation_is_dropped_and_counted() -> None:
    """Fencing: what a replaced agent process had queued must not route the agent back to it."""
    core = core_with()
    info = AgentInfo(hostname="a1", resources=AGENT_RES.to_wire())
    core.handle(Received(b"proc-2", am.RegisterAgent(info, "v"), incarnation="00000000000000000002-b"), 0.0)
    again = AgentInfo(hostname="a1", resources=AGENT_RES.to_wire(), id="m-S0001")
    stale = core.handle(Received(b"proc-1", am.ReregisterAgent(again, "v"), incarnation="00000000000000000001-a"), 1.0)
    assert sends(stale, b"proc-1") == [] and core.agents["m-S0001"].peer == b"proc-2"
    assert core.counters["stale_incarnation_messages"] == 1
    newer = core.handle(Received(b"proc-3", am.ReregisterAgent(again, "v"), incarnation="00000000000000000003-c"), 2.0)
    assert [type(b).__name__ for b in sends(newer, b"proc-3")] == ["AgentReregistered"]
    assert core.agents["m-S0001"].peer == b"proc-3" and core.agents["m-S0001"].incarnation == "00000000000000000003-c"
