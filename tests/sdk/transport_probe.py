"""Run as a subprocess by test_transport.py: exercises the ZeroMQ transport on a real asyncio
reactor (a reactor runs once per process, so it cannot live inside pytest's process)."""

import json
import sys

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()

import msgspec  # noqa: E402
import zmq  # noqa: E402

from tepui.sdk.batch import split  # noqa: E402
from tepui.sdk.dealer import DealerEndpoint  # noqa: E402
from tepui.sdk.router import RouterEndpoint  # noqa: E402

COUNT = 20_000
result: dict = {"router_got": [], "dealer_got": [], "unreachable": [], "batches": 0}


def encode(value: object) -> bytes:
    return msgspec.msgpack.encode(value)  # payloads are MessagePack values: batching relies on it


def values(payload: bytes) -> list:
    return [msgspec.msgpack.decode(part) for part in split(payload)]


def on_router(peer: bytes, payload: bytes) -> None:
    for value in values(payload):
        result["router_got"].append(value)
        result["peer"] = peer.hex()
        if value == COUNT - 1:
            for i in range(3):
                router.send(peer, encode(i))
            router.send(b"no-such-peer", encode("x"))


def on_batch() -> None:
    result["batches"] += 1


def on_dealer(payload: bytes) -> None:
    result["dealer_got"].extend(values(payload))
    result["dealer_frames"] = dealer.stats.received
    if len(result["dealer_got"]) == 3:
        reactor.callLater(0.2, finish)


def finish() -> None:
    result["router_bad_frames"] = router.stats.bad_frames
    result["router_received"] = router.stats.received  # frames
    result["dealer_sent"] = dealer.stats.sent  # envelopes
    result["dealer_frames_sent"] = dealer.stats.frames_sent
    router.close()
    dealer.close()
    reactor.stop()


router = RouterEndpoint(reactor, "tcp://127.0.0.1:*", on_router, lambda peer: result["unreachable"].append(peer.decode()),
                        on_batch_end=on_batch)
dealer = DealerEndpoint(reactor, router.address, on_dealer)


def start() -> None:
    # A raw multi-frame message from another socket must be counted and dropped.
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(router.address)
    raw.send_multipart([b"a", b"b", b"c"])
    result["raw"] = raw
    for i in range(COUNT):
        dealer.send(encode(i))


reactor.callWhenRunning(start)
reactor.callLater(20, finish)
reactor.run()
result.pop("raw").close()
result["in_order"] = result["router_got"] == list(range(COUNT))
result["router_got"] = len(result["router_got"])
json.dump(result, sys.stdout)
