"""Conformance: a framework's whole life driven with nothing but pyzmq and msgpack, exactly as
the worked example of docs/protocol.md shows it, against a real master and a real agent with
CURVE keys made by ``tepui certs``.

Why the messages come from the doc: a client author in another language has only the doc, so
the doc is what must be true. The test reads every fenced block ```` ```wire ... ```` of the
worked example, in order, sends the framework's ones and expects the master's ones, so that
neither can change without the other. The blocks are JSON with placeholders for what the master
chooses: ``<name:kind>`` (kind ``str``, ``int``, ``float`` or ``bin``) is bound the first time
it is seen and must be the same value wherever it appears again; ``<kind>`` alone is any value
of that kind. A message from the master must have exactly the doc's keys, in the doc's order,
values of the doc's types, and the doc's literal values. OFFERS and HEARTBEAT may come between
any two steps (the doc says so); an update sent again with a uuid already seen is skipped (an
agent re-sends an update until it is acknowledged).

The client below imports no Tepui code: only the harness that starts the master and the agent
does. Nothing sleeps a fixed time: every wait polls the socket against a generous deadline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import msgpack
import pytest
import zmq
import zmq.auth

from tests.e2e.conftest import REPO, Cluster, child_env, tepui_cmd

pytestmark = pytest.mark.slow

DOC = REPO / "docs" / "protocol.md"
STEP_TIMEOUT = 60.0  # seconds for any one expected message: generous, for a machine under load
SEND, RECEIVE = "framework→master", "master→framework"
UNASKED = ("OFFERS", "HEARTBEAT")  # may come between any two steps of the example
AGENT_RESOURCES = "cpus:1;mem:128;disk:64;ports:[31000-31001]"  # the doc's agent

_BLOCK = re.compile(r"^```wire (framework→master|master→framework)([^\n]*)\n(.*?)^```$", re.M | re.S)
_HEX_BLOCK = re.compile(r"^```hex\n(.*?)^```$", re.M | re.S)
_PLACEHOLDER = re.compile(r"<(?:([a-z][a-z0-9_]*):)?(str|int|float|bin)>")
_KINDS: dict[str, type] = {"str": str, "int": int, "float": float, "bin": bytes}


# --- the doc's worked example --------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A placeholder: a value the master chooses (``name`` binds it, None: any value)."""

    name: str | None
    kind: str


@dataclass(frozen=True)
class Step:
    direction: str
    flags: tuple[str, ...]
    message: Any
    text: str


