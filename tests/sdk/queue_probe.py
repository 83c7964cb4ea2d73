"""Run as a subprocess by test_transport.py: a peer that stops reading must hold back only its
own messages (per-peer send queues), never another peer's."""

import json
import sys

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()

import msgspec  # noqa: E402
import zmq  # noqa: E402

from tepui.sdk.batch import split  # noqa: E402
from tepui.sdk.dealer import DealerEndpoint  # noqa: E402
from tepui.sdk.router import RouterEndpoint  # noqa: E402

TURNS = 200
BIG = msgspec.msgpack.encode(b"x" * 256 * 1024)  # fills the stalled peer's pipe and TCP buffers fast
result: dict = {"fast_got": [], "peers": {}}


def on_router(peer: bytes, payload: bytes) -> None:
    for part in split(payload):
        result["peers"][msgspec.msgpack.decode(part)] = peer
    if len(result["peers"]) == 2 and "started" not in result:
        result["started"] = True
        reactor.callLater(0, turn, 0)


def turn(i: int) -> None:
    # One frame per peer per turn: the stalled peer's pipe fills and its frames queue with us.
    router.send(result["peers"]["slow"], BIG)
    router.send(result["peers"]["fast"], msgspec.msgpack.encode(i))
    if i + 1 < TURNS:
        reactor.callLater(0, turn, i + 1)


def on_fast(payload: bytes) -> None:
    result["fast_got"].extend(msgspec.msgpack.decode(part) for part in split(payload))
    if len(result["fast_got"]) == TURNS:
        reactor.callLater(0.1, finish)


def finish() -> None:
    if reactor.running:
        result["queued"] = router.stats.queued
        result["peers_waiting"] = len(router._pending)
        reactor.stop()


router = RouterEndpoint(reactor, "tcp://127.0.0.1:*", on_router, hwm=2)
slow = zmq.Context.instance().socket(zmq.DEALER)  # says hello, then never reads
slow.setsockopt(zmq.RCVHWM, 1)
slow.setsockopt(zmq.LINGER, 0)
slow.connect(router.address)
slow.send(msgspec.msgpack.encode("slow"))
fast = DealerEndpoint(reactor, router.address, on_fast)
fast.send(msgspec.msgpack.encode("fast"))
reactor.callLater(20, finish)
reactor.run()
slow.close()
result["in_order"] = result["fast_got"] == list(range(TURNS))
result["fast_got"] = len(result["fast_got"])
result.pop("peers")
json.dump(result, sys.stdout)
