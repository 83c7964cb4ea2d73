"""Fuzzing harness for the master's and the agent's inbound paths (RELIABILITY scenario 32):
bytes → the endpoint's codec → the pure core's ``handle`` → its timers, exactly the path the
shells run, minus the sockets (so tens of thousands of messages take seconds).

Two kinds of input, both from one ``random.Random`` (hypothesis drives it in the tests through
``st.randoms()``; ``bench/fuzz.py`` seeds it for long runs):

* bytes: random, or a valid message mutated (bit flips, truncation, splices, repeats);
* structurally valid but adversarial messages, generated from the protocol's msgspec schema:
  every field of every message type, filled with values a hostile or buggy peer would send —
  the ids the core really knows (so handlers get past their lookups), ids that are empty, ``..``,
  300 characters or full of control bytes, NaN and infinite floats, negative and huge integers,
  unknown enum values, and now and then a value of the wrong type.

The contract checked (:meth:`Target.feed`, :meth:`Target.check`): decoding raises nothing but
``ProtocolError``; ``handle`` raises nothing at all; afterwards the core is consistent (the
allocator's books balance, every task and offer points at something that exists) and still
serves a well-formed request from a newcomer.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import random
import traceback
import typing
from dataclasses import dataclass, field
from typing import Any

import msgpack
import msgspec

from tepui.agent import events as ae
from tepui.agent.core import AgentConfig, AgentCore
from tepui.master.core import ALLOCATE_NOW, MasterConfig, MasterCore
from tepui.master.events import Received, Send
from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.effects import CancelTimer, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import AgentExecutorInbound, AgentInbound, MasterInbound
from tepui.sdk.protocol.values import AgentInfo, CommandInfo, FrameworkInfo, MasterInfo, TaskInfo, TaskState, TaskStatus
from tepui.sdk.resources import Resources

NASTY_STRINGS = ["", ".", "..", "a/b", "/", "\x00", "a\nb", " ", "x" * 300, "é✓", "*", "-", "1" * 5000]
NASTY_INTS = [0, 1, -1, 2, 255, 2**31, 2**32 + 1, 2**53 + 1, 2**63 - 1, -(2**63)]
NASTY_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.001, 1e9, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf]
RESOURCE_NAMES = ["cpus", "mem", "disk", "ports", "gpus", "disks", ""]


@dataclass
class Crash:
    where: str  # "decode" | "handle" | "timers" | "check"
    message: str  # what was fed (repr, shortened)
    error: str  # the traceback


# --- generating messages from the schema --------------------------------------------------------


class Maker:
    """Builds msgpack-ready dicts for any message type of a union, from the msgspec schema."""

    def __init__(self, rng: random.Random, known: dict[str, list[Any]]) -> None:
        self.rng = rng
        self.known = known

    def _pick(self, kind: str, fallback: list[Any]) -> Any:
        pool = self.known.get(kind) or fallback
        return self.rng.choice(pool)

    def string(self, name: str) -> str:
        rng = self.rng
        roll = rng.random()
        lowered = name.lower()
        for kind in ("framework_id", "agent_id", "offer_id", "task_id", "executor_id", "role", "principal"):
            if kind.split("_")[0] in lowered and roll < 0.7:
                return str(self._pick(kind, ["x"]))
        if lowered == "name" and roll < 0.5:
            return rng.choice(RESOURCE_NAMES)
        if lowered == "type" and roll < 0.5:
            return rng.choice(["SCALAR", "RANGES", "SET", "DOCKER", "MESOS", "DEFAULT", "CUSTOM", "HTTP", "TCP"])
        if roll < 0.85:
            return rng.choice(NASTY_STRINGS)
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x3000)]))
                       for _ in range(rng.randrange(0, 12)))

    def value(self, info: Any, name: str = "", depth: int = 0) -> Any:
        rng = self.rng
        if rng.random() < 0.02:  # the wrong type now and then: the decoder must say so
            return rng.choice([None, "oops", -1, 1.5, b"\x00", [], {}, True])
        if isinstance(info, msgspec.inspect.StructType):
            return self.struct(info, depth)
        if isinstance(info, msgspec.inspect.UnionType):
            return self.value(rng.choice(info.types), name, depth)
        if isinstance(info, msgspec.inspect.NoneType):
            return None
        if isinstance(info, msgspec.inspect.BoolType):
            return rng.random() < 0.5
        if isinstance(info, msgspec.inspect.IntType):
            return rng.choice(NASTY_INTS) if rng.random() < 0.6 else rng.randrange(-5, 100)
        if isinstance(info, msgspec.inspect.FloatType):
            return rng.choice(NASTY_FLOATS) if rng.random() < 0.6 else rng.uniform(-10, 5000)
        if isinstance(info, msgspec.inspect.StrType):
            return self.string(name)
        if isinstance(info, msgspec.inspect.BytesType):
            if "uuid" in name and rng.random() < 0.7:
                return bytes(self._pick("uuid", [b"u"]))
            return rng.choice([b"", bytes(16), rng.randbytes(rng.randrange(0, 40))])
        if isinstance(info, msgspec.inspect.EnumType):
            members = [m.value for m in typing.cast(type[enum.Enum], info.cls)]
            return rng.choice(members) if rng.random() < 0.95 else "TASK_NOT_A_STATE"
        if isinstance(info, msgspec.inspect.ListType):
            count = 0 if depth > 4 else rng.choice([0, 1, 1, 2, 3, 40])
            return [self.value(info.item_type, name.rstrip("s"), depth + 1) for _ in range(count)]
        if isinstance(info, msgspec.inspect.DictType):
            count = 0 if depth > 4 else rng.choice([0, 1, 2, 3])
            out: dict[Any, Any] = {}
            for _ in range(count):
                key = self.value(info.key_type, "key", depth + 1)
                out[key if isinstance(key, (str, int, float, bytes, bool, type(None))) else "k"] = \
                    self.value(info.value_type, name, depth + 1)
            return out
        return None  # a kind the schema does not use today: None is as hostile as anything

    def struct(self, info: msgspec.inspect.StructType, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if info.tag_field is not None:
            out[info.tag_field] = info.tag if self.rng.random() < 0.99 else "NOT_A_MESSAGE"
        for f in info.fields:
            if not f.required and self.rng.random() < 0.4:
                continue  # the default
            out[f.encode_name] = self.value(f.type, f.name, depth + 1)
        return out

    def message(self, union: Any, epochs: list[int], incarnations: list[str | None]) -> bytes:
        member = self.rng.choice(typing.get_args(union))
        body = self.struct(msgspec.inspect.type_info(member), 0)
        doc: dict[str, Any] = {"v": 1 if self.rng.random() < 0.98 else 2, "id": self.rng.randrange(0, 2**40),
                               "body": body, "epoch": self.rng.choice(epochs)}
        incarnation = self.rng.choice(incarnations)
        if incarnation is not None:
            doc["incarnation"] = incarnation
        return bytes(msgpack.packb(doc, use_bin_type=True))


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A valid message, damaged the ways a wire or a buggy peer damages bytes."""
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        roll = rng.random()
        if roll < 0.35 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif roll < 0.5 and buf:
            buf[rng.randrange(len(buf))] = rng.choice([0xC0, 0xC1, 0xDD, 0xDF, 0xDB, 0xC6, 0xFF, 0x91, 0x81])
        elif roll < 0.65:
            del buf[rng.randrange(len(buf) + 1):]
        elif roll < 0.8:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randrange(1, 9))
        elif roll < 0.9:
            buf += data[: rng.randrange(len(data) + 1)]
        else:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.choice([b"\xdd\xff\xff\xff\xff", b"\x91" * 200, b"\xdb\x7f\xff\xff\xff"])
    return bytes(buf)


