#!/usr/bin/env python3
"""One hostile client of the live fuzzer (``bench/fuzz.py --live`` starts N of them): an
authenticated framework that lives whole framework lives — SUBSCRIBE, then 3-20 steps of
ACCEPT/DECLINE/KILL/ACKNOWLEDGE/RECONCILE/MESSAGE/REVIVE/SUPPRESS/UPDATE_FRAMEWORK/EXPLAIN/
DECLARE_DEMAND, then TEARDOWN or a dropped connection — with a hostile mutation at every step
(bench/fuzz_cases.py), plus schema-generated and byte-mutated calls (tests/fuzz_harness.py),
batches, multi-frame messages (on spare keys: the master cuts those connections and refuses
their key for 30 s) and the framework proxy pointed back at the master.

    python bench/fuzz_hostile.py CONFIG.json        # what bench/fuzz_live.py runs

Each life has its own seed (printed with every finding): ``--replay SEED`` in CONFIG (or
``python bench/fuzz.py --live --replay SEED``) lives exactly that life again. Output on stdout,
one JSON object a line: ``progress`` every 2 s, ``tally`` at the end (per case: calls sent,
calls that had to be answered, answered, answered with the call id echoed, with a field named,
not answered, refused SUBSCRIBEs that were accepted, windows timed out). Every window is
journaled (send time, barrier time, life seed, cases) so that a master traceback can be traced
to the lives in flight at its time.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the repo root, for tests.fuzz_harness

from fuzz_cases import (  # noqa: E402
    CASES, OFFER_CASES, Item, Life, big_subscribe, big_update, hostile_id, relay, subscribe, subscribe_step,
)
from fuzz_wire import TERMINAL, Call, Wire, Window, file_frame, pack  # noqa: E402
from tests.fuzz_harness import Maker, mutate  # noqa: E402
from tepui.sdk.protocol.envelope import MasterInbound  # noqa: E402  (the schema Maker draws from)

EXAMPLES = 3  # per case and kind of finding
SPARE_COOLDOWN = 35.0  # seconds before a spare key that sent a multi-frame message is used again


@dataclass
class CaseTally:
    sent: int = 0
    errors: int = 0  # ERRORs that answered calls of the case
    id_errors: int = 0  # ... of calls that carried a call id (so the ERROR could echo it)
    echoed: int = 0  # ... that echoed it
    field_named: int = 0  # ... that named the field at fault
    must: int = 0
    replied: int = 0
    no_reply: int = 0
    accepted: int = 0
    timeouts: int = 0
    examples: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # ERRORs for calls that need not be refused
    unechoed: list[str] = field(default_factory=list)  # ERRORs that did not echo the call's id

    def example(self, text: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)


class Client:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.endpoint = config["endpoint"]
        self.wire = Wire(self.ctx, self.endpoint, config["keys"])
        self.spares = {path: 0.0 for path in config.get("spare_keys", [])}
        self.cases: dict[str, CaseTally] = {}
        self.relays: list[dict[str, Any]] = []
        self.calls = self.lives = self.windows = 0
        self.unattributed: list[str] = []
        self.unattributed_count = 0
        self.id_collisions: list[str] = []
        self.master_id = ""
        self.seen_fids: list[str] = []
        self.removed_fids: list[str] = []
        self.agents: set[str] = set()
        self.journal = open(config["journal"], "a", buffering=1 << 16)
        self.stopping = False
        self.last_relay = -1e9
        self.last_progress = time.monotonic()
        self.call_ids = {"supported": False, "echoed": False}

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> None:
        self.call_ids = self.probe_call_ids()
        self.wire.use_call_ids = self.call_ids["supported"]
        seeds = self.config.get("replay") or []
        if seeds:
            for seed in seeds:
                self.live(int(seed))
            return
        quota, base = int(self.config["count"]), random.Random(f"{self.config['seed']}/{self.config['client']}")
        while self.calls < quota and not self.stopping:
            self.live(base.getrandbits(48))

    def probe_call_ids(self) -> dict[str, bool]:
        """Whether this master takes an envelope ``call_id`` (and echoes it in ERRORs)."""
        self.wire.use_call_ids = True
        frame = pack(self.wire.envelope({"type": "FUZZ_BARRIER_0"}, call_id="probe"))
        for _ in range(3):
            self.wire.send_frame(frame)
            for raw in self.wire.recv_frames(5.0):
                body = msgpack.unpackb(raw, raw=False).get("body", {})
                if body.get("type") == "ERROR":
                    message = str(body.get("message", ""))
                    return {"supported": "FUZZ_BARRIER_0" in message, "echoed": body.get("call_id") == "probe"}
        return {"supported": False, "echoed": False}

    def live(self, seed: int) -> None:
        """One framework's life, from its SUBSCRIBE to its TEARDOWN or dropped connection."""
        self.lives += 1
        life = Life(random.Random(seed), seed, self.config["principal"], self.config["http"],
                    master_id=self.master_id, seen_fids=self.seen_fids, agents=self.agents,
                    removed_fids=self.removed_fids)
        rng = life.rng
        first = big_subscribe(life) if rng.random() < self.config["big_share"] else subscribe_step(life)
        window = self.step(life, first)
        if window is None:
            return
        if life.fid is not None and any(c.accepted and c.case in ("sub.id_next", "sub.id_future") for c in window.calls):
            self.squat_probe(life)
        if life.fid is None:
            if self.step(life, [subscribe(life, "sub.ok", "subscribed")]) is None or life.fid is None:
                return
        if rng.random() < 0.3:
            self.wait_for_offers(life, 0.3)
        for _ in range(rng.randint(3, 20)):
            if self.step(life, self.middle(life)) is None:
                return
            if life.relay_url is not None:
                self.get_relay(life)
        self.end(life)

    def middle(self, life: Life) -> list[Item] | None:
        roll = life.rng.random()
        if roll < self.config["big_share"]:
            return big_update(life)
        if roll < 0.06:
            return self.schema(life)
        if roll < 0.11:
            return self.mutated(life)
        if roll < 0.13:
            return self.raw(life)
        if roll < 0.18:
            return self.batch(life)
        if roll < 0.19 and self.spares:
            return self.multiframe(life)
        if roll < 0.2 and time.monotonic() - self.last_relay > float(self.config["relay_every"]):
            self.last_relay = time.monotonic()
            return relay(life)
        return pick(life)

    def end(self, life: Life) -> None:
        rng, fid = life.rng, life.fid or ""
        roll = rng.random()
        if roll < 0.2:
            self.wire.connect()  # a dropped connection: the master finds out on its next send
            self.tally_only(Call("end.disconnect", None), sent=False)
            return
        items = [life.item("teardown.ok", None, {"type": "TEARDOWN", "framework_id": fid})]
        if roll < 0.3:
            items.append(life.item("teardown.twice", "error", {"type": "TEARDOWN", "framework_id": fid}))
        elif roll < 0.4:
            _variant, other = hostile_id(life)
            items.insert(0, life.item("teardown.unknown", "error", {"type": "TEARDOWN", "framework_id": other}))
        self.step(life, items)
        life.removed_fids.append(fid)
        del life.removed_fids[:-20]

    def wait_for_offers(self, life: Life, seconds: float) -> None:
        """A third of the lives wait a moment for offers, so that the steps that need one (a good
        ACCEPT, one bad task among good ones, a DECLINE with bad filters) get to run."""
        deadline = time.monotonic() + seconds
        window = Window([])
        while not life.offers and time.monotonic() < deadline:
            for frame in self.wire.recv_frames(max(0.0, deadline - time.monotonic())):
                file_frame(frame, window, "-", "-")
            self.absorb(life, window.events)
            window.events.clear()

    # --- special steps ---------------------------------------------------------------------

    def schema(self, life: Life) -> list[Item]:
        """A message of any type the master's endpoint takes, generated from its schema."""
        known = {"framework_id": [life.fid or "F"], "agent_id": sorted(life.agents) or ["x"],
                 "offer_id": sorted(life.offers) or ["o"], "task_id": sorted(life.tasks) or ["t"],
                 "executor_id": ["e", "default"], "role": ["eng", "ads", "good", "*"], "principal": [life.principal],
                 "uuid": [uuid for _a, _t, uuid in life.acks] or [b"u"]}
        data = Maker(life.rng, known).message(MasterInbound, [0, 1, 2**62], [None, "inc"])
        return [Item(Call("schema", None, None), raw=data)]

    def mutated(self, life: Life) -> list[Item]:
        """A valid call's bytes, damaged: an undecodable one must be answered."""
        item = pick(life)[0]
        data = mutate(life.rng, pack(self.doc(item)))  # its call id may survive: an echo still matches
        # A damaged ACCEPT is carried out as far as it reads (master/offering/accept_salvage.py): a task of
        # it may be answered TASK_ERROR instead of the call an ERROR.
        tasks = tuple(str(t.get("task_id")) for op in (item.body or {}).get("operations") or []
                      for t in op.get("task_infos") or [] if isinstance(t, dict))
        expect = None if decodes(data) else "reply" if tasks else "error"
        call = Call("mutated", expect, item.call.call_id, tasks, detail=shown(data))
        return [Item(call, raw=data)]

    def raw(self, life: Life) -> list[Item]:
        data = life.rng.randbytes(life.rng.choice([0, 1, 5, 64, 1000]))
        return [Item(Call("raw", "error" if not decodes(data) else None, None, detail=shown(data)), raw=data)]

    def batch(self, life: Life) -> list[Item]:
        rng = life.rng
        if rng.random() < 0.15:
            variant, frame = rng.choice([("batch.empty", b"\x90"),
                                         ("batch.too_many", b"\xdd\x00\x00\x27\x11" + b"\xc0" * 8)])
            return [Item(Call(variant, "error", None), raw=frame)]
        items = [item for _ in range(rng.choice([2, 3, 5, 10, 30])) for item in pick(life)]
        for item in items:
            item.call.case = "batch/" + item.call.case
        docs = [self.doc(item) for item in items]
        first = items[0]
        first.raw = pack(docs)
        return [first, *[Item(item.call, batched=True) for item in items[1:]]]  # one frame, every call tallied

    def multiframe(self, life: Life) -> list[Item] | None:
        """Several frames in one message, on a spare key (that connection is cut, that key is
        refused for 30 s): afterwards the master must still answer this life's barrier."""
        now = time.monotonic()
        free = [path for path, used in self.spares.items() if now - used > SPARE_COOLDOWN]
        if not free:
            return pick(life)
        path = free[0]
        self.spares[path] = now
        count = life.rng.choice([2, 3, 100, 5000])
        spare = Wire(self.ctx, self.endpoint, path, use_call_ids=False)
        try:
            valid = pack(spare.envelope({"type": "EXPLAIN", "framework_id": "x"}))
            assert spare.sock is not None
            spare.sock.send_multipart([valid] + [life.rng.randbytes(8)] * (count - 1))
            spare.recv_frames(0.2)
        finally:
            spare.close()
        self.tally_only(Call(f"multiframe.{count}", None))
        return []

    def squat_probe(self, life: Life) -> None:
        """After the master accepted an id it had not issued: does it now issue that id to a
        newcomer too? (Issue 15 bug 2: two frameworks then share one id.)"""
        probe = Wire(self.ctx, self.endpoint, self.config["keys"], use_call_ids=self.wire.use_call_ids)
        try:
            call = Call("sub.id_next.probe", "subscribed", life.cid(), kind="SUBSCRIBE")
            frame = pack(probe.envelope({"type": "SUBSCRIBE", "framework_info": {
                "user": "nobody", "name": "probe", "roles": ["eng"]}}, call.call_id))
            window = probe.exchange([frame], [call], float(self.config["window_timeout"]))
            self.account(life, window)
            issued = next((e.get("framework_id") for e in window.events if e.get("type") == "SUBSCRIBED"), None)
            if issued is not None:
                if issued == life.fid:
                    self.id_collisions.append(f"life {life.seed} squatted {life.fid}; the master then issued it "
                                              "to a newcomer too")
                teardown = Call("sub.id_next.probe", None, life.cid(), kind="TEARDOWN")
                self.account(life, probe.exchange([pack(probe.envelope({"type": "TEARDOWN", "framework_id": issued},
                                                                       teardown.call_id))], [teardown], 10.0))
        finally:
            probe.close()

    def get_relay(self, life: Life) -> None:
        """GETs the framework proxy path whose ``webui_url`` points back into the master."""
        url, life.relay_url = life.relay_url, None
        assert url is not None
        started, outcome = time.monotonic(), ""
        try:
            with urllib.request.urlopen(url, timeout=float(self.config["relay_timeout"])) as answer:
                outcome = f"http {answer.status}"
        except urllib.error.HTTPError as exc:
            text = exc.read(4096).decode(errors="replace")
            try:
                outcome = f"http {exc.code} {json.loads(text).get('reason')}"
            except (ValueError, AttributeError):
                outcome = f"http {exc.code}: {text[:200]}"
        except (OSError, ValueError) as exc:
            outcome = f"failed: {exc!r}"[:400]
        self.relays.append({"life": life.seed, "url": url, "outcome": outcome,
                            "seconds": round(time.monotonic() - started, 3), "at": time.time()})

    # --- sending and accounting ------------------------------------------------------------

    def doc(self, item: Item) -> dict[str, Any]:
        """The envelope of an item; the item's own envelope fields (a bad ``call_id``, ``v``)
        win over the wire's."""
        doc = self.wire.envelope(item.body, item.call.call_id)
        doc.update(item.envelope)
        return doc

    def step(self, life: Life, items: list[Item] | None) -> Window | None:
        """Sends one step's calls and a barrier; None when the life cannot go on."""
        if not items:
            return Window([])
        frames: list[bytes] = []
        for item in items:
            if item.batched:
                continue
            if item.raw is not None:
                frames.append(item.raw)
            else:
                frames.append(pack(self.doc(item)))
        started = time.time()
        window = self.wire.exchange(frames, [item.call for item in items], float(self.config["window_timeout"]))
        self.journal.write(f"{started:.3f} {time.time():.3f} {life.seed} "
                           f"{','.join(sorted({i.call.case for i in items}))}\n")
        self.account(life, window)
        if self.config.get("trace"):  # --replay: every window, to the client's log
            print(json.dumps({"life": life.seed, "seconds": round(window.seconds, 4), "timed_out": window.timed_out,
                              "calls": [{k: v for k, v in asdict(c).items() if v not in (None, "", (), False)}
                                        for c in window.calls],
                              "events": [e.get("type") for e in window.events],
                              "unattributed": window.unattributed_errors}, default=repr), file=sys.stderr)
        if window.timed_out:
            self.wire.connect()
            return None
        return window

    def account(self, life: Life, window: Window) -> None:
        self.windows += 1
        for call in window.calls:
            tally = self.cases.setdefault(call.case, CaseTally())
            tally.sent += call.envelopes
            self.calls += call.envelopes
            if window.timed_out:
                tally.timeouts += 1
                tally.example(f"life {life.seed}: no barrier within {self.config['window_timeout']} s")
                continue
            tally.errors += bool(call.error)
            tally.echoed += call.echoed
            tally.field_named += call.field_named
            if call.error and call.call_id is not None:
                tally.id_errors += 1
                if not call.echoed and len(tally.unechoed) < 2:
                    tally.unechoed.append(f"life {life.seed}: {call.error}")
            if call.error and not call.must_answer and len(tally.refusals) < 2:
                tally.refusals.append(f"life {life.seed}: {call.error}")
            if call.accepted:
                tally.accepted += 1
                tally.example(f"life {life.seed}: accepted (SUBSCRIBED) though it had to be refused")
            if not call.must_answer:
                continue
            tally.must += 1
            if call.replied:
                tally.replied += 1
            else:
                tally.no_reply += 1
                tally.example(f"life {life.seed}: no answer (call_id {call.call_id}){call.detail}")
        self.unattributed_count += len(window.unattributed_errors)
        for text in window.unattributed_errors:
            if len(self.unattributed) < 5:
                self.unattributed.append(text)
        self.absorb(life, window.events)
        self.progress()

    def tally_only(self, call: Call, sent: bool = True) -> None:
        """A step with no barrier of its own: a multi-frame message, a dropped connection (which
        sends nothing: counted, but not as a call)."""
        tally = self.cases.setdefault(call.case, CaseTally())
        tally.sent += 1
        self.calls += sent

    def absorb(self, life: Life, events: list[dict[str, Any]]) -> None:
        """What the life learns from the master's events: its id, offers, tasks, updates."""
        for event in events:
            kind = event.get("type")
            if kind == "SUBSCRIBED":
                life.fid = str(event.get("framework_id"))
                self.seen_fids.append(life.fid)
                del self.seen_fids[:-50]
                self.master_id = life.master_id = str((event.get("master_info") or {}).get("id", life.master_id))
            elif kind == "OFFERS":
                for offer in event.get("offers") or []:
                    life.offers[offer["id"]] = offer
                    self.agents.add(offer["agent_id"])
            elif kind == "RESCIND":
                life.offers.pop(event.get("offer_id"), None)
            elif kind == "UPDATE":
                status = event.get("status") or {}
                if status.get("uuid") and status.get("agent_id"):
                    life.acks.append((status["agent_id"], status["task_id"], status["uuid"]))
                if status.get("state") in TERMINAL:
                    life.tasks.pop(status.get("task_id"), None)

    def progress(self, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last_progress >= 2.0:
            self.last_progress = now
            self.journal.flush()
            emit({"event": "progress", "client": self.config["client"], "calls": self.calls, "lives": self.lives,
                  "no_reply": sum(t.no_reply for t in self.cases.values()),
                  "timeouts": sum(t.timeouts for t in self.cases.values())})

    def report(self) -> dict[str, Any]:
        return {"event": "tally", "client": self.config["client"], "calls": self.calls, "lives": self.lives,
                "windows": self.windows, "call_ids": self.call_ids,
                "cases": {name: asdict(t) for name, t in sorted(self.cases.items())}, "relays": self.relays,
                "unattributed": self.unattributed_count, "unattributed_examples": self.unattributed,
                "id_collisions": self.id_collisions}

    def close(self) -> None:
        self.journal.close()
        self.wire.close()
        self.ctx.term()


def pick(life: Life) -> list[Item]:
    """One step of an ordinary case, by the catalogue's weights; a life holding an offer uses
    it half the time (offers are scarce: the open agent is offered to one life at a time)."""
    cases = OFFER_CASES if life.offers and life.rng.random() < 0.5 else CASES
    make = life.rng.choices(cases, weights=[weight for weight, _make in cases])[0][1]
    return make(life)


def decodes(data: bytes) -> bool:
    """Whether ``data`` is one whole MessagePack value (the master may still refuse it)."""
    try:
        msgpack.unpackb(data, raw=False, strict_map_key=False)
        return True
    except Exception:  # noqa: BLE001 - any failure is "does not decode"
        return False


def shown(data: bytes) -> str:
    """A frame as a silent call's example shows it: its size and its first bytes in hex."""
    return f"; frame of {len(data)} bytes: {data[:400].hex()}"


def emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc), flush=True)


class Stopped(Exception):
    """SIGTERM or SIGINT: stop now and report what was counted."""


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    client = Client(config)

    def stop(_signum: int, _frame: Any) -> None:
        client.stopping = True
        raise Stopped  # at once: a window may be waiting 20 s for a master that is gone

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        client.run()
    except Stopped:
        pass
    finally:
        client.progress(final=True)
        emit(client.report())
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
