"""Run as a subprocess by test_rotation.py: the master's CURVE ROUTER (the real transport, on a
real asyncio reactor) through a master key rotation, with three clients sending a message every
50 ms: one holding only the old key, one holding only the next key (and the rotation port), and
one holding both (a client directory updated when the rotation started).

Prints JSON: per phase (before, rotating, finished), which clients got messages through, and
each client's endpoint and handshake failures."""

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
from tepui.sdk.transport import DealerEndpoint, RouterEndpoint  # noqa: E402

store = tempfile.mkdtemp(prefix="tepui-rotation-probe-")
server = init_store(store)
old_dir = issue(store, "old-only", "agent")[1]
both_dir = issue(store, "both", "agent")[1]
new_dir = issue(store, "new-only", "agent")[1]
gate = KeyGate(server.allow_list_path)
router = RouterEndpoint(reactor, "tcp://127.0.0.1:*", lambda p, m, i: got.append(i),
                        curve=CurveServer(server.public, server.secret, gate))
rotation_port = int(sys.argv[1])
got: list[str] = []
result: dict[str, Any] = {"phases": {}}
clients: dict[str, DealerEndpoint] = {}


def tick() -> None:
    for client in clients.values():
        client.send(b"hi")
    reactor.callLater(0.05, tick)


def phase(name: str, seconds: float) -> Any:
    from twisted.internet import task

    def done() -> None:
        seen = {identity: got.count(identity) for identity in set(got)}
        result["phases"][name] = seen
        got.clear()
    got.clear()
    return task.deferLater(reactor, seconds, done)


async def scenario() -> None:
    clients["old-only"] = DealerEndpoint(reactor, router.address, lambda p: None, curve=load_client_keys(old_dir))
    tick()
    await phase("before", 1.0)
    rotation.start(store, rotation_port)
    gate.reload()  # what the master's one-second watch does
    clients["both"] = DealerEndpoint(reactor, router.address, lambda p: None, curve=load_client_keys(both_dir))
    new_keys = load_client_keys(both_dir)
    result["both_keys"] = [new_keys.server.decode(), *(k.decode() for k in new_keys.fallback), new_keys.rotation_port]
    # A client given only the next key (and the rotation port): it finds the master on that port.
    mine = load_client_keys(new_dir)
    clients["new-only"] = DealerEndpoint(reactor, router.address, lambda p: None, curve=ClientKeys(
        mine.public, mine.secret, mine.fallback[0], (), rotation_port))
    await phase("rotating", 2.0)
    result["endpoints_rotating"] = {name: c.master[0] for name, c in clients.items()}
    rotation.finish(store)
    gate.reload()
    await phase("switching", 1.5)
    await phase("finished", 1.5)
    result["endpoints_finished"] = {name: c.master[0] for name, c in clients.items()}
    result["failures"] = {name: c.handshakes.failures for name, c in clients.items()}
    result["address"] = router.address
    reactor.stop()


def start() -> None:
    from twisted.internet import defer

    def failed(failure: Any) -> None:
        result["error"] = failure.getTraceback()
        reactor.stop()
    defer.ensureDeferred(scenario()).addErrback(failed)


reactor.callWhenRunning(start)
reactor.callLater(60, lambda: (result.setdefault("deadline_hit", True), reactor.stop()))
reactor.run()
for client in clients.values():
    client.close()
router.close()
shutil.rmtree(store, ignore_errors=True)
json.dump(result, sys.stdout)