def parse_wire(text: str) -> Any:
    """A block's JSON with its placeholders turned into :class:`Slot`."""
    marked = _PLACEHOLDER.sub(lambda m: json.dumps(f"\0{m.group(1) or ''}:{m.group(2)}"), text)

    def slots(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("\0"):
            name, kind = value[1:].split(":")
            return Slot(name or None, kind)
        if isinstance(value, dict):
            return {key: slots(item) for key, item in value.items()}
        if isinstance(value, list):
            return [slots(item) for item in value]
        return value

    return slots(json.loads(marked))


def worked_example(doc: str) -> list[Step]:
    section = doc[doc.index("## Worked example"):]
    steps = [Step(m.group(1), tuple(m.group(2).split()), parse_wire(m.group(3)), m.group(3))
             for m in _BLOCK.finditer(section)]
    assert steps, "docs/protocol.md: the worked example has no ```wire blocks"
    return steps


class Bindings:
    """The values the master chose, by placeholder name."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def fill(self, template: Any) -> Any:
        """A message to send: the template with every placeholder replaced by its bound value."""
        if isinstance(template, Slot):
            assert template.name in self.values, f"the doc sends <{template.name}> before the master gave it"
            return self.values[template.name]
        if isinstance(template, dict):
            return {key: self.fill(value) for key, value in template.items()}
        if isinstance(template, list):
            return [self.fill(value) for value in template]
        return template

    def problems(self, expected: Any, actual: Any, path: str = "$", bind: bool = True) -> list[str]:
        """How ``actual`` differs from the doc's ``expected`` (empty: it conforms). With
        ``bind`` False placeholders only check their kind (an unasked message's shape)."""
        if isinstance(expected, Slot):
            kind = _KINDS[expected.kind]
            if type(actual) is not kind:
                return [f"{path}: expected {expected.kind}, got {type(actual).__name__} {actual!r}"]
            if expected.name is None or not bind:
                return []
            bound = self.values.setdefault(expected.name, actual)
            return [] if bound == actual else [f"{path}: <{expected.name}> was {bound!r}, now {actual!r}"]
        if isinstance(expected, dict):
            if not isinstance(actual, dict):
                return [f"{path}: expected a map, got {actual!r}"]
            if list(actual) != list(expected):
                return [f"{path}: keys {list(actual)}, the doc has {list(expected)}"]
            return [p for key in expected for p in self.problems(expected[key], actual[key], f"{path}.{key}", bind)]
        if isinstance(expected, list):
            if not isinstance(actual, list) or len(actual) != len(expected):
                return [f"{path}: expected {len(expected)} elements, got {actual!r}"]
            return [p for i, (e, a) in enumerate(zip(expected, actual)) for p in self.problems(e, a, f"{path}[{i}]", bind)]
        if type(actual) is not type(expected) or actual != expected:
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        return []


# --- the client: pyzmq and msgpack only ----------------------------------------------------------


class Client:
    """One DEALER connection to the master, set up as docs/protocol.md says."""

    def __init__(self, context: zmq.Context, endpoint: str, key_dir: Path) -> None:
        public, secret = zmq.auth.load_certificate(str(key_dir / "client.key_secret"))
        master, _ = zmq.auth.load_certificate(str(key_dir / "master.key"))
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.ROUTING_ID, os.urandom(12))
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, 5000)
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
        self.socket.setsockopt(zmq.HEARTBEAT_TTL, 15000)
        self.socket.curve_publickey, self.socket.curve_secretkey, self.socket.curve_serverkey = public, secret, master
        self.socket.connect(endpoint)
        self.inbox: deque[Any] = deque()
        self.frames = 0

    def send(self, message: Any) -> None:
        self.socket.send(msgpack.packb(message, use_bin_type=True))

    def receive(self, what: str) -> Any:
        """The next message; a frame may hold one envelope (a map) or a batch (an array)."""
        if not self.inbox:
            assert self.socket.poll(int(STEP_TIMEOUT * 1000)), f"no message from the master in {STEP_TIMEOUT} s " \
                                                               f"while waiting for {what}"
            frame = msgpack.unpackb(self.socket.recv(), raw=False)
            self.frames += 1
            self.inbox.extend(frame if isinstance(frame, list) else [frame])
        return self.inbox.popleft()

    def close(self) -> None:
        self.socket.close()


