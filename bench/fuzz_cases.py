"""The live fuzzer's hostile calls (``bench/fuzz.py --live``): one function per case, each
building the calls of one step of a framework's life from what the life has seen so far (its
framework id, its offers, its tasks, the updates it must acknowledge) and saying what each call
must bring back (``fuzz_wire.Call.expect``).

Expectations follow issue 15: every refused call gets an ERROR (bug 6), ids are printable,
path-safe, at most 1,024 characters and only ever the master's own (bugs 1, 2), strings a
client controls are bounded (bug 3), NaN, infinite and negative timeouts are refused (bug 5).
Calls that carry tasks are answered by an ERROR or by an UPDATE for a task of theirs (Mesos
answers an ACCEPT on a bad offer with TASK_DROPPED/LOST, and one bad task of an ACCEPT with its
TASK_ERROR: bug 8). Where the issue leaves the answer open the expectation is None: only a
crash, a stall or a no-reply elsewhere can fail the run. Case names are ``<call>.<variant>``.

Plain maps, no Tepui code: this is what a client in another language would send.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from fuzz_wire import Call

BIG = 3_000_000  # characters: a 3 MB string fits the 4 MiB message limit
MAX_ID = 1024
FORGED = "FUZZ-FORGED"  # starts a log line only where a newline was written raw into the log
BAD_NUMBERS = [math.nan, math.inf, -math.inf, -1.0, -0.5]
ENGLISH_ROLES = ["eng", "ads"]  # the roles hostile keys are issued for (never "good", never "*")


@dataclass
class Item:
    """One call: a body (wrapped in an envelope by the sender) or a raw frame."""

    call: Call
    body: Any = None
    raw: bytes | None = None
    envelope: dict[str, Any] = field(default_factory=dict)
    batched: bool = False  # travels in the previous item's frame (a batch): no frame of its own


@dataclass
class Life:
    """One hostile framework's life: what it knows, and its random source."""

    rng: random.Random
    seed: int
    principal: str
    http: str  # the master's HTTP host:port, for the relay case
    master_id: str = ""
    fid: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # the FrameworkInfo it subscribed with
    offers: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)  # task id → agent id
    acks: list[tuple[str, str, bytes]] = field(default_factory=list)  # (agent, task, uuid)
    agents: set[str] = field(default_factory=set)
    seen_fids: list[str] = field(default_factory=list)
    removed_fids: list[str] = field(default_factory=list)
    calls: int = 0
    relay_url: str | None = None  # set by the relay case: GET this through the master's proxy

    def cid(self) -> str:
        self.calls += 1
        return f"{self.seed:x}-{self.calls}"

    def item(self, case: str, expect: str | None, body: Any, tasks: tuple[str, ...] = (), **env: Any) -> Item:
        kind = body.get("type") if isinstance(body, dict) else None
        return Item(Call(case, expect, self.cid(), tasks, kind), body=body, envelope=env)

    def next_fid(self, ahead: int = 1) -> str:
        """The id the master will most likely issue next (``<master id>-F<n+1>``)."""
        seqs = [int(f.rsplit("-F", 1)[1]) for f in self.seen_fids if f.rsplit("-F", 1)[-1].isdigit()]
        return f"{self.master_id}-F{max(seqs, default=1) + ahead:04d}"

    def offer(self) -> dict[str, Any] | None:
        if not self.offers:
            return None
        return self.offers[sorted(self.offers)[int(self.rng.random() * len(self.offers))]]

    def some_task(self) -> str | None:
        return sorted(self.tasks)[int(self.rng.random() * len(self.tasks))] if self.tasks else None


# --- values ----------------------------------------------------------------------------------


def hostile_id(life: Life) -> tuple[str, str]:
    """(variant, id): every id a client must not be able to claim."""
    rng = life.rng
    return rng.choice([
        ("id_long", "f" * rng.choice([MAX_ID + 1, 2000, 70_000])),
        ("id_dotdot", ".."),
        ("id_traversal", "../../x"),
        ("id_newline", f"x\n{FORGED} event=forged_id level=error"),
        ("id_ctrl", "a\x00b\x1b[31m\x07"),
        ("id_next", life.next_fid()),
        ("id_future", life.next_fid(rng.choice([2, 3, 10]))),
        ("id_empty", ""),
        ("id_slash", "a/b"),
        ("id_space", " "),
        ("id_taken", f"{life.master_id}-F0001"),  # the well-behaved framework's
        ("id_removed", life.removed_fids[-1] if life.removed_fids else f"{life.master_id}-F0002"),
        ("id_invented", f"{life.master_id}-F9{rng.randrange(10**6):06d}"),
    ])


