"""The master core's allocation features: reservations, demand, explanations, weights, quota."""

from __future__ import annotations

from typing import Any

from tepui.master.events import AllocateBatch
from tepui.master.core import ALLOCATE_BATCH, ALLOCATE_NOW, MasterConfig, MasterCore
from tepui.master.events import OperatorError, Received, Send, UpdateQuota, UpdateWeights
from tepui.sdk.effects import ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import (
    AgentInfo,
    CommandInfo,
    DemandShape,
    Filters,
    FrameworkInfo,
    Reservation,
    Resource,
    TaskInfo,
)
from tepui.sdk.resources import Resources

AGENT_RES = Resources.parse("cpus:4;mem:4096")


def make_core() -> MasterCore:
    core = MasterCore(MasterConfig(master_id="m", offer_timeout=None))
    core.start(0.0)
    core.handle(Received(b"agent", am.RegisterAgent(AgentInfo(hostname="a1", resources=AGENT_RES.to_wire()), "0.1")), 0.0)
    return core


def subscribe(core: MasterCore, peer: bytes, roles: list[str], **kw: Any) -> list[Any]:
    info = FrameworkInfo(user="u", name=peer.decode(), roles=roles, principal="p-" + peer.decode())
    return core.handle(Received(peer, sm.Subscribe(info, **kw)), 0.0)


def offers_to(effects: list[Any], peer: bytes) -> list[Any]:
    return [o for e in effects if isinstance(e, Send) and e.peer == peer and isinstance(e.body, sm.Offers)
            for o in e.body.offers]


def cycle(core: MasterCore, now: float = 1.0) -> list[Any]:
    return core.handle(TimerFired(ALLOCATE_NOW), now)


def errors_to(effects: list[Any], peer: bytes) -> list[str]:
    return [e.body.message for e in effects if isinstance(e, Send) and e.peer == peer and isinstance(e.body, sm.Error)]


def reserved(amount: float, role: str, principal: str) -> Resource:
    return Resource(name="cpus", scalar=amount, role=role, reservation=Reservation(type="DYNAMIC", principal=principal))


def test_invalid_role_is_refused_at_subscribe() -> None:
    core = make_core()
    effects = subscribe(core, b"f", ["eng//x"])
    [message] = errors_to(effects, b"f")
    assert "SUBSCRIBE refused" in message and "eng//x" in message
    assert core.frameworks == {}


def test_reserve_then_decline_reoffers_only_to_the_role() -> None:
    core = make_core()
    subscribe(core, b"eng", ["eng"])
    [offer] = offers_to(cycle(core), b"eng")
    reserve = sm.Reserve([reserved(2, "eng", "p-eng")])
    effects = core.handle(Received(b"eng", sm.Accept("m-F0001", [offer.id], [reserve], Filters(3600))), 1.0)
    assert errors_to(effects, b"eng") == []
    assert core.agents["m-S0001"].total == Resources.from_wire([reserved(2, "eng", "p-eng")]) + Resources.parse(
        "cpus:2;mem:4096")
    subscribe(core, b"other", ["*"])
    [offer] = offers_to(cycle(core, 2.0), b"other")
    assert Resources.from_wire(offer.resources) == Resources.parse("cpus:2;mem:4096")


def test_reserve_refuses_a_foreign_role_or_principal() -> None:
    core = make_core()
    subscribe(core, b"eng", ["eng"])
    [offer] = offers_to(cycle(core), b"eng")
    effects = core.handle(Received(b"eng", sm.Accept("m-F0001", [offer.id], [sm.Reserve([reserved(1, "ads", "p-eng")])])), 1.0)
    [message] = errors_to(effects, b"eng")
    assert "role 'ads' refused" in message
    [offer] = offers_to(core.handle(TimerFired(AllocateBatch()), 10.0), b"eng")
    effects = core.handle(Received(b"eng", sm.Accept("m-F0001", [offer.id], [sm.Reserve([reserved(1, "eng", "mallory")])])), 10.0)
    [message] = errors_to(effects, b"eng")
    assert "principal 'mallory'" in message
    assert core.agents["m-S0001"].total == AGENT_RES


