"""The master's pure core on a fake clock: feed events, assert the exact effects."""

from __future__ import annotations

from typing import Any

import typing

import pytest

from tepui.master.offering.accept_salvage import PartialAccept
from tepui.master.core import ALLOCATE_BATCH, ALLOCATE_NOW, HEARTBEAT, PING, MasterConfig, MasterCore
from tepui.master.events import FailoverExpired, MasterEvent, OfferTimeout, PeerUnreachable, Received, Send, TimerKey
from tepui.master.durability.registry import Persist
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import (
    AgentInfo,
    CommandInfo,
    Filters,
    FrameworkInfo,
    KillPolicy,
    ReconcileTask,
    TaskInfo,
    TaskReason,
    TaskSource,
    TaskState,
    TaskStatus,
)
from tepui.sdk.resources import Resources

AGENT = b"agent-peer"
FW = b"framework-peer"
AGENT_RES = Resources.parse("cpus:4;mem:4096;disk:1000;ports:[31000-32000]")
TASK_RES = Resources.of(cpus=1, mem=128)


def without_logs(effects: list[Any]) -> list[Any]:
    """Logs and registry writes aside (test_registry.py asserts the writes)."""
    return [e for e in effects if not isinstance(e, (Log, Persist))]


def sends(effects: list[Any], peer: bytes | None = None) -> list[Any]:
    return [e.body for e in effects if isinstance(e, Send) and (peer is None or e.peer == peer)]


def make_core(**overrides: Any) -> MasterCore:
    config = MasterConfig(master_id="m", hostname="h", address="127.0.0.1:5050", **overrides)
    core = MasterCore(config)
    core.start(0.0)
    return core


def register_agent(core: MasterCore, now: float = 0.0, peer: bytes = AGENT, hostname: str = "a1") -> list[Any]:
    info = AgentInfo(hostname=hostname, resources=AGENT_RES.to_wire(), attributes={"rack": "r1"})
    return core.handle(Received(peer, am.RegisterAgent(info, "0.1.0")), now)


def subscribe(core: MasterCore, now: float = 0.0, peer: bytes = FW, **info: Any) -> list[Any]:
    framework = FrameworkInfo(user="u", name="fw", **info)
    return core.handle(Received(peer, sm.Subscribe(framework)), now)


def offer_cycle(core: MasterCore, now: float, key: tuple[str, str] = ALLOCATE_NOW) -> list[sm.Offers]:
    return [b for b in sends(core.handle(TimerFired(key), now), FW) if isinstance(b, sm.Offers)]


def task(task_id: str, resources: Resources = TASK_RES, agent_id: str = "m-S0001", **kw: Any) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id=agent_id, resources=resources.to_wire(),
                    command=CommandInfo(value="sleep 1"), **kw)


def launched(core: MasterCore, now: float = 1.0) -> tuple[str, TaskInfo]:
    register_agent(core)
    subscribe(core)
    offer = offer_cycle(core, now)[0].offers[0]
    info = task("t1")
    core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch([info])])), now)
    return offer.id, info


def test_start_schedules_batch_allocation_pings_and_heartbeats() -> None:
    core = MasterCore(MasterConfig(master_id="m"))
    assert core.start(100.0) == [
        ScheduleTimer(101.0, ALLOCATE_BATCH), ScheduleTimer(102.0, PING), ScheduleTimer(115.0, HEARTBEAT),
    ]


def test_agent_registration_is_answered_with_its_new_id_and_triggers_allocation() -> None:
    core = make_core()
    effects = without_logs(register_agent(core, now=3.0))
    assert effects == [
        Send(AGENT, am.AgentRegistered("m-S0001", core.master_info, 2.0)),
        ScheduleTimer(3.0, ALLOCATE_NOW),
    ]
    # A retried registration on the same connection changes nothing and gets the same id.
    again = without_logs(register_agent(core, now=4.0))
    assert again == [Send(AGENT, am.AgentRegistered("m-S0001", core.master_info, 2.0))]
    assert list(core.agents) == ["m-S0001"]


