"""The live fuzzer's wire (``bench/fuzz.py --live``): a CurveZMQ DEALER speaking the documented
protocol (docs/protocol.md) with plain pyzmq and msgpack and no Tepui code, as a client in
another language would, plus the **barrier** that tells which answers belong to which calls.

Why a barrier: most refused calls must be answered by an ERROR, and a call the master drops
silently is exactly what the fuzzer looks for — but silence cannot be timed out cheaply (a
second per call would cap a run at a few thousand calls). The master handles one connection's
messages in order and answers them in that order, so after a window of calls the client sends
one message that is always answered: an envelope whose body ``type`` is
``FUZZ_BARRIER_<n>``, which fails to decode and comes back as an ERROR naming it (and echoing
its ``call_id`` where the master echoes call ids). Every answer that arrives before the
barrier's belongs to the window; a call still unanswered then got no answer at all.

An ERROR is matched to its call by the echoed ``call_id`` when it has one (``echoed``), else to
the window's first call still waiting for an answer; an UPDATE naming a task of a call that
carries tasks answers that call (Mesos answers a launch on a bad offer with TASK_DROPPED/LOST
and a KILL of an unknown task with TASK_UNKNOWN/LOST, not with an ERROR).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq
import zmq.auth

BARRIER = "FUZZ_BARRIER_"
ERROR_KINDS = ("error", "reply", "subscribed", "explanation")  # expectations that need an answer
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED", "TASK_GONE",
            "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"}


def load_keys(key_dir: str) -> tuple[bytes, bytes, bytes]:
    """(public, secret, master public) from a ``tepui certs issue`` directory."""
    public, secret = zmq.auth.load_certificate(f"{key_dir}/client.key_secret")
    server, _ = zmq.auth.load_certificate(f"{key_dir}/master.key")
    assert secret is not None
    return public, secret, server


def pack(doc: Any) -> bytes:
    return bytes(msgpack.packb(doc, use_bin_type=True))


@dataclass
class Call:
    """One call of a window and what it must bring back. ``expect``: ``error`` (an ERROR),
    ``reply`` (an ERROR, or an UPDATE for one of ``task_ids``), ``subscribed`` (SUBSCRIBED or
    ERROR), ``explanation`` (EXPLANATION or ERROR), or None (anything, or nothing)."""

    case: str
    expect: str | None
    call_id: str | None = None
    task_ids: tuple[str, ...] = ()
    kind: str | None = None  # the body's type, when the call has one
    envelopes: int = 1  # hostile calls it counts for (a batch element is one)
    replied: bool = False
    echoed: bool = False
    field_named: bool = False
    accepted: bool = False  # SUBSCRIBED for a SUBSCRIBE that had to be refused
    error: str = ""  # the ERROR that answered it
    detail: str = ""  # what to show of it when it goes unanswered (a damaged frame's bytes)

    @property
    def must_answer(self) -> bool:
        return self.expect in ERROR_KINDS


@dataclass
class Window:
    calls: list[Call]
    events: list[dict[str, Any]] = field(default_factory=list)  # everything else that arrived
    unattributed_errors: list[str] = field(default_factory=list)
    timed_out: bool = False
    seconds: float = 0.0


def _owner(calls: list[Call], call_type: Any) -> Call | None:
    """The call an ERROR without a known call id most likely answers, among those not answered
    yet: one that must be answered and could not carry a call id, then one of the ERROR's call
    type, then any that must be answered, then one that may be answered (schema-generated or
    damaged bytes)."""
    waiting = [c for c in calls if not c.replied]
    for test in (lambda c: c.must_answer and c.call_id is None,
                 lambda c: c.must_answer and call_type is not None and c.kind == call_type,
                 lambda c: c.must_answer and call_type is None,
                 lambda c: c.must_answer,
                 lambda c: not c.must_answer):
        found = next((c for c in waiting if test(c)), None)
        if found is not None:
            return found
    return None


class Wire:
    """One DEALER connection to the master under one CURVE key."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, key_dir: str, use_call_ids: bool = True) -> None:
        self.ctx, self.endpoint = ctx, endpoint
        self.public, self.secret, self.server = load_keys(key_dir)
        self.use_call_ids = use_call_ids
        self.sock: zmq.Socket[Any] | None = None
        self.msg_id = 0
        self.barriers = 0
        self.epoch = 0
        self.connect()

    def connect(self) -> None:
        self.close()
        sock = self.ctx.socket(zmq.DEALER)
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = self.public, self.secret, self.server
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = 10_000
        sock.connect(self.endpoint)
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def envelope(self, body: Any, call_id: str | None = None, **extra: Any) -> dict[str, Any]:
        self.msg_id += 1
        doc: dict[str, Any] = {"v": 1, "id": self.msg_id, "epoch": self.epoch, "body": body}
        if call_id is not None and self.use_call_ids:
            doc["call_id"] = call_id
        doc.update(extra)
        return doc

    def send_frame(self, frame: bytes) -> None:
        assert self.sock is not None
        self.sock.send(frame, copy=len(frame) < 65536)

    def recv_frames(self, timeout: float) -> list[bytes]:
        """Whatever arrives within ``timeout`` seconds (at least one frame, or none)."""
        assert self.sock is not None
        frames: list[bytes] = []
        if self.sock.poll(int(timeout * 1000)):
            while True:
                try:
                    frames.extend(self.sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
        return frames

    def exchange(self, frames: list[bytes], calls: list[Call], timeout: float) -> Window:
        """Sends ``frames`` (the calls, already packed), then a barrier, and reads until the
        barrier's ERROR comes back (or ``timeout``), matching answers to ``calls``."""
        window = Window(calls)
        started = time.monotonic()
        for frame in frames:
            self.send_frame(frame)
        self.barriers += 1
        tag = f"{BARRIER}{self.barriers}"
        self.send_frame(pack(self.envelope({"type": tag}, call_id=f"barrier-{self.barriers}")))
        deadline = started + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                window.timed_out = True
                break
            if any(self._take(frame, window, tag) for frame in self.recv_frames(min(left, 0.5))):
                break
        window.seconds = time.monotonic() - started
        return window

    def _take(self, frame: bytes, window: Window, tag: str) -> bool:
        done, epoch = file_frame(frame, window, tag, f"barrier-{self.barriers}")
        self.epoch = max(self.epoch, epoch)
        return done


def file_frame(frame: bytes, window: Window, tag: str, barrier_call_id: str) -> tuple[bool, int]:
    """Files one frame's envelopes from the master into ``window``: (whether it held the
    barrier's answer, the largest epoch seen)."""
    try:
        decoded = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 - the master's bytes are not what is tested here
        window.unattributed_errors.append(f"undecodable frame from the master: {frame[:60]!r}")
        return False, 0
    done, epoch = False, 0
    for env in decoded if isinstance(decoded, list) else [decoded]:
        body = env.get("body") if isinstance(env, dict) else None
        if not isinstance(body, dict):
            continue
        epoch = max(epoch, int(env.get("epoch") or 0))
        kind = body.get("type")
        if kind == "ERROR":
            message = str(body.get("message", ""))
            if tag in message or body.get("call_id") == barrier_call_id:
                done = True
            elif BARRIER not in message:  # not an older barrier's (of a window that timed out)
                _error(body, window)
            continue
        if kind == "UPDATE":
            _update(body, window)
        elif kind == "SUBSCRIBED":
            _answer(window, lambda c: c.kind == "SUBSCRIBE", accepted=True)
        elif kind == "EXPLANATION":
            _answer(window, lambda c: c.expect == "explanation")
        window.events.append(body)
    return done, epoch


def _error(body: dict[str, Any], window: Window) -> None:
    call_id = body.get("call_id")
    same = [c for c in window.calls if call_id is not None and c.call_id == call_id]
    match = next((c for c in same if not c.replied), same[0] if same else None)  # ids may repeat ("")
    if match is None:
        match = _owner(window.calls, body.get("call_type"))
    if match is None:
        window.unattributed_errors.append(str(body.get("message", ""))[:300])
        return
    match.replied = True
    match.echoed = match.echoed or (call_id is not None and call_id == match.call_id)
    match.field_named = match.field_named or bool(body.get("field"))
    match.error = str(body.get("message", ""))[:300]


def _update(body: dict[str, Any], window: Window) -> None:
    """An UPDATE for a task of a call that carries tasks answers that call."""
    status = body.get("status") if isinstance(body.get("status"), dict) else {}
    task_id = status.get("task_id")
    call = next((c for c in window.calls if c.expect == "reply" and task_id in c.task_ids and not c.replied), None)
    if call is not None:
        call.replied = True


def _answer(window: Window, matches: Any, accepted: bool = False) -> None:
    """SUBSCRIBED or EXPLANATION answers the window's first call of that kind still waiting;
    SUBSCRIBED for a SUBSCRIBE that had to be refused is noted as accepted."""
    call = next((c for c in window.calls if not c.replied and matches(c)), None)
    if call is not None:
        call.replied = True
        call.accepted = accepted and call.expect == "error"