def raw_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 5, 16, 64, 300]))


# --- the targets --------------------------------------------------------------------------------


class Target:
    """What both targets share: a fake clock, timers that fire in order, crash collection."""

    union: Any
    name: str
    _shared: dict[type, Target] = {}

    @classmethod
    def shared(cls) -> Target:
        """One warm target per class, for inputs that rarely get past the decoder (raw bytes)."""
        if cls not in Target._shared:
            Target._shared[cls] = cls()
        return Target._shared[cls]

    def __init__(self) -> None:
        self.now = 0.0
        self.codec: Codec[Any] = Codec(self.union)
        self._timers: list[tuple[float, int, Any]] = []
        self._live: dict[Any, int] = {}
        self._seq = itertools.count()
        self.samples: list[bytes] = []
        self.decoded = self.rejected = 0

    # timers, as the shells keep them: scheduling a key again replaces the earlier one
    def _track(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, ScheduleTimer):
                seq = next(self._seq)
                self._live[effect.key] = seq
                heapq.heappush(self._timers, (effect.at, seq, effect.key))
            elif isinstance(effect, CancelTimer):
                self._live.pop(effect.key, None)

    def advance(self, seconds: float, limit: int = 200) -> None:
        """Fires the timers due within ``seconds`` (at most ``limit``, so a timer that reschedules
        itself at once cannot loop forever)."""
        until = self.now + seconds
        fired = 0
        while self._timers and self._timers[0][0] <= until and fired < limit:
            at, seq, key = heapq.heappop(self._timers)
            if self._live.get(key) != seq:
                continue
            del self._live[key]
            self.now = max(self.now, at)
            self._after(self.handle(TimerFired(key)))
            fired += 1
        self.now = until

    def handle(self, event: Any) -> list[Any]:
        raise NotImplementedError

    def _after(self, effects: list[Any]) -> None:
        self._track(effects)

    def deliver(self, data: bytes, channel: int) -> None:
        raise NotImplementedError

    def feed(self, data: bytes, channel: int = 0) -> Crash | None:
        """One message through decode and handle; a Crash when anything but ProtocolError escapes."""
        try:
            self.deliver(data, channel)
        except ProtocolError:
            self.rejected += 1
        except Exception:  # noqa: BLE001 - that is what we are looking for
            return Crash("handle", repr(data[:300]), traceback.format_exc())
        return None

    def settle(self) -> Crash | None:
        try:
            self.advance(30.0)
        except Exception:  # noqa: BLE001
            return Crash("timers", "timers after the messages", traceback.format_exc())
        return None

    def check(self) -> Crash | None:
        try:
            self.invariants()
        except Exception:  # noqa: BLE001
            return Crash("check", "invariants after the messages", traceback.format_exc())
        return None

    def invariants(self) -> None:
        raise NotImplementedError

    def generate(self, rng: random.Random) -> tuple[bytes, int]:
        raise NotImplementedError