def test_register_offer_accept_run_update_ack() -> None:
    core = make_core(offer_timeout=None)
    register_agent(core)
    assert without_logs(subscribe(core, now=1.0)) == [
        Send(FW, sm.Subscribed("m-F0001", 15.0, core.master_info)),
        ScheduleTimer(1.0, ALLOCATE_NOW),
    ]
    effects = core.handle(TimerFired(ALLOCATE_NOW), 1.0)
    [offers] = sends(effects, FW)
    [offer] = offers.offers
    assert (offer.id, offer.agent_id, offer.hostname, offer.attributes) == ("m-O0001", "m-S0001", "a1", {"rack": "r1"})
    assert Resources.from_wire(offer.resources) == AGENT_RES

    info = task("t1")
    effects = core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch([info])])), 2.0)
    assert without_logs(effects) == [
        Send(AGENT, am.RunTask(core.frameworks["m-F0001"].info, info)),
        ScheduleTimer(2.0, ALLOCATE_NOW),
    ]
    assert core.frameworks["m-F0001"].tasks["t1"].state == TaskState.STAGING
    # The unused part of the offer went back to the pool with the default 5 s filter.
    assert core.allocator.available("m-S0001") == AGENT_RES - TASK_RES
    assert offer_cycle(core, 3.0) == []

    running = TaskStatus(task_id="t1", state=TaskState.RUNNING, source=TaskSource.AGENT, agent_id="m-S0001",
                         uuid=b"u1", timestamp=2.5)
    effects = core.handle(Received(AGENT, am.StatusUpdate("m-F0001", running)), 2.5)
    assert effects == [Send(FW, sm.Update(running))]
    assert core.frameworks["m-F0001"].tasks["t1"].state == TaskState.RUNNING

    effects = core.handle(Received(FW, sm.Acknowledge("m-F0001", "m-S0001", "t1", b"u1")), 2.6)
    assert effects == [Send(AGENT, am.StatusUpdateAck("m-F0001", "t1", b"u1"))]

    finished = TaskStatus(task_id="t1", state=TaskState.FINISHED, source=TaskSource.AGENT, agent_id="m-S0001",
                          uuid=b"u2", timestamp=3.0, exit_code=0)
    effects = core.handle(Received(AGENT, am.StatusUpdate("m-F0001", finished)), 3.0)
    assert effects == [Send(FW, sm.Update(finished)), ScheduleTimer(3.0, ALLOCATE_NOW)]
    assert "t1" not in core.frameworks["m-F0001"].tasks
    assert [t.task_id for t in core.frameworks["m-F0001"].completed] == ["t1"]
    assert core.allocator.available("m-S0001") == AGENT_RES


def test_kill_is_forwarded_to_the_agent_with_the_policy() -> None:
    core = make_core()
    launched(core)
    effects = core.handle(Received(FW, sm.Kill("m-F0001", "t1", None, KillPolicy(2.0))), 5.0)
    assert effects == [Send(AGENT, am.KillTask("m-F0001", "t1", KillPolicy(2.0)))]


def test_kill_of_an_unknown_task_answers_lost_from_the_master() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core)
    effects = core.handle(Received(FW, sm.Kill("m-F0001", "ghost")), 5.0)
    [update] = sends(effects, FW)
    assert update.status.state == TaskState.LOST
    assert update.status.source == TaskSource.MASTER and update.status.uuid is None


def test_decline_filter_holds_the_agent_back_until_refuse_seconds_expire() -> None:
    core = make_core(offer_timeout=None)
    register_agent(core)
    subscribe(core)
    [offers] = offer_cycle(core, 1.0)
    core.handle(Received(FW, sm.Decline("m-F0001", [offers.offers[0].id], Filters(refuse_seconds=5.0))), 1.0)
    assert offer_cycle(core, 2.0) == []
    assert offer_cycle(core, 5.9, ALLOCATE_BATCH) == []
    # Filter expiry is picked up by the batch cycle (the immediate one visits changed agents only).
    [again] = offer_cycle(core, 6.0, ALLOCATE_BATCH)
    assert again.offers[0].id == "m-O0002"
    assert Resources.from_wire(again.offers[0].resources) == AGENT_RES


def test_revive_clears_filters() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core)
    [offers] = offer_cycle(core, 1.0)
    core.handle(Received(FW, sm.Decline("m-F0001", [offers.offers[0].id], Filters(refuse_seconds=3600))), 1.0)
    assert offer_cycle(core, 2.0) == []
    core.handle(Received(FW, sm.Revive("m-F0001")), 2.0)
    assert len(offer_cycle(core, 2.0)) == 1


def test_suppressed_framework_gets_no_offers() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core)
    core.handle(Received(FW, sm.Suppress("m-F0001")), 0.5)
    assert offer_cycle(core, 1.0) == []