# --- the run -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The doc's cluster: one master (heartbeats every second, so the example's HEARTBEAT comes
    soon) and one agent with the doc's resources. Framework keys are issued with `tepui certs`
    before the master starts, so it knows them from its first handshake."""
    instance = Cluster(tmp_path_factory.mktemp("conformance"), agents=1, master_args=["--heartbeat-interval", "1"],
                       agent_args=["--resources", AGENT_RESOURCES])
    for name in ("conformance", "req-client"):
        subprocess.run(tepui_cmd("certs", "issue", "--keys", str(instance.keys.store), "--framework", name),
                       check=True, capture_output=True, env=child_env())
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        assert not instance.watch.survivors(), f"left running: {instance.watch.survivors()}"


def test_the_worked_example_of_the_protocol_doc_runs_against_a_real_master(cluster: Cluster) -> None:
    doc = DOC.read_text()
    steps = worked_example(doc)
    heartbeat = next(s.message for s in steps if s.direction == RECEIVE and s.message["body"]["type"] == "HEARTBEAT")
    offers_shape = next(s.message for s in steps if s.direction == RECEIVE and s.message["body"]["type"] == "OFFERS")
    key_dir = cluster.keys.store / "issued" / "conformance"
    context = zmq.Context()
    client = Client(context, f"tcp://{cluster.master}", key_dir)
    bindings = Bindings()
    unasked_offers: deque[Any] = deque()
    heartbeats, uuids_seen = 0, set()
    try:
        for number, step in enumerate(steps, 1):
            where = f"step {number} of the worked example:\n{step.text}"
            if step.direction == SEND:
                if "new-connection" in step.flags:
                    client.close()
                    client = Client(context, f"tcp://{cluster.master}", key_dir)
                client.send(bindings.fill(step.message))
                continue
            wanted = step.message["body"]["type"]
            if wanted == "HEARTBEAT" and heartbeats:
                continue  # one came already, unasked
            if wanted == "OFFERS" and unasked_offers:
                problems = bindings.problems(step.message, unasked_offers.popleft())
                assert not problems, f"{where}\nthe master's OFFERS differ from the doc: {problems}"
                continue
            while True:
                message = client.receive(wanted)
                kind = message.get("body", {}).get("type")
                if kind in UNASKED and kind != wanted:
                    problems = bindings.problems(heartbeat if kind == "HEARTBEAT" else offers_shape, message, bind=False)
                    assert not problems, f"an unasked {kind} differs from the doc's: {problems}\n{message!r}"
                    heartbeats += kind == "HEARTBEAT"
                    if kind == "OFFERS":
                        unasked_offers.append(message)
                    continue
                uuid = message["body"].get("status", {}).get("uuid") if kind == "UPDATE" else None
                if uuid is not None and uuid in uuids_seen:
                    continue  # the agent sent it again before our acknowledgement arrived
                problems = bindings.problems(step.message, message)
                assert not problems, f"{where}\nthe master sent {message!r}\nwhich differs from the doc: {problems}"
                heartbeats += kind == "HEARTBEAT"
                if uuid is not None:
                    uuids_seen.add(uuid)
                break
    finally:
        client.close()
        context.term()


def test_the_hex_dump_of_the_first_subscribe_is_its_msgpack_encoding() -> None:
    """The doc's byte-by-byte dump is the exact encoding of the example's first message."""
    doc = DOC.read_text()
    dump = _HEX_BLOCK.search(doc[doc.index("## Worked example"):])
    assert dump is not None, "docs/protocol.md: the worked example has no ```hex block"
    data = bytes.fromhex("".join(line.split("#", 1)[0] for line in dump.group(1).splitlines()))
    first = worked_example(doc)[0]
    assert first.direction == SEND
    assert data == msgpack.packb(first.message, use_bin_type=True)


def test_a_req_socket_is_cut_off_and_its_key_refused_for_a_while(cluster: Cluster) -> None:
    """docs/protocol.md "The socket": a REQ socket's empty delimiter frame breaks the master's
    frame limit; the master cuts the connection and refuses the key's handshakes (30 s), which a
    DEALER with that key then meets. Observed through socket monitors, never by waiting."""
    key_dir = cluster.keys.store / "issued" / "req-client"
    public, secret = zmq.auth.load_certificate(str(key_dir / "client.key_secret"))
    master, _ = zmq.auth.load_certificate(str(key_dir / "master.key"))
    context = zmq.Context()
    sockets = []

    def connect(kind: int) -> tuple[zmq.Socket, zmq.Socket]:
        sock = context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, master
        monitor = sock.get_monitor_socket()
        sockets.extend([monitor, sock])
        sock.connect(f"tcp://{cluster.master}")
        return sock, monitor

    def wait_for(monitor: zmq.Socket, event: int) -> None:
        from zmq.utils.monitor import recv_monitor_message

        seen = []
        while monitor.poll(int(STEP_TIMEOUT * 1000)):
            got = recv_monitor_message(monitor)["event"]
            if got == event:
                return
            seen.append(got)
        raise AssertionError(f"monitor event {event} never came (saw {seen})")

    try:
        req, req_monitor = connect(zmq.REQ)
        wait_for(req_monitor, zmq.EVENT_HANDSHAKE_SUCCEEDED)
        req.send(msgpack.packb({"v": 1, "id": 1, "body": {"type": "SUBSCRIBE", "framework_info": {
            "user": "nobody", "name": "req"}}}))
        wait_for(req_monitor, zmq.EVENT_DISCONNECTED)
        dealer, dealer_monitor = connect(zmq.DEALER)
        wait_for(dealer_monitor, zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        assert not req.poll(0), "a REQ socket got an answer"
    finally:
        for sock in sockets:
            sock.close(linger=0)
        context.term()