def test_reserve_then_launch_in_one_accept_uses_the_reservation() -> None:
    core = make_core()
    subscribe(core, b"eng", ["eng"])
    [offer] = offers_to(cycle(core), b"eng")
    task = TaskInfo(name="t", task_id="t", agent_id="m-S0001", command=CommandInfo(value="true"),
                    resources=[reserved(2, "eng", "p-eng"), Resource(name="mem", scalar=64)])
    call = sm.Accept("m-F0001", [offer.id], [sm.Reserve([reserved(2, "eng", "p-eng")]), sm.Launch([task])])
    effects = core.handle(Received(b"eng", call), 1.0)
    assert [type(e.body) for e in effects if isinstance(e, Send)] == [am.RunTask]


def test_unreserve_returns_resources_to_everyone() -> None:
    core = make_core()
    subscribe(core, b"eng", ["eng"])
    [offer] = offers_to(cycle(core), b"eng")
    core.handle(Received(b"eng", sm.Accept("m-F0001", [offer.id], [sm.Reserve([reserved(2, "eng", "p-eng")])], Filters(0))), 1.0)
    [offer] = offers_to(cycle(core, 2.0), b"eng")
    effects = core.handle(Received(b"eng", sm.Accept("m-F0001", [offer.id], [sm.Unreserve([reserved(2, "eng", "p-eng")])])), 2.0)
    assert errors_to(effects, b"eng") == []
    assert core.agents["m-S0001"].total == AGENT_RES


def test_declared_demand_steers_offers_and_explain_says_why() -> None:
    core = make_core()
    big = DemandShape(resources=Resources.parse("cpus:16").to_wire())
    subscribe(core, b"f", ["*"], demand=[big])
    assert offers_to(cycle(core), b"f") == []
    effects = core.handle(Received(b"f", sm.Explain("m-F0001")), 1.0)
    [answer] = [e.body for e in effects if isinstance(e, Send) and isinstance(e.body, sm.Explanation)]
    assert [(r.role, r.reason) for r in answer.roles] == [("*", "DEMAND_NEVER_FITS")]
    small = DemandShape(resources=Resources.parse("cpus:1").to_wire())
    core.handle(Received(b"f", sm.DeclareDemand("m-F0001", [small])), 2.0)
    assert len(offers_to(cycle(core, 2.0), b"f")) == 1


def test_bad_demand_is_refused_with_the_field() -> None:
    core = make_core()
    subscribe(core, b"f", ["*"])
    bad = DemandShape(resources=[Resource(name="cpus", scalar=-1)])
    effects = core.handle(Received(b"f", sm.DeclareDemand("m-F0001", [bad])), 1.0)
    [message] = errors_to(effects, b"f")
    assert "demand[0].resources" in message


def test_operator_weights_and_quota() -> None:
    core = make_core()
    assert core.handle(UpdateWeights({"eng": 0.0}), 1.0)[0] == OperatorError("weights.eng", "weight must be > 0, got 0.0")
    core.handle(UpdateWeights({"eng": 3.0}), 1.0)
    assert core.allocator.weights() == {"eng": 3.0}
    [error] = [e for e in core.handle(UpdateQuota("eng", Resources.parse("cpus:4"), Resources.parse("cpus:2")), 1.0)
               if isinstance(e, OperatorError)]
    assert error.field == "guarantee" and "exceeds its limit" in error.message
    core.handle(UpdateQuota("eng", None, Resources.parse("cpus:1")), 1.0)
    subscribe(core, b"eng", ["eng"])
    [offer] = offers_to(cycle(core), b"eng")
    assert Resources.from_wire(offer.resources).scalar("cpus") == 1.0  # chopped to the limit
    core.handle(UpdateQuota("eng"), 2.0)
    assert core.allocator.quotas == {}


def test_launch_group_is_all_or_nothing() -> None:
    from tepui.sdk.protocol.values import ExecutorInfo, TaskGroupInfo

    core = make_core()
    subscribe(core, b"f", ["*"])
    [offer] = offers_to(cycle(core), b"f")

    def member(task_id: str, cpus: float) -> TaskInfo:
        return TaskInfo(name=task_id, task_id=task_id, agent_id="m-S0001", command=CommandInfo(value="true"),
                        resources=Resources.of(cpus=cpus, mem=32).to_wire())

    too_big = sm.LaunchGroup(ExecutorInfo(executor_id="pod", type="DEFAULT"),
                             TaskGroupInfo([member("a", 1), member("b", 8)]))
    effects = core.handle(Received(b"f", sm.Accept("m-F0001", [offer.id], [too_big], Filters(0))), 1.0)
    updates = [e.body.status for e in effects if isinstance(e, Send) and isinstance(e.body, sm.Update)]
    assert [(u.task_id, u.state.value) for u in updates] == [("a", "TASK_ERROR"), ("b", "TASK_ERROR")]
    assert all("task group refused" in (u.message or "") for u in updates)
    assert not any(isinstance(e, Send) and isinstance(e.body, am.RunTaskGroup) for e in effects)
    [offer] = offers_to(cycle(core, 2.0), b"f")
    fits = sm.LaunchGroup(ExecutorInfo(executor_id="pod", type="DEFAULT"),
                          TaskGroupInfo([member("a", 1), member("b", 1)]))
    effects = core.handle(Received(b"f", sm.Accept("m-F0001", [offer.id], [fits])), 2.0)
    [run_group] = [e.body for e in effects if isinstance(e, Send) and isinstance(e.body, am.RunTaskGroup)]
    assert [t.task_id for t in run_group.task_group.tasks] == ["a", "b"]
    assert set(core.frameworks["m-F0001"].tasks) == {"a", "b"}


