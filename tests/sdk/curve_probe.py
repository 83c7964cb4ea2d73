"""Run as a subprocess by test_curve.py: a CURVE ROUTER (the master's transport) with a real ZAP
handler and allow list, and clients with no key, a wrong key, a revoked key, a good key, frame
floods and an oversized frame, on a real asyncio reactor (one reactor per process)."""

import json
import os
import sys
import tempfile

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()

import zmq  # noqa: E402

from tepui.sdk.curve import CurveServer, KeyGate  # noqa: E402
from tepui.sdk.keys import init_store, issue, load_client_keys, revoke  # noqa: E402
from tepui.sdk.keys import ClientKeys  # noqa: E402
from tepui.sdk.transport import DealerEndpoint, RouterEndpoint  # noqa: E402

FLOODERS = 8
FLOOD_FRAMES = 100_000

store = tempfile.mkdtemp(prefix="tepui-curve-probe-")
server = init_store(store)
keys = {name: load_client_keys(issue(store, name, "agent")[1])
        for name in ["good", "gone", "later-revoked", "big", "after-flood", *[f"flood-{i}" for i in range(FLOODERS)]]}
revoke(store, "gone")
gate = KeyGate(server.allow_list_path)
result: dict = {"got": [], "rss_mib": []}


def on_message(peer: bytes, payload: bytes, identity: str | None) -> None:
    result["got"].append([identity, payload[:40].decode(errors="replace"), len(payload)])


router = RouterEndpoint(reactor, "tcp://127.0.0.1:*", on_message, curve=CurveServer(server.public, server.secret, gate))
wrong_pub, wrong_sec = zmq.curve_keypair()
clients = {
    "none": DealerEndpoint(reactor, router.address, lambda p: None),
    "wrong": DealerEndpoint(reactor, router.address, lambda p: None, curve=ClientKeys(wrong_pub, wrong_sec, server.public)),
    "revoked": DealerEndpoint(reactor, router.address, lambda p: None, curve=keys["gone"]),
    "wrong-server-key": DealerEndpoint(reactor, router.address, lambda p: None,
                                       curve=ClientKeys(keys["good"].public, keys["good"].secret, wrong_pub)),
    "good": DealerEndpoint(reactor, router.address, lambda p: None, curve=keys["good"]),
    "later-revoked": DealerEndpoint(reactor, router.address, lambda p: None, curve=keys["later-revoked"]),
}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def raw(name: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys[name].server, keys[name].public, keys[name].secret
    sock.connect(router.address)
    return sock


def step1() -> None:
    for name, client in clients.items():
        client.send(f"hello from {name}".encode())
    reactor.callLater(1.5, step2)


def step2() -> None:
    result["handshakes"] = {name: c.handshakes.last_failure for name, c in clients.items()}
    result["phase1"] = list(result["got"])
    # Revoked while connected: takes effect at its next message, without a restart.
    revoke(store, "later-revoked")
    result["reloaded"] = gate.reload()
    clients["later-revoked"].send(b"after revoke")
    reactor.callLater(1.5, step3)


def step3() -> None:
    clients["later-revoked"].send(b"after revoke, reconnected")
    clients["good"].send(b"still fine")
    reactor.callLater(1.0, step4)


def step4() -> None:
    result["later_revoked_handshake"] = clients["later-revoked"].handshakes.last_failure
    result["refused_revoked"] = router.stats.refused_revoked
    result["rss_mib"].append(rss_mib())
    result["flooders"] = [raw(f"flood-{i}") for i in range(FLOODERS)]
    flood(0)


def flood(i: int) -> None:
    if i == FLOODERS:
        reactor.callLater(0.5, step5)
        return
    result["flooders"][i].send_multipart([b"x" * 16] * FLOOD_FRAMES)
    reactor.callLater(1.0, measure, i)


def measure(i: int) -> None:
    result["rss_mib"].append(rss_mib())
    flood(i + 1)


def step5() -> None:
    result["bad_frames"] = router.stats.bad_frames
    result["disconnected_peers"] = router.stats.disconnected_peers
    result["flooders"][0].send(b"flooder again, within its cool-down")
    big = raw("big")
    big.send(b"y" * (5 * 2**20))  # over MAXMSGSIZE: libzmq cuts the connection
    result["big"] = big
    after = raw("after-flood")
    after.send(b"after the flood")
    result["after"] = after
    reactor.callLater(1.5, finish)


def finish() -> None:
    result["final"] = list(result["got"])
    for sock in result.pop("flooders") + [result.pop("big"), result.pop("after")]:
        sock.close()
    for client in clients.values():
        client.close()
    router.close()
    reactor.stop()


reactor.callWhenRunning(step1)
reactor.callLater(60, finish)
reactor.run()
result.pop("got")
json.dump(result, sys.stdout)