def test_31_invalid_tasks_end_task_error_and_return_their_resources() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core)
    [offers] = offer_cycle(core, 1.0)
    bad = [
        task("a/b"),
        task("x" * 300),
        task("zero", Resources()),
        task("huge", Resources.of(cpus=64, mem=1)),
        task("ok"),
        task("ok"),  # duplicate id within the same call
        task("neg", kill_policy=KillPolicy(-1.0)),
    ]
    effects = core.handle(Received(FW, sm.Accept("m-F0001", [offers.offers[0].id], [sm.Launch(bad)])), 1.0)
    updates = [b.status for b in sends(effects, FW)]
    assert [(u.task_id[:5], u.state, u.reason) for u in updates] == [
        ("a/b", TaskState.ERROR, TaskReason.TASK_INVALID),
        ("xxxxx", TaskState.ERROR, TaskReason.TASK_INVALID),
        ("zero", TaskState.ERROR, TaskReason.TASK_INVALID),
        ("huge", TaskState.ERROR, TaskReason.TASK_INVALID),
        ("ok", TaskState.ERROR, TaskReason.TASK_INVALID),
        ("neg", TaskState.ERROR, TaskReason.TASK_INVALID),
    ]
    assert "'/'" in updates[0].message and "300 characters" in updates[1].message
    assert "missing" in updates[3].message and "already in use" in updates[4].message
    assert len(sends(effects, AGENT)) == 1  # only the first "ok" runs
    assert core.allocator.available("m-S0001") == AGENT_RES - TASK_RES


def test_accept_with_an_unknown_offer_drops_its_tasks_and_keeps_the_valid_offer() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core, capabilities=["PARTITION_AWARE"])
    [offers] = offer_cycle(core, 1.0)
    call = sm.Accept("m-F0001", [offers.offers[0].id, "bogus"], [sm.Launch([task("t1")])])
    effects = core.handle(Received(FW, call), 1.0)
    [error, update] = sends(effects, FW)
    assert error == sm.Error(
        "ACCEPT refused: offer 'bogus' is not valid: rescinded or timed out (a normal race with RESCIND: nothing to "
        "do), used or declined already, or never made to this framework. Nothing in it was done: each of its tasks "
        "is answered TASK_DROPPED (TASK_LOST without PARTITION_AWARE), and the resources of its other offers were "
        "returned", call_type="ACCEPT", field="$.body.offer_ids[1]")
    assert (update.status.state, update.status.reason) == (TaskState.DROPPED, TaskReason.INVALID_OFFERS)
    assert sends(effects, AGENT) == []
    assert core.allocator.available("m-S0001") == AGENT_RES
    assert core.offers == {}


def test_4_the_same_offer_twice_is_rejected_and_its_resources_recovered() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core)
    [offers] = offer_cycle(core, 1.0)
    oid = offers.offers[0].id
    effects = core.handle(Received(FW, sm.Accept("m-F0001", [oid, oid], [sm.Launch([task("t1")])])), 1.0)
    [error, update] = sends(effects, FW)
    assert "more than once" in error.message and error.field is None
    assert update.status.state == TaskState.LOST and "more than once" in (update.status.message or "")
    assert core.allocator.available("m-S0001") == AGENT_RES


def test_4_offers_of_two_agents_in_one_accept_are_rejected_and_all_resources_recovered() -> None:
    core = make_core()
    register_agent(core)
    register_agent(core, peer=b"agent-2", hostname="a2")
    subscribe(core)
    [offers] = offer_cycle(core, 1.0)
    ids = [offer.id for offer in offers.offers]
    assert len({offer.agent_id for offer in offers.offers}) == 2
    effects = core.handle(Received(FW, sm.Accept("m-F0001", ids, [sm.Launch([task("t1")])])), 1.0)
    [error, update] = sends(effects, FW)
    assert error.message.startswith("ACCEPT refused: ACCEPT combines offers of different agents")
    assert update.status.state == TaskState.LOST and "different agents" in (update.status.message or "")
    assert sends(effects, AGENT) == [] and sends(effects, b"agent-2") == []
    assert core.allocator.available("m-S0001") == AGENT_RES
    assert core.allocator.available("m-S0002") == AGENT_RES
    assert core.offers == {}


def test_calls_from_an_unsubscribed_or_other_connection_get_an_error() -> None:
    core = make_core()
    subscribe(core)
    effects = core.handle(Received(b"intruder", sm.Kill("m-F0001", "t1")), 1.0)
    [error] = sends(effects, b"intruder")
    assert isinstance(error, sm.Error) and "another connection" in error.message
    effects = core.handle(Received(b"intruder", sm.Revive("nope")), 1.0)
    [error] = sends(effects, b"intruder")
    assert "not subscribed" in error.message