FW_PEER, AGENT_PEER, STRANGER = b"fw-peer", b"agent-peer", b"stranger"
TASK_RESOURCES = Resources.of(cpus=1, mem=128)


class MasterTarget(Target):
    """A master with one agent, one framework, outstanding offers and a running task."""

    union = MasterInbound
    name = "master"
    PEERS = [FW_PEER, AGENT_PEER, STRANGER, b"fw-2", b""]

    def __init__(self) -> None:
        super().__init__()
        self.core = MasterCore(MasterConfig(master_id="m", offer_timeout=5.0))
        self._track(self.core.start(0.0))
        info = AgentInfo(hostname="a1", resources=Resources.parse("cpus:4;mem:4096;ports:[31000-31010]").to_wire())
        self._send(AGENT_PEER, am.RegisterAgent(info, "0.1.0", boot_id="b"), incarnation="inc-1")
        self._send(FW_PEER, sm.Subscribe(FrameworkInfo(user="u", name="fw", roles=["*", "eng"],
                                                       capabilities=["PARTITION_AWARE", "MULTI_ROLE"])))
        offers = self._offers()
        task = TaskInfo(name="t1", task_id="t1", agent_id="m-S0001", resources=TASK_RESOURCES.to_wire(),
                        command=CommandInfo(value="sleep 1"))
        if offers:
            self._send(FW_PEER, sm.Accept("m-F0001", [offers[0]], [sm.Launch([task])]))
        self._send(AGENT_PEER, am.StatusUpdate("m-F0001", TaskStatus("t1", TaskState.RUNNING, uuid=b"u-1",
                                                                      agent_id="m-S0001")), incarnation="inc-1")
        self._offers()
        self.samples = [self.codec.encode(envelope(body, 1, 1)) for body in self._sample_bodies()]

    def _send(self, peer: bytes, body: Any, incarnation: str | None = None) -> list[Any]:
        effects = self.handle(Received(peer, body, 1, incarnation))
        self._after(effects)
        return effects

    def _offers(self) -> list[str]:
        effects = self.handle(TimerFired(ALLOCATE_NOW))
        self._after(effects)
        return [o.id for e in effects if isinstance(e, Send) and isinstance(e.body, sm.Offers) for o in e.body.offers]

    def _sample_bodies(self) -> list[Any]:
        return [sm.Decline("m-F0001", list(self.core.offers)), sm.Kill("m-F0001", "t1", "m-S0001"),
                sm.Reconcile("m-F0001", []), am.Pong(1), sm.Revive("m-F0001", ["eng"]),
                sm.Acknowledge("m-F0001", "m-S0001", "t1", b"u-1"), sm.Explain("m-F0001")]

    def handle(self, event: Any) -> list[Any]:
        return self.core.handle(event, self.now)

    def known(self) -> dict[str, list[Any]]:
        core = self.core
        return {
            "framework_id": list(core.frameworks) + ["m-F0002"],
            "agent_id": list(core.agents) + ["m-S0002"],
            "offer_id": list(core.offers) + ["m-O0001"],
            "task_id": [t for f in core.frameworks.values() for t in f.tasks] + ["t1", "t2"],
            "executor_id": ["e1", "default"],
            "role": ["*", "eng", "ads"],
            "principal": ["p", ""],
            "uuid": [b"u-1", b"u-2"],
        }

    def generate(self, rng: random.Random) -> tuple[bytes, int]:
        roll = rng.random()
        if roll < 0.1:
            data = raw_bytes(rng)
        elif roll < 0.3:
            data = mutate(rng, rng.choice(self.samples))
        else:
            data = Maker(rng, self.known()).message(MasterInbound, [0, 1, 1, 1, 2, 2**62], [None, "inc-1", "inc-x"])
        return data, rng.randrange(len(self.PEERS))

    def deliver(self, data: bytes, channel: int) -> None:
        env = self.codec.decode(data)
        self.decoded += 1
        self.now += 0.01
        self._after(self.handle(Received(self.PEERS[channel % len(self.PEERS)], env.body, env.epoch,
                                         env.incarnation)))

    def invariants(self) -> None:
        core, allocator = self.core, self.core.allocator
        for agent_id, agent in allocator.agents.items():
            held = Resources()
            for resources in agent.allocated.values():
                held = held + resources
            assert agent.available + held == agent.total, (agent_id, agent.available, held, agent.total)
            for _key, amount in agent.available:
                assert not isinstance(amount, int) or amount >= 0, (agent_id, agent.available)
        for offer_id, offer in core.offers.items():
            assert offer.agent_id in core.agents and offer.framework_id in core.frameworks, offer_id
        for agent in core.agents.values():
            for (framework_id, task_id), task in agent.tasks.items():
                assert task.agent_id == agent.agent_id and task.task_id == task_id, (framework_id, task_id)
        # still serving: a newcomer framework subscribes, a newcomer agent registers
        peer = b"newcomer-%d" % next(self._seq)
        effects = self.handle(Received(peer, sm.Subscribe(FrameworkInfo(user="u", name="late")), self.core.config.epoch))
        self._after(effects)
        assert any(isinstance(e, Send) and e.peer == peer and isinstance(e.body, sm.Subscribed) for e in effects), effects
        agent_peer = b"agent-newcomer-%d" % next(self._seq)
        info = AgentInfo(hostname=f"late-{next(self._seq)}", resources=Resources.of(cpus=1, mem=64).to_wire())
        effects = self.handle(Received(agent_peer, am.RegisterAgent(info, "0.1.0"), self.core.config.epoch))
        self._after(effects)
        assert any(isinstance(e, Send) and e.peer == agent_peer and isinstance(e.body, am.AgentRegistered)
                   for e in effects), effects


