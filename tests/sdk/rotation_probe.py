"""Run as a subprocess by test_rotation.py: the master's CURVE ROUTER (the real transport, on a
real asyncio reactor) through a master key rotation, with three clients sending a message every
50 ms: one holding only the old key, one holding only the next key (and the rotation port), and
one holding both (a client directory updated when the rotation started).

Prints JSON: per phase (before, rotating, switching, finished), which clients got messages
through; each client's endpoint and handshake failures; and which of its numbered messages the
master never received (``missing``).

With ``--stale`` instead: a client started after ``--finish`` with a directory written during
the rotation (it tries the retired key first, on the same port) sends a message at once, before
its first attempt failed, then one every 50 ms: ``missing`` and ``failures`` say whether the
abandoned attempt lost that message or disturbed the working one."""

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()
import logging  # noqa: E402
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

from tepui.sdk import rotation  # noqa: E402
from tepui.sdk.curve import CurveServer, KeyGate  # noqa: E402
from tepui.sdk.keys import ClientKeys, init_store, issue, load_client_keys  # noqa: E402
from tepui.sdk.dealer import DealerEndpoint  # noqa: E402
from tepui.sdk.router import RouterEndpoint  # noqa: E402

store = tempfile.mkdtemp(prefix="tepui-rotation-probe-")
server = init_store(store)
old_dir = issue(store, "old-only", "agent")[1]
both_dir = issue(store, "both", "agent")[1]
new_dir = issue(store, "new-only", "agent")[1]
stale_dir = issue(store, "stale", "agent")[1]  # --stale
gate = KeyGate(server.allow_list_path)


def received(peer: bytes, message: bytes, identity: str) -> None:
    got.append(identity)
    numbers.setdefault(identity, set()).add(int(message.split(b":")[1]))


router = RouterEndpoint(reactor, "tcp://127.0.0.1:*", received, curve=CurveServer(server.public, server.secret, gate))
rotation_port = int(sys.argv[1])
got: list[str] = []
numbers: dict[str, set[int]] = {}  # client -> the numbers of its messages the master received
sent: dict[str, int] = {}  # client -> messages sent
result: dict[str, Any] = {"phases": {}}
clients: dict[str, DealerEndpoint] = {}
sending = True


def reconnected(name: str) -> None:
    """The client's connection is back after the finish (with the new key): the number of its
    next message."""
    if "received_before_finish" in result:
        result.setdefault("reconnected_at", {}).setdefault(name, sent.get(name, 0))


def send(name: str) -> None:
    clients[name].send(b"hi:%d" % sent.get(name, 0))
    sent[name] = sent.get(name, 0) + 1


def tick() -> None:
    if sending:
        for name in clients:
            send(name)
        reactor.callLater(0.05, tick)


async def until(condition: Any, seconds: float = 20.0) -> None:
    """Waits until ``condition()`` holds, at most ``seconds`` (a busy machine is slow, not
    wrong: what the test checks is what held then)."""
    from twisted.internet import task

    for _ in range(int(seconds * 10)):
        if condition():
            return
        await task.deferLater(reactor, 0.1, lambda: None)


def last_messages_received() -> bool:
    return all(sent[n] - 1 in numbers.get(n, ()) for n in clients if n != "old-only")


def report() -> None:
    result["failures"] = {name: c.handshakes.failures for name, c in clients.items()}
    result["missing"] = {name: sorted(set(range(sent[name])) - numbers.get(name, set())) for name in clients}
    result["sent"] = sent
    result["received_last"] = {name: max(numbers.get(name, {-1})) for name in clients}
    result["address"], result["rotation_port"] = router.address, rotation_port


async def phase(name: str, seconds: float, expect: tuple[str, ...] = ()) -> None:
    """Counts whose messages the master gets for ``seconds`` — and longer, until every client
    in ``expect`` got one through (at most 20 s more)."""
    from twisted.internet import task

    got.clear()
    await task.deferLater(reactor, seconds, lambda: None)
    await until(lambda: set(expect) <= set(got))
    result["phases"][name] = {identity: got.count(identity) for identity in set(got)}
    got.clear()


async def scenario() -> None:
    clients["old-only"] = DealerEndpoint(reactor, router.address, lambda p: None, curve=load_client_keys(old_dir))
    tick()
    await phase("before", 1.0, ("old-only",))
    rotation.start(store, rotation_port)
    gate.reload()  # what the master's one-second watch does
    clients["both"] = DealerEndpoint(reactor, router.address, lambda p: None, curve=load_client_keys(both_dir),
                                     on_reconnect=lambda: reconnected("both"))
    new_keys = load_client_keys(both_dir)
    result["both_keys"] = [new_keys.server.decode(), *(k.decode() for k in new_keys.fallback), new_keys.rotation_port]
    # A client given only the next key (and the rotation port): it finds the master on that port.
    mine = load_client_keys(new_dir)
    clients["new-only"] = DealerEndpoint(reactor, router.address, lambda p: None, curve=ClientKeys(
        mine.public, mine.secret, mine.fallback[0], (), rotation_port), on_reconnect=lambda: reconnected("new-only"))
    await phase("rotating", 2.0, ("old-only", "both", "new-only"))
    result["endpoints_rotating"] = {name: c.master[0] for name, c in clients.items()}
    # Messages numbered above these and below the client's reconnection are the ones a
    # connection ended by the finish may take with it; none other may be lost.
    result["received_before_finish"] = {name: max(numbers.get(name, {-1})) for name in clients}
    result["sent_before_finish"] = dict(sent)
    rotation.finish(store)
    gate.reload()
    await phase("switching", 1.5)
    await phase("finished", 1.5, ("both", "new-only"))
    result["endpoints_finished"] = {name: c.master[0] for name, c in clients.items()}
    global sending
    sending = False
    await until(last_messages_received)
    report()
    reactor.stop()


async def stale_scenario() -> None:
    rotation.start(store, rotation_port)
    gate.reload()
    stale = load_client_keys(stale_dir)  # the retired key first, then the next one, and the port
    rotation.finish(store)
    gate.reload()
    clients["stale"] = DealerEndpoint(reactor, router.address, lambda p: None, curve=stale)
    send("stale")
    clients["stale"].flush()  # handed to libzmq now, before its first attempt (the retired key) fails
    tick()
    await phase("stale", 1.5)  # longer than a lingering abandoned attempt (LINGER 1 s)
    global sending
    sending = False
    await until(last_messages_received)
    endpoint, key = clients["stale"].master
    result["endpoint"], result["uses_next_key"] = endpoint, key == stale.fallback[0]
    report()
    reactor.stop()


def start() -> None:
    from twisted.internet import defer

    def failed(failure: Any) -> None:
        result["error"] = failure.getTraceback()
        reactor.stop()
    defer.ensureDeferred(stale_scenario() if "--stale" in sys.argv else scenario()).addErrback(failed)


reactor.callWhenRunning(start)
reactor.callLater(90, lambda: (result.setdefault("deadline_hit", True), reactor.stop()))
reactor.run()
for client in clients.values():
    client.close()
router.close()
shutil.rmtree(store, ignore_errors=True)
json.dump(result, sys.stdout)
