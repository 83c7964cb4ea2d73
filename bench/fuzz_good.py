"""The well-behaved framework of the live fuzzer (``bench/fuzz.py --live``): while hostile
clients attack the master, it keeps launching short tasks (``sleep 0.3``) on the agent reserved for
its role and must keep being served. It is a thread of the fuzzer's own process, on plain
pyzmq and msgpack (bench/fuzz_wire.py), so that its progress is read without any plumbing.

What it measures: tasks finished (the run fails when none finishes for ``stall_seconds``: a
stall), task ends other than FINISHED, every ERROR the master sent it (a well-behaved framework
should get none), and the master's answer time to an EXPLAIN sent every second and to a
newcomer's SUBSCRIBE every 10 s — the liveness probes (one unanswered for 10 s counts as the
master being unresponsive).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import msgpack
import zmq

from fuzz_wire import TERMINAL, load_keys, pack

UNRESPONSIVE = 10.0  # seconds an EXPLAIN (or a newcomer's SUBSCRIBE) may wait for its answer
NEWCOMER_EVERY = 10.0  # seconds between newcomer SUBSCRIBEs


class GoodFramework(threading.Thread):
    def __init__(self, endpoint: str, key_dir: str, role: str = "good", max_inflight: int = 4) -> None:
        super().__init__(name="good-framework", daemon=True)
        self.endpoint, self.key_dir, self.role, self.max_inflight = endpoint, key_dir, role, max_inflight
        self.halt = threading.Event()
        self.fid: str | None = None
        self.inflight: set[str] = set()
        self.launched = self.finished = 0
        self.ends: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.error_count = 0
        self.last_finish = time.monotonic()
        self.explain_sent: float | None = None
        self.explain_ms: list[float] = []
        self.unresponsive_max = 0.0  # the longest an EXPLAIN waited (seconds)
        self.newcomer_ms: list[float] = []  # SUBSCRIBE → SUBSCRIBED of a newcomer, every NEWCOMER_EVERY s
        self.newcomers_unanswered = 0
        self._newcomer: Any = None
        self._newcomer_sent = 0.0
        self._seq = 0
        self._msg_id = 0
        self._epoch = 0

    # --- the loop (its own thread and ZeroMQ context) ---------------------------------------

    def run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = load_keys(self.key_dir)
        sock.linger = 0
        sock.connect(self.endpoint)
        self.sock = sock
        subscribed_asked = next_explain = next_newcomer = 0.0
        try:
            while not self.halt.is_set():
                now = time.monotonic()
                if self.fid is not None and self._newcomer is None and now >= next_newcomer:
                    next_newcomer = now + NEWCOMER_EVERY
                    self._newcomer_subscribe(ctx)
                if self._newcomer is not None:
                    self._newcomer_check(now)
                if self.fid is None and now - subscribed_asked > 5.0:
                    subscribed_asked = now
                    self._send({"type": "SUBSCRIBE", "framework_info": {
                        "user": "nobody", "name": "fuzz-good", "roles": [self.role], "failover_timeout": 60.0,
                        "capabilities": ["PARTITION_AWARE"]}})
                if self.fid is not None and now >= next_explain:
                    next_explain = now + 1.0
                    if self.explain_sent is None:
                        self.explain_sent = now
                        self._send({"type": "EXPLAIN", "framework_id": self.fid})
                if self.explain_sent is not None:
                    self.unresponsive_max = max(self.unresponsive_max, now - self.explain_sent)
                if sock.poll(100):
                    while True:
                        try:
                            frame = sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_frame(frame)
            if self.fid is not None:
                self._send({"type": "TEARDOWN", "framework_id": self.fid})
                time.sleep(0.2)
        finally:
            if self._newcomer is not None:
                self._newcomer.close(0)
            sock.close(0)
            ctx.term()

    def _newcomer_subscribe(self, ctx: zmq.Context[Any]) -> None:
        """A new framework's first SUBSCRIBE on a connection of its own (offers suppressed, so
        it takes nothing from the well-behaved framework): the master must keep admitting."""
        newcomer = ctx.socket(zmq.DEALER)
        newcomer.curve_publickey, newcomer.curve_secretkey, newcomer.curve_serverkey = load_keys(self.key_dir)
        newcomer.linger = 0
        newcomer.connect(self.endpoint)
        newcomer.send(pack({"v": 1, "id": 1, "epoch": self._epoch, "body": {
            "type": "SUBSCRIBE", "framework_info": {"user": "nobody", "name": "fuzz-newcomer", "roles": [self.role]},
            "suppressed_roles": [self.role]}}))
        self._newcomer, self._newcomer_sent = newcomer, time.monotonic()

    def _newcomer_check(self, now: float) -> None:
        newcomer = self._newcomer
        while newcomer.poll(0):
            decoded = msgpack.unpackb(newcomer.recv(), raw=False, strict_map_key=False)
            for env in decoded if isinstance(decoded, list) else [decoded]:
                body = env.get("body") or {}
                if body.get("type") == "SUBSCRIBED":
                    self.newcomer_ms.append((now - self._newcomer_sent) * 1000)
                    newcomer.send(pack({"v": 1, "id": 2, "epoch": self._epoch, "body": {
                        "type": "TEARDOWN", "framework_id": body["framework_id"]}}))
                    time.sleep(0.01)
                    newcomer.close(0)
                    self._newcomer = None
                    return
        if now - self._newcomer_sent > UNRESPONSIVE:
            self.newcomers_unanswered += 1
            newcomer.close(0)
            self._newcomer = None

    def stop(self) -> None:
        self.halt.set()
        self.join(10)

    def waiting(self) -> float:
        """Seconds the current EXPLAIN has waited (0 when none is out)."""
        sent = self.explain_sent
        return 0.0 if sent is None else time.monotonic() - sent

    # --- events ----------------------------------------------------------------------------

    def _send(self, body: dict[str, Any]) -> None:
        self._msg_id += 1
        self.sock.send(pack({"v": 1, "id": self._msg_id, "epoch": self._epoch, "body": body}))

    def _on_frame(self, frame: bytes) -> None:
        decoded = msgpack.unpackb(frame, raw=False, strict_map_key=False)
        for env in decoded if isinstance(decoded, list) else [decoded]:
            self._epoch = max(self._epoch, int(env.get("epoch") or 0))
            body = env.get("body") or {}
            kind = body.get("type")
            if kind == "SUBSCRIBED":
                self.fid = body["framework_id"]
            elif kind == "OFFERS":
                for offer in body.get("offers") or []:
                    self._offer(offer)
            elif kind == "UPDATE":
                self._update(body.get("status") or {})
            elif kind == "EXPLANATION" and self.explain_sent is not None:
                self.explain_ms.append((time.monotonic() - self.explain_sent) * 1000)
                self.explain_sent = None
            elif kind == "ERROR":
                self.error_count += 1
                if len(self.errors) < 5:
                    self.errors.append(str(body.get("message"))[:300])

    def _offer(self, offer: dict[str, Any]) -> None:
        room = self.max_inflight - len(self.inflight)
        cpus = next((r for r in offer.get("resources", []) if r.get("name") == "cpus"), None)
        mem = next((r for r in offer.get("resources", []) if r.get("name") == "mem"), None)
        if cpus is None or mem is None or cpus.get("role") != self.role:
            # Only the agent reserved for its role: the open one is the hostile frameworks'.
            self._send({"type": "DECLINE", "framework_id": self.fid, "offer_ids": [offer["id"]],
                        "filters": {"refuse_seconds": 3600.0}})
            return
        if room <= 0:
            self._send({"type": "DECLINE", "framework_id": self.fid, "offer_ids": [offer["id"]],
                        "filters": {"refuse_seconds": 0.2}})
            return
        fits = int(min(float(cpus.get("scalar") or 0) / 0.1, float(mem.get("scalar") or 0) / 16))
        tasks = []
        for _ in range(max(0, min(room, fits))):
            self._seq += 1
            task_id = f"good-{self._seq}"
            tasks.append({"name": "good", "task_id": task_id, "agent_id": offer["agent_id"],
                          "resources": [dict(cpus, scalar=0.1), dict(mem, scalar=16.0)],
                          "command": {"value": "sleep 0.3"}})
            self.inflight.add(task_id)
        self.launched += len(tasks)
        self._send({"type": "ACCEPT", "framework_id": self.fid, "offer_ids": [offer["id"]],
                    "operations": [{"type": "LAUNCH", "task_infos": tasks}] if tasks else [],
                    "filters": {"refuse_seconds": 0.0}})

    def _update(self, status: dict[str, Any]) -> None:
        if status.get("uuid") is not None and status.get("agent_id"):
            self._send({"type": "ACKNOWLEDGE", "framework_id": self.fid, "agent_id": status["agent_id"],
                        "task_id": status["task_id"], "uuid": status["uuid"]})
        state = status.get("state")
        if state in TERMINAL and status.get("task_id") in self.inflight:
            self.inflight.discard(status["task_id"])
            self.ends[state] += 1
            if state == "TASK_FINISHED":
                self.finished += 1
                self.last_finish = time.monotonic()