MASTER_INFO = MasterInfo(id="m", address="127.0.0.1:5050", hostname="m", version="0.1.0", epoch=1)


class AgentTarget(Target):
    """A registered agent running one task with an update awaiting its ack; channel 0 is the
    master's link, channel 1 the executors' socket."""

    union = AgentInbound
    name = "agent"

    def __init__(self) -> None:
        super().__init__()
        uuids = itertools.count(1)
        self.core = AgentCore(AgentConfig(hostname="a1", resources=Resources.parse("cpus:4;mem:4096;gpus:1"),
                                          work_dir="/w", gpu_ids=(0,)), lambda: f"u-{next(uuids)}".encode())
        self.executor_codec: Codec[Any] = Codec(AgentExecutorInbound)
        self.pids = itertools.count(1000)
        self._after(self.handle(ae.Start()))
        self._after(self.handle(ae.Received(am.AgentRegistered("S1", MASTER_INFO, 15.0), 1)))
        task = TaskInfo(name="t1", task_id="t1", agent_id="S1", resources=TASK_RESOURCES.to_wire(),
                        command=CommandInfo(value="sleep 1"))
        self._after(self.handle(ae.Received(am.RunTask(FrameworkInfo(user="u", name="fw", id="F1"), task), 1)))
        self.samples = [self.codec.encode(envelope(body, 1, 1)) for body in (
            am.Ping(1), am.KillTask("F1", "t1"), am.StatusUpdateAck("F1", "t1", b"u-1"), am.ShutdownFramework("F1"),
            am.RunTask(FrameworkInfo(user="u", name="fw", id="F1"), task))]

    def handle(self, event: Any) -> list[Any]:
        return self.core.handle(event, self.now)

    def _after(self, effects: list[Any]) -> None:
        """Plays the containerizer: launches spawn, signals end the process."""
        self._track(effects)
        follow: list[Any] = []
        for effect in effects:
            if isinstance(effect, (ae.LaunchProcess, ae.LaunchContainer)):
                follow.append(ae.TaskSpawned(effect.framework_id, effect.task_id, next(self.pids)))
            elif isinstance(effect, ae.SignalProcess):
                follow.append(ae.TaskExited(effect.framework_id, effect.task_id, None, 15))
            elif isinstance(effect, ae.FetchURIs):
                follow.append(ae.FetchSucceeded(effect.framework_id, effect.task_id))
        for event in follow:
            self._after(self.handle(event))

    def known(self) -> dict[str, list[Any]]:
        return {
            "framework_id": ["F1", "F2"],
            "agent_id": ["S1", "S2"],
            "task_id": [tid for (_fid, tid) in self.core.tasks] + ["t1", "t2"],
            "executor_id": ["e1", "default"],
            "offer_id": ["o1"],
            "role": ["*"],
            "principal": ["p"],
            "uuid": [b"u-1", b"u-2", b"u-3"],
        }

    def generate(self, rng: random.Random) -> tuple[bytes, int]:
        roll = rng.random()
        channel = 1 if rng.random() < 0.25 else 0
        union = AgentExecutorInbound if channel else AgentInbound
        if roll < 0.1:
            data = raw_bytes(rng)
        elif roll < 0.3 and not channel:
            data = mutate(rng, rng.choice(self.samples))
        else:
            data = Maker(rng, self.known()).message(union, [0, 1, 1, 1, 2, 2**62], [None])
        return data, channel

    def deliver(self, data: bytes, channel: int) -> None:
        self.now += 0.01
        if channel:
            env = self.executor_codec.decode(data)
            self.decoded += 1
            self._after(self.handle(ae.ExecutorReceived(b"executor-%d" % (channel % 3), env.body)))
        else:
            env = self.codec.decode(data)
            self.decoded += 1
            self._after(self.handle(ae.Received(env.body, env.epoch)))

    def invariants(self) -> None:
        core = self.core
        for (framework_id, task_id), record in core.tasks.items():
            assert record.framework_id == framework_id and record.info.task_id == task_id, (framework_id, task_id)
        # still serving: the current master's ping is answered
        epoch = max(core.master_epoch, 1)
        effects = self.handle(ae.Received(am.Ping(424242), epoch))
        self._after(effects)
        if core.registered and not core.stopping:
            assert any(isinstance(e, ae.SendToMaster) and isinstance(e.body, am.Pong) for e in effects), effects


TARGETS: dict[str, type[Target]] = {"master": MasterTarget, "agent": AgentTarget}


@dataclass
class Tally:
    messages: int = 0
    decoded: int = 0
    rejected: int = 0
    crashes: list[Crash] = field(default_factory=list)


def run_session(target_cls: type[Target], rng: random.Random, messages: int, tally: Tally) -> None:
    """A fresh target fed ``messages`` generated messages, then its timers, then the checks."""
    target = target_cls()
    for _ in range(messages):
        data, channel = target.generate(rng)
        tally.messages += 1
        crash = target.feed(data, channel)
        if crash is not None:
            tally.crashes.append(crash)
            return  # the core's state is suspect after a crash: start afresh
    for step in (target.settle, target.check):
        crash = step()
        if crash is not None:
            tally.crashes.append(crash)
            return
    tally.decoded += target.decoded
    tally.rejected += target.rejected