def test_6_an_offer_held_past_the_offer_timeout_is_rescinded_and_offered_again() -> None:
    core = make_core(offer_timeout=10.0)
    register_agent(core)
    subscribe(core)
    effects = core.handle(TimerFired(ALLOCATE_NOW), 1.0)
    assert ScheduleTimer(11.0, OfferTimeout("m-O0001")) in effects
    effects = core.handle(TimerFired(OfferTimeout("m-O0001")), 11.0)
    assert sends(effects, FW) == [sm.Rescind("m-O0001")]
    assert core.offers == {}
    assert len(offer_cycle(core, 11.0)) == 1


def test_the_ping_interval_grows_with_the_cluster_to_stay_under_the_ping_rate() -> None:
    """Nomad's max_heartbeats_per_second: 2 agents at 1 ping/s each allowed -> every 2 s (the
    configured interval); 5 agents -> every 5 s, announced in each ping and at registration,
    and the silence limit (5 intervals) follows."""
    core = make_core(agent_ping_interval=2.0, max_agent_pings_per_second=1.0)
    for i in range(2):
        register_agent(core, peer=b"agent-%d" % i, hostname=f"a{i}")
    effects = core.handle(TimerFired(PING), 2.0)
    assert Send(b"agent-0", am.Ping(1, 2.0)) in effects and ScheduleTimer(4.0, PING) in effects
    for i in range(2, 5):
        registered = register_agent(core, now=3.0, peer=b"agent-%d" % i, hostname=f"a{i}")
    assert Send(b"agent-4", am.AgentRegistered("m-S0005", core.master_info, 5.0)) in registered
    effects = core.handle(TimerFired(PING), 4.0)
    assert Send(b"agent-0", am.Ping(2, 5.0)) in effects and ScheduleTimer(9.0, PING) in effects
    for i in range(5):
        core.handle(Received(b"agent-%d" % i, am.Pong(2)), 4.0)
    core.handle(TimerFired(PING), 28.9)  # 24.9 s of silence: under 5 x 5 s
    assert len(core.agents) == 5
    unlimited = make_core(agent_ping_interval=2.0, max_agent_pings_per_second=None)
    for i in range(5):
        register_agent(unlimited, peer=b"agent-%d" % i, hostname=f"a{i}")
    assert unlimited.ping_interval == 2.0


def test_silent_agent_is_removed_after_missed_pings_and_its_tasks_reported() -> None:
    core = make_core(agent_ping_interval=15.0, max_agent_ping_timeouts=5)
    launched(core)
    effects = core.handle(TimerFired(PING), 15.0)
    assert Send(AGENT, am.Ping(1, 15.0)) in effects
    core.handle(Received(AGENT, am.Pong(1)), 15.1)
    effects = core.handle(TimerFired(PING), 90.0)  # 74.9 s after the last pong: still fine
    assert Send(AGENT, am.Ping(2, 15.0)) in effects
    effects = core.handle(TimerFired(PING), 90.2)  # 75.1 s of silence: removed
    bodies = sends(effects, FW)
    assert [b.status.state for b in bodies if isinstance(b, sm.Update)] == [TaskState.LOST]
    assert sm.Failure(agent_id="m-S0001") in bodies
    assert core.agents == {}


def test_partition_aware_framework_sees_unreachable() -> None:
    core = make_core(agent_ping_interval=1.0, max_agent_ping_timeouts=2)
    register_agent(core)
    subscribe(core, capabilities=["PARTITION_AWARE"])
    offer = offer_cycle(core, 0.5)[0].offers[0]
    core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch([task("t1")])])), 0.5)
    effects = core.handle(TimerFired(PING), 2.5)
    [update] = [b for b in sends(effects, FW) if isinstance(b, sm.Update)]
    assert (update.status.state, update.status.reason) == (TaskState.UNREACHABLE, TaskReason.AGENT_DISCONNECTED)


def test_disconnected_framework_is_removed_after_its_failover_timeout() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core, failover_timeout=30.0)
    offer = offer_cycle(core, 1.0)[0].offers[0]
    core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch([task("t1")])])), 1.0)
    effects = core.handle(PeerUnreachable(FW), 2.0)
    assert ScheduleTimer(32.0, FailoverExpired("m-F0001")) in effects
    assert not core.frameworks["m-F0001"].active
    effects = core.handle(TimerFired(FailoverExpired("m-F0001")), 32.0)
    assert Send(AGENT, am.ShutdownFramework("m-F0001")) in effects
    assert core.frameworks == {}
    assert core.allocator.available("m-S0001") == AGENT_RES


