"""The registry: what the master core persists, and what it recovers after a restart."""

from __future__ import annotations

from typing import Any

import msgspec

from tepui.master.events import AllocateNow, FailoverExpired
from tepui.master.core import REREGISTER_WINDOW, MasterConfig, MasterCore
from tepui.master.events import PeerUnreachable, Received, Send, UpdateQuota, UpdateWeights
from tepui.master.records import UnreachableAgent
from tepui.master.durability.registry import AGENTS, FRAMEWORKS, QUOTAS, WEIGHTS, Persist, Recovered, decode, unreachable_entry
from tepui.offers.roles import Quota
from tepui.sdk.effects import ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo
from tepui.sdk.resources import Resources

TOTAL = Resources.parse("cpus:4;mem:4096;cpus(db):1")


def persists(effects: list[Any]) -> list[Persist]:
    return [e for e in effects if isinstance(e, Persist)]


def as_store(writes: list[Persist]) -> dict[str, dict[str, bytes]]:
    entries: dict[str, dict[str, bytes]] = {}
    for write in writes:
        table = entries.setdefault(write.ns, {})
        if write.value is None:
            table.pop(write.key, None)
        else:
            table[write.key] = write.value
    return entries


def test_registrations_subscriptions_and_operator_calls_are_persisted() -> None:
    core = MasterCore(MasterConfig(master_id="m"))
    core.start(0.0)
    writes = persists(core.handle(Received(b"a", am.RegisterAgent(AgentInfo(hostname="h", resources=TOTAL.to_wire()),
                                                                  "v")), 0.0))
    info = FrameworkInfo(user="u", name="f", failover_timeout=60.0, principal="p", roles=["db"])
    writes += persists(core.handle(Received(b"f", sm.Subscribe(info)), 0.0))
    writes += persists(core.handle(UpdateWeights({"db": 3.0}), 0.0))
    writes += persists(core.handle(UpdateQuota("db", Resources.parse("cpus:1"), Resources.parse("cpus:2")), 0.0))
    assert [(w.ns, w.key) for w in writes] == [(AGENTS, "m-S0001"), (FRAMEWORKS, "m-F0001"), (WEIGHTS, "db"),
                                               (QUOTAS, "db")]
    recovered = decode(as_store(writes))
    assert recovered.weights == {"db": 3.0}
    assert recovered.quotas == {"db": Quota(guarantee={"cpus": 1000}, limit={"cpus": 2000})}
    assert recovered.frameworks["m-F0001"].failover_timeout == 60.0
    assert Resources.from_wire(recovered.agents["m-S0001"].resources) == TOTAL
    # Teardown and a quota removal delete their entries.
    writes += persists(core.handle(Received(b"f", sm.Teardown("m-F0001")), 1.0))
    writes += persists(core.handle(UpdateQuota("db"), 1.0))
    assert sorted(as_store(writes)) == [AGENTS, FRAMEWORKS, QUOTAS, WEIGHTS]
    assert as_store(writes)[FRAMEWORKS] == {} and as_store(writes)[QUOTAS] == {}


def test_a_restarted_master_recovers_and_readmits_agents_with_the_kept_resources() -> None:
    reserved_total = Resources.parse("cpus:3;mem:4096") + Resources.from_wire(
        Resources.parse("cpus(db):1").to_wire())
    kept = AgentInfo(hostname="h", resources=reserved_total.to_wire(), id="old-S1")
    framework = FrameworkInfo(user="u", name="f", id="old-F1", failover_timeout=90.0, principal="p")
    recovered = Recovered(agents={"old-S1": kept, "old-S2": AgentInfo(hostname="g", resources=[], id="old-S2")},
                          frameworks={"old-F1": framework}, weights={"db": 2.0},
                          quotas={"db": Quota(limit={"cpus": 2000})})
    core = MasterCore(MasterConfig(master_id="new", agent_reregister_timeout=100.0))
    effects = core.recover(recovered, 50.0)
    assert ScheduleTimer(140.0, FailoverExpired("old-F1")) in effects
    assert ScheduleTimer(150.0, REREGISTER_WINDOW) in effects
    assert core.allocator.weights() == {"db": 2.0} and "db" in core.allocator.quotas
    assert not core.frameworks["old-F1"].active
    # The agent comes back reporting only its flags' resources; the registry's copy wins.
    flags_only = AgentInfo(hostname="h", resources=Resources.parse("cpus:4;mem:4096").to_wire(), id="old-S1")
    effects = core.handle(Received(b"agent", am.ReregisterAgent(flags_only, "v")), 60.0)
    assert core.agents["old-S1"].total == reserved_total
    assert Send(b"agent", am.AgentReregistered("old-S1", core.master_info, 2.0)) in effects
    # The framework re-subscribes within its failover timeout and is active again.
    core.handle(Received(b"fw", sm.Subscribe(framework)), 61.0)
    assert core.frameworks["old-F1"].active
    # The agent that never came back is unreachable when the window closes (Mesos), and the
    # registry says so: a master restarted after that recovers it as unreachable.
    effects = core.handle(TimerFired(REREGISTER_WINDOW), 150.0)
    unreachable = UnreachableAgent(recovered.agents["old-S2"], 150.0)
    assert persists(effects) == [Persist(AGENTS, "old-S2", None), unreachable_entry("old-S2", unreachable)]