# --- fairness through the master (issue 14) -----------------------------------------------------

def greedy_cluster(seed: int, agents: int) -> MasterCore:
    core = MasterCore(MasterConfig(master_id="m", offer_timeout=None, allocation_seed=seed))
    core.start(0.0)
    for i in range(agents):
        info = AgentInfo(hostname=f"h{i}", resources=Resources.parse("cpus:4;mem:4096").to_wire())
        core.handle(Received(f"agent-{i}".encode(), am.RegisterAgent(info, "0.1")), 0.0)
    return core


def answer_greedily(core: MasterCore, effects: list[Any], now: float, launched: dict[bytes, int]) -> None:
    """Frameworks launch every cpus:1;mem:1024 task that fits an offer and decline the rest
    with a 5 s filter; the master's immediate cycles run as they are scheduled."""
    task_shape = Resources.parse("cpus:1;mem:1024")
    pending = list(effects)
    while pending:
        effect = pending.pop(0)
        if isinstance(effect, Send) and isinstance(effect.body, sm.Offers):
            for offer in effect.body.offers:
                left, tasks = Resources.from_wire(offer.resources), []
                while left.contains(task_shape):
                    left = left - task_shape
                    launched[effect.peer] = launched.get(effect.peer, 0) + 1
                    task_id = f"{effect.peer.decode()}-{launched[effect.peer]}"
                    tasks.append(TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id,
                                          command=CommandInfo(value="true"), resources=task_shape.to_wire()))
                call: Any = (sm.Accept(offer.framework_id, [offer.id], [sm.Launch(tasks)], Filters(5.0)) if tasks
                             else sm.Decline(offer.framework_id, [offer.id], Filters(5.0)))
                pending.extend(core.handle(Received(effect.peer, call), now))
        elif isinstance(effect, ScheduleTimer) and effect.key == ALLOCATE_NOW:
            pending.extend(core.handle(TimerFired(ALLOCATE_NOW), now))


def test_a_role_at_its_quota_limit_does_not_starve_its_neighbour_through_the_master() -> None:
    """Issue 14's case end to end: three agents of cpus:4;mem:4096, ``capped`` limited to 4
    cpus, ``other`` unlimited, greedy frameworks declining leftovers for 5 s. ``other`` ends
    with every task the agents ``capped`` does not use can run."""
    for seed in range(5):
        core = greedy_cluster(seed, agents=3)
        core.handle(UpdateQuota("capped", None, Resources.parse("cpus:4")), 0.0)
        subscribe(core, b"capped", ["capped"])
        subscribe(core, b"other", ["other"])  # both before the first cycle
        launched: dict[bytes, int] = {}
        for t in range(1, 31):
            answer_greedily(core, core.handle(TimerFired(ALLOCATE_BATCH), float(t)), float(t), launched)
        assert launched == {b"capped": 4, b"other": 8}, (seed, launched)


def test_the_allocation_seed_makes_the_agent_order_reproducible() -> None:
    """The master shuffles the agents of each cycle (Mesos) with a generator seeded from its
    configuration: the same seed and events give the same offers, other seeds other orders."""
    def order(seed: int) -> list[str]:
        core = greedy_cluster(seed, agents=8)
        subscribe(core, b"f", ["*"])
        return [offer.agent_id for offer in offers_to(core.handle(TimerFired(ALLOCATE_BATCH), 1.0), b"f")]

    assert order(3) == order(3)
    orders = {tuple(order(seed)) for seed in range(6)}
    assert len(orders) > 1 and all(sorted(o) == sorted(order(0)) for o in orders)