def forged(life: Life) -> str:
    return life.rng.choice([f"fw\n{FORGED} event=forged level=error", f"fw\r\n{FORGED} x=1", f"\n{FORGED}\n"])


def big(life: Life) -> str:
    return life.rng.choice("xyz") * BIG


def info(life: Life, **changes: Any) -> dict[str, Any]:
    """A valid FrameworkInfo in the hostile key's roles, with ``changes``."""
    base = {"user": "nobody", "name": f"hostile-{life.principal}", "roles": ["eng"],
            "failover_timeout": life.rng.choice([0.0, 0.0, 1.0, 2.0])}
    if life.rng.random() < 0.3:
        base.update(roles=["eng", "ads"], capabilities=["MULTI_ROLE", "PARTITION_AWARE"])
    base.update(changes)
    return base


def subscribe(life: Life, case: str, expect: str | None, **changes: Any) -> Item:
    framework = info(life, **changes)
    life.info = framework
    return life.item(case, expect, {"type": "SUBSCRIBE", "framework_info": framework})


def task(life: Life, offer: dict[str, Any] | None, task_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """A small valid task (``true``): a little of the offer's cpus and mem, taken exactly as
    offered (role, reservation), on the offer's agent."""
    offered = {r.get("name"): r for r in (offer or {}).get("resources", [])}
    resources = [dict(offered.get(name) or {"name": name}, scalar=amount) for name, amount in (("cpus", 0.05),
                                                                                              ("mem", 8.0))]
    doc = {"name": "t", "task_id": task_id or f"t-{life.cid()}", "agent_id": offer["agent_id"] if offer else "x",
           "resources": resources, "command": {"value": "true"}}
    doc.update(changes)
    return doc


BAD_TASKS: list[tuple[str, Callable[[Life, dict[str, Any]], dict[str, Any]]]] = [
    ("empty_id", lambda life, t: {**t, "task_id": ""}),
    ("long_id", lambda life, t: {**t, "task_id": "t" * (MAX_ID + 1)}),
    ("dotdot_id", lambda life, t: {**t, "task_id": ".."}),
    ("newline_id", lambda life, t: {**t, "task_id": "t\nx"}),
    ("nan_cpus", lambda life, t: {**t, "resources": [{"name": "cpus", "scalar": math.nan}]}),
    ("negative_mem", lambda life, t: {**t, "resources": [{"name": "mem", "scalar": -5.0}]}),
    ("too_big", lambda life, t: {**t, "resources": [{"name": "cpus", "scalar": 1e9}]}),
    ("no_command", lambda life, t: {k: v for k, v in t.items() if k != "command"}),
    ("nan_grace", lambda life, t: {**t, "kill_policy": {"grace_period_seconds": math.nan}}),
    ("negative_grace", lambda life, t: {**t, "kill_policy": {"grace_period_seconds": -3.0}}),
    ("inf_grace", lambda life, t: {**t, "kill_policy": {"grace_period_seconds": math.inf}}),
    ("root_user", lambda life, t: {**t, "command": {"value": "true", "user": "root"}}),
    ("other_agent", lambda life, t: {**t, "agent_id": "nope"}),
    ("unknown_resource", lambda life, t: {**t, "resources": [{"name": "unicorns", "scalar": 1.0}]}),
]


# --- SUBSCRIBE: the first step of a life -----------------------------------------------------


def subscribe_step(life: Life) -> list[Item]:
    rng, roll = life.rng, life.rng.random()
    if roll < 0.45:
        return [subscribe(life, "sub.ok", "subscribed")]
    if roll < 0.75:
        variant, fid = hostile_id(life)
        return [subscribe(life, f"sub.{variant}", "error", id=fid)]
    if roll < 0.8:
        return [subscribe(life, "sub.failover_" + _number_name(n := rng.choice(BAD_NUMBERS)), "error",
                          failover_timeout=n)]
    if roll < 0.85:
        return [subscribe(life, "sub.forged_log", None, name=forged(life))]
    if roll < 0.9:
        return [subscribe(life, "sub.role_not_allowed", "error", roles=[rng.choice(["good", "*", "eng/x"])])]
    if roll < 0.94:
        return [subscribe(life, "sub.principal_mismatch", "error", principal="good")]
    if roll < 0.97:
        return [subscribe(life, "sub.bad_roles", "error", roles=[rng.choice(["", "..", "a b", "x" * 300])])]
    life.info = info(life)
    return [life.item("sub.bad_demand", "error", {"type": "SUBSCRIBE", "framework_info": life.info, "demand": [
        {"resources": [{"name": "cpus", "scalar": 1.0}], "count": -1}]})]


def _number_name(value: float) -> str:
    return "nan" if value != value else "inf" if value == math.inf else "-inf" if value == -math.inf else "negative"


def big_subscribe(life: Life) -> list[Item]:
    """A 3 MB string in one FrameworkInfo field (rare: each costs 3 MB on the wire)."""
    rng = life.rng
    where = rng.choice(["name", "user", "hostname", "webui_url", "labels", "principal", "capabilities", "roles"])
    value: Any = big(life)
    if where == "labels":
        value = rng.choice([{"k": value}, {f"k{i}": "v" * 20 for i in range(100_000)}])
    elif where in ("capabilities", "roles"):
        value = [value]
    elif where == "webui_url":
        value = "http://x/" + value
    return [subscribe(life, f"sub.big_{where}", "error", **{where: value})]


# --- the middle of a life: one case per step -------------------------------------------------


def _fid(life: Life) -> str:
    return life.fid or ""


def accept_good(life: Life) -> list[Item]:
    offer = life.offer()
    if offer is None:
        return accept_unknown_offer(life)
    del life.offers[offer["id"]]
    tasks = [task(life, offer) for _ in range(life.rng.choice([1, 1, 2]))]
    for t in tasks:
        life.tasks[t["task_id"]] = offer["agent_id"]
    return [life.item("accept.good", None, {"type": "ACCEPT", "framework_id": _fid(life), "offer_ids": [offer["id"]],
                                            "operations": [{"type": "LAUNCH", "task_infos": tasks}],
                                            "filters": {"refuse_seconds": 0.0}})]


def accept_one_bad_task(life: Life) -> list[Item]:
    offer = life.offer()
    if offer is None:
        return accept_unknown_offer(life)
    del life.offers[offer["id"]]
    variant, spoil = life.rng.choice(BAD_TASKS)
    good = [task(life, offer) for _ in range(life.rng.choice([1, 2]))]
    bad = spoil(life, task(life, offer))
    tasks = good + [bad]
    life.rng.shuffle(tasks)
    for t in good:
        life.tasks[t["task_id"]] = offer["agent_id"]
    return [life.item(f"accept.bad_task_{variant}", "reply",
                      {"type": "ACCEPT", "framework_id": _fid(life), "offer_ids": [offer["id"]],
                       "operations": [{"type": "LAUNCH", "task_infos": tasks}], "filters": {"refuse_seconds": 0.0}},
                      tasks=(bad["task_id"],))]


def accept_unknown_offer(life: Life) -> list[Item]:
    t = task(life, None, agent_id=life.rng.choice(sorted(life.agents) or ["x"]))
    offer_ids = life.rng.choice([[f"{life.master_id}-O9{life.rng.randrange(10**6):06d}"], ["..", "x" * 2000], []])
    return [life.item("accept.unknown_offer" if offer_ids else "accept.no_offer", "reply",
                      {"type": "ACCEPT", "framework_id": _fid(life), "offer_ids": offer_ids,
                       "operations": [{"type": "LAUNCH", "task_infos": [t]}]}, tasks=(t["task_id"],))]


def accept_bad_filters(life: Life) -> list[Item]:
    offer = life.offer()
    if offer is None:
        return decline_unknown_offer(life)
    del life.offers[offer["id"]]
    value = life.rng.choice(BAD_NUMBERS)
    return [life.item(f"accept.refuse_{_number_name(value)}", "error",
                      {"type": "ACCEPT", "framework_id": _fid(life), "offer_ids": [offer["id"]], "operations": [],
                       "filters": {"refuse_seconds": value}})]


def decline(life: Life) -> list[Item]:
    offer = life.offer()
    if offer is None:
        return decline_unknown_offer(life)
    del life.offers[offer["id"]]
    if life.rng.random() < 0.5:
        value = life.rng.choice(BAD_NUMBERS)
        return [life.item(f"decline.refuse_{_number_name(value)}", "error",
                          {"type": "DECLINE", "framework_id": _fid(life), "offer_ids": [offer["id"]],
                           "filters": {"refuse_seconds": value}})]
    return [life.item("decline.ok", None, {"type": "DECLINE", "framework_id": _fid(life), "offer_ids": [offer["id"]],
                                           "filters": {"refuse_seconds": life.rng.choice([0.0, 0.5, 1.0])}})]


def decline_unknown_offer(life: Life) -> list[Item]:
    offer_id = life.rng.choice([f"{life.master_id}-O9{life.rng.randrange(10**6):06d}", "..", "\n", "o" * 1500])
    return [life.item("decline.unknown_offer", "error",
                      {"type": "DECLINE", "framework_id": _fid(life), "offer_ids": [offer_id]})]


def kill(life: Life) -> list[Item]:
    rng = life.rng
    known = life.some_task()
    if known is not None and rng.random() < 0.5:
        value = rng.choice(BAD_NUMBERS)
        return [life.item(f"kill.grace_{_number_name(value)}", "error",
                          {"type": "KILL", "framework_id": _fid(life), "task_id": known,
                           "kill_policy": {"grace_period_seconds": value}})]
    task_id = rng.choice(["t-none", "..", "", "t\nx", "t" * 3000])
    return [life.item("kill.unknown_task", "reply", {"type": "KILL", "framework_id": _fid(life), "task_id": task_id,
                                                     "agent_id": rng.choice([None, "x", *sorted(life.agents)])},
                      tasks=(task_id,))]


def acknowledge(life: Life) -> list[Item]:
    rng = life.rng
    if life.acks and rng.random() < 0.5:
        agent_id, task_id, uuid = life.acks.pop(0)
        return [life.item("ack.ok", None, {"type": "ACKNOWLEDGE", "framework_id": _fid(life), "agent_id": agent_id,
                                           "task_id": task_id, "uuid": uuid})]
    agent_id = rng.choice([*sorted(life.agents), "nope", ""])
    task_id = life.some_task() or "t-none"
    case = "ack.unknown_update" if agent_id in life.agents else "ack.unknown_agent"
    return [life.item(case, "error",
                      {"type": "ACKNOWLEDGE", "framework_id": _fid(life), "agent_id": agent_id,
                       "task_id": rng.choice([task_id, "t-none"]), "uuid": rng.randbytes(16)})]


def reconcile(life: Life) -> list[Item]:
    if life.rng.random() < 0.3:
        return [life.item("reconcile.implicit", None, {"type": "RECONCILE", "framework_id": _fid(life)})]
    ids = [life.rng.choice(["t-none", "..", "t\nx", "r" * 2000]) for _ in range(life.rng.choice([1, 2, 50]))]
    return [life.item("reconcile.unknown_tasks", "reply",
                      {"type": "RECONCILE", "framework_id": _fid(life),
                       "tasks": [{"task_id": t} for t in ids]}, tasks=tuple(ids))]


def message(life: Life) -> list[Item]:
    agent_id = life.rng.choice([*sorted(life.agents), "nope"])
    return [life.item("message.unknown_executor" if agent_id != "nope" else "message.unknown_agent", "error",
                      {"type": "MESSAGE", "framework_id": _fid(life), "agent_id": agent_id,
                       "executor_id": life.rng.choice(["e-none", "..", ""]), "data": life.rng.randbytes(64)})]


def shutdown(life: Life) -> list[Item]:
    agent_id = life.rng.choice([*sorted(life.agents), "nope"])
    return [life.item("shutdown.unknown_executor", "error",
                      {"type": "SHUTDOWN", "framework_id": _fid(life), "agent_id": agent_id, "executor_id": "e-none"})]


def revive_suppress(life: Life) -> list[Item]:
    rng = life.rng
    kind = rng.choice(["REVIVE", "SUPPRESS"])
    own = list(life.info.get("roles") or ["eng"])
    if rng.random() < 0.3:
        foreign = rng.choice([["good"], ["*"], [".."], ["x" * 300], [r for r in ENGLISH_ROLES if r not in own] or ["ops"]])
        return [life.item(f"{kind.lower()}.foreign_role", "error", {"type": kind, "framework_id": _fid(life),
                                                                    "roles": foreign})]
    roles = rng.choice([[], own, own[:1]])
    return [life.item(f"{kind.lower()}.ok", None, {"type": kind, "framework_id": _fid(life), "roles": roles})]


def update_framework(life: Life) -> list[Item]:
    rng, roll = life.rng, life.rng.random()
    current = dict(life.info, id=_fid(life))
    if roll < 0.3:
        return [life.item("update.ok", None, {"type": "UPDATE_FRAMEWORK", "framework_info": dict(
            current, failover_timeout=rng.choice([0.0, 1.0]))})]
    if roll < 0.5:
        value = rng.choice(BAD_NUMBERS)
        return [life.item(f"update.failover_{_number_name(value)}", "error",
                          {"type": "UPDATE_FRAMEWORK", "framework_info": dict(current, failover_timeout=value)})]
    if roll < 0.65:
        return [life.item("update.forged_log", None, {"type": "UPDATE_FRAMEWORK",
                                                      "framework_info": dict(current, name=forged(life))})]
    if roll < 0.8:
        return [life.item("update.role_not_allowed", "error",
                          {"type": "UPDATE_FRAMEWORK", "framework_info": dict(current, roles=["good"])})]
    variant, fid = hostile_id(life)
    return [life.item(f"update.{variant}", "error", {"type": "UPDATE_FRAMEWORK", "framework_info": dict(current, id=fid)})]


def big_update(life: Life) -> list[Item]:
    where = life.rng.choice(["name", "user", "hostname", "webui_url", "labels"])
    value: Any = big(life) if where != "labels" else {"k": big(life)}
    current = dict(life.info, id=_fid(life))
    return [life.item(f"update.big_{where}", "error",
                      {"type": "UPDATE_FRAMEWORK", "framework_info": dict(current, **{where: value})})]


def relay(life: Life) -> list[Item]:
    """A ``webui_url`` that sends the master's framework proxy back into itself: the caller then
    GETs ``/frameworks/<name>/`` (``life.relay_url``) and times it."""
    name = f"relay-{life.principal}-{life.seed:x}"
    target = life.rng.choice([f"http://{life.http}/frameworks/{name}/",
                              f"http://localhost:{life.http.rsplit(':', 1)[1]}/frameworks/{name}/",
                              f"http://{life.http}/frameworks/{name}/frameworks/{name}/"])
    life.info = dict(life.info, name=name, webui_url=target)
    life.relay_url = f"http://{life.http}/frameworks/{name}/loop"
    return [life.item("relay.self", None, {"type": "UPDATE_FRAMEWORK", "framework_info": dict(life.info, id=_fid(life))})]


def demand(life: Life) -> list[Item]:
    rng = life.rng
    if rng.random() < 0.3:
        return [life.item("demand.ok", None, {"type": "DECLARE_DEMAND", "framework_id": _fid(life),
                                              "demand": rng.choice([None, [], [{"resources": [
                                                  {"name": "cpus", "scalar": 0.05}], "count": 3}]])})]
    variant, shape = rng.choice([
        ("nan", {"resources": [{"name": "cpus", "scalar": math.nan}]}),
        ("negative_count", {"resources": [{"name": "cpus", "scalar": 1.0}], "count": -1}),
        ("bad_role", {"resources": [{"name": "cpus", "scalar": 1.0}], "role": ".."}),
        ("bad_resource", {"resources": [{"name": "mem", "type": "MESOS"}]}),
    ])
    return [life.item(f"demand.{variant}", "error", {"type": "DECLARE_DEMAND", "framework_id": _fid(life),
                                                     "demand": [shape]})]


def explain(life: Life) -> list[Item]:
    if life.rng.random() < 0.6:
        return [life.item("explain.ok", "explanation", {"type": "EXPLAIN", "framework_id": _fid(life)})]
    _variant, fid = hostile_id(life)
    return [life.item("explain.other_framework", "error", {"type": "EXPLAIN", "framework_id": fid})]


def wrong_framework(life: Life) -> list[Item]:
    """A call naming a framework that is not this connection's (another's, unknown, hostile)."""
    rng = life.rng
    _variant, fid = hostile_id(life)
    fid = rng.choice([fid, f"{life.master_id}-F0001", "F-none"])
    t = task(life, None)
    body, tasks = rng.choice([
        ({"type": "DECLINE", "framework_id": fid, "offer_ids": sorted(life.offers)[:1] or ["o"]}, ()),
        ({"type": "REVIVE", "framework_id": fid}, ()),
        ({"type": "TEARDOWN", "framework_id": fid}, ()),
        ({"type": "KILL", "framework_id": fid, "task_id": "t"}, ("t",)),
        ({"type": "ACCEPT", "framework_id": fid, "offer_ids": sorted(life.offers)[:1] or ["o"],
          "operations": [{"type": "LAUNCH", "task_infos": [t]}]}, (t["task_id"],)),
    ])
    return [life.item(f"wrong_framework.{body['type'].lower()}", "reply" if tasks else "error", body, tasks=tasks)]


def agent_message(life: Life) -> list[Item]:
    """An agent's message sent with a framework key."""
    rng = life.rng
    agent_id = rng.choice([*sorted(life.agents), "x"])
    body = rng.choice([
        {"type": "REGISTER_AGENT", "agent_info": {"hostname": "evil", "resources": [{"name": "cpus", "scalar": 64.0}]},
         "version": "0.1.0"},
        {"type": "STATUS_UPDATE", "framework_id": _fid(life),
         "status": {"task_id": life.some_task() or "t", "state": "TASK_FINISHED", "uuid": rng.randbytes(16)}},
        {"type": "PONG", "seq": rng.randrange(100)},
        {"type": "UNREGISTER_AGENT", "agent_id": agent_id},
        {"type": "EXECUTOR_TERMINATED", "framework_id": _fid(life), "executor_id": "e"},
    ])
    return [life.item(f"agent_message.{body['type'].lower()}", "error", body)]


def envelope_case(life: Life) -> list[Item]:
    """Call ids of every shape, a foreign protocol version, an unknown envelope field."""
    rng = life.rng
    base = {"type": "EXPLAIN", "framework_id": _fid(life)}
    variant = rng.choice(["call_id_long", "call_id_int", "call_id_empty", "call_id_unicode", "call_id_max",
                          "version", "unknown_field"])
    if variant == "call_id_long":
        item = life.item("envelope.call_id_long", "error", base)
        item.call.call_id = None  # the master cannot echo an id it refuses
        item.envelope["call_id"] = "c" * 129
    elif variant == "call_id_int":
        item = life.item("envelope.call_id_int", "error", base)
        item.call.call_id = None
        item.envelope["call_id"] = 7
    elif variant in ("call_id_empty", "call_id_unicode", "call_id_max"):
        value = {"call_id_empty": "", "call_id_unicode": "é✓\u2028", "call_id_max": "m" * 128}[variant]
        item = life.item(f"envelope.{variant}", "explanation", base)
        item.call.call_id = value
        item.envelope["call_id"] = value
    elif variant == "version":
        item = life.item("envelope.version", "error", base, v=2)
    else:
        item = life.item("envelope.unknown_field", "error", base, surprise=1)
    return [item]


CASES: list[tuple[float, Callable[[Life], list[Item]]]] = [
    (8, accept_good), (8, accept_one_bad_task), (4, accept_unknown_offer), (3, accept_bad_filters),
    (6, decline), (4, decline_unknown_offer), (6, kill), (6, acknowledge), (5, reconcile), (4, message),
    (3, shutdown), (4, revive_suppress), (6, update_framework), (4, demand), (5, explain),
    (6, wrong_framework), (5, agent_message), (5, envelope_case),
]
OFFER_CASES: list[tuple[float, Callable[[Life], list[Item]]]] = [
    (5, accept_one_bad_task), (2, accept_good), (1, accept_bad_filters), (2, decline)]