def test_resubscribe_within_failover_keeps_tasks() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core, failover_timeout=30.0)
    offer = offer_cycle(core, 1.0)[0].offers[0]
    core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch([task("t1")])])), 1.0)
    core.handle(PeerUnreachable(FW), 2.0)
    effects = subscribe(core, now=10.0, peer=b"new-conn", id="m-F0001", failover_timeout=30.0)
    assert CancelTimer(FailoverExpired("m-F0001")) in effects
    assert Send(b"new-conn", sm.Subscribed("m-F0001", 15.0, core.master_info)) in effects
    assert "t1" in core.frameworks["m-F0001"].tasks


def test_30_resubscribing_with_another_principal_is_refused() -> None:
    core = make_core()
    subscribe(core, principal="alice")
    effects = subscribe(core, now=1.0, peer=b"other", id="m-F0001", principal="mallory")
    [error] = sends(effects, b"other")
    assert isinstance(error, sm.Error) and "principal" in error.message


def test_teardown_shuts_the_framework_down_on_its_agents() -> None:
    core = make_core()
    launched(core)
    effects = core.handle(Received(FW, sm.Teardown("m-F0001")), 3.0)
    assert Send(AGENT, am.ShutdownFramework("m-F0001")) in effects
    assert core.frameworks == {} and [f.framework_id for f in core.completed_frameworks] == ["m-F0001"]
    assert core.allocator.available("m-S0001") == AGENT_RES


def test_reconcile_implicit_and_explicit() -> None:
    core = make_core()
    launched(core)
    effects = core.handle(Received(FW, sm.Reconcile("m-F0001")), 4.0)
    [update] = sends(effects, FW)
    assert (update.status.task_id, update.status.state, update.status.reason) == (
        "t1", TaskState.STAGING, TaskReason.RECONCILIATION)
    assert update.status.uuid is None
    effects = core.handle(Received(FW, sm.Reconcile("m-F0001", [ReconcileTask("t1"), ReconcileTask("nope")])), 4.0)
    assert [(b.status.task_id, b.status.state) for b in sends(effects, FW)] == [
        ("t1", TaskState.STAGING), ("nope", TaskState.LOST)]


def test_agent_reregistration_after_master_restart_rebuilds_its_tasks() -> None:
    core = make_core()
    info = AgentInfo(hostname="a1", resources=AGENT_RES.to_wire(), id="old-S1")
    framework = FrameworkInfo(user="u", name="fw", id="old-F1")
    report = am.TaskReport("old-F1", task("t9", agent_id="old-S1"), TaskState.RUNNING)
    effects = core.handle(Received(AGENT, am.ReregisterAgent(info, "0.1.0", [report], [framework])), 1.0)
    assert Send(AGENT, am.AgentReregistered("old-S1", core.master_info, 2.0)) in effects
    assert core.frameworks["old-F1"].tasks["t9"].state == TaskState.RUNNING
    assert core.allocator.available("old-S1") == AGENT_RES - TASK_RES
    # The framework re-subscribes with its id and finds its task.
    subscribe(core, now=2.0, id="old-F1")
    assert core.frameworks["old-F1"].active and "t9" in core.frameworks["old-F1"].tasks


def test_drf_alternates_between_two_frameworks() -> None:
    core = make_core()
    register_agent(core, peer=b"a1", hostname="a1")
    register_agent(core, peer=b"a2", hostname="a2")
    subscribe(core, peer=b"f1")
    subscribe(core, peer=b"f2")
    effects = core.handle(TimerFired(ALLOCATE_NOW), 1.0)
    got = {peer: [o.agent_id for b in sends(effects, peer) for o in b.offers] for peer in (b"f1", b"f2")}
    assert got == {b"f1": ["m-S0001"], b"f2": ["m-S0002"]}


def test_the_dispatch_tables_cover_every_inbound_message_timer_key_and_event() -> None:
    """A message, timer or event type without a handler would be logged as unhandled (or
    raise): the tables in core.py must name each one of the vocabulary in master/events.py."""
    core = MasterCore(MasterConfig("m"))
    inbound = set(typing.get_args(am.AgentToMaster)) | set(typing.get_args(sm.SchedulerCall)) | {PartialAccept}
    assert set(core._messages) == inbound
    assert set(core._timers) == set(typing.get_args(TimerKey))
    assert set(core._events) == set(typing.get_args(MasterEvent))


def test_an_unknown_timer_key_is_a_type_error_not_a_timer_that_never_matches() -> None:
    core = MasterCore(MasterConfig("m"))
    with pytest.raises(TypeError, match="unknown timer key"):
        core.handle(TimerFired(("failover", "F1")), 0.0)