def test_a_recovered_framework_has_at_least_five_heartbeats_to_resubscribe() -> None:
    """A master restart is not the framework's disconnect: with failover_timeout 0 (tepui run's,
    Mesos's default) it was removed, its tasks killed, the moment the master came back."""
    framework = FrameworkInfo(user="u", name="run", id="old-F1", failover_timeout=0.0)
    core = MasterCore(MasterConfig(master_id="new", heartbeat_interval=15.0))
    effects = core.recover(Recovered(frameworks={"old-F1": framework}), 50.0)
    assert ScheduleTimer(125.0, FailoverExpired("old-F1")) in effects
    core.handle(Received(b"fw", sm.Subscribe(framework)), 60.0)
    assert core.frameworks["old-F1"].active
    # A framework that disconnects from a running master still gets only its own timeout.
    effects = core.handle(PeerUnreachable(b"fw"), 70.0)
    assert ScheduleTimer(70.0, FailoverExpired("old-F1")) in effects


def test_reservations_are_persisted_with_the_agent() -> None:
    core = MasterCore(MasterConfig(master_id="m", offer_timeout=None))
    core.start(0.0)
    core.handle(Received(b"a", am.RegisterAgent(AgentInfo(hostname="h", resources=Resources.parse(
        "cpus:4;mem:1024").to_wire()), "v")), 0.0)
    core.handle(Received(b"f", sm.Subscribe(FrameworkInfo(user="u", name="f", roles=["db"], principal="p"))), 0.0)
    effects = core.handle(TimerFired(AllocateNow()), 1.0)
    [offers] = [e.body for e in effects if isinstance(e, Send) and isinstance(e.body, sm.Offers)]
    from tepui.sdk.protocol.values import Reservation, Resource

    reserve = sm.Reserve([Resource(name="cpus", scalar=1, role="db", reservation=Reservation(type="DYNAMIC",
                                                                                              principal="p"))])
    effects = core.handle(Received(b"f", sm.Accept("m-F0001", [offers.offers[0].id], [reserve])), 1.0)
    [write] = persists(effects)
    stored = msgspec.json.decode(write.value or b"", type=AgentInfo)
    assert Resources.from_wire(stored.resources) == core.agents["m-S0001"].total
    assert Resources.from_wire(stored.resources).reserved("db").scalar("cpus") == 1.0


def test_after_a_failover_an_agent_back_as_the_registry_holds_it_is_not_written_again() -> None:
    """1,000 agents re-registering at once after a failover would otherwise be 1,000 identical
    writes on the new leader (ZooKeeper round trips) before it is back; one that changed is written."""
    same = AgentInfo(hostname="h", resources=Resources.parse("cpus:4;mem:4096").to_wire(), id="old-S1",
                     address="10.0.0.1", http_port=5051)
    moved = AgentInfo(hostname="g", resources=Resources.parse("cpus:4;mem:4096").to_wire(), id="old-S2",
                      address="10.0.0.2", http_port=5051)
    core = MasterCore(MasterConfig(master_id="new", agent_reregister_timeout=100.0))
    core.recover(Recovered(agents={"old-S1": same, "old-S2": moved}), 50.0)
    assert persists(core.handle(Received(b"a1", am.ReregisterAgent(same, "v")), 51.0)) == []
    back = msgspec.structs.replace(moved, http_port=5052)  # restarted on another port
    effects = core.handle(Received(b"a2", am.ReregisterAgent(back, "v")), 51.0)
    assert [(w.ns, w.key) for w in persists(effects)] == [(AGENTS, "old-S2")]
    assert decode(as_store(persists(effects))).agents["old-S2"].http_port == 5052
