"""Run as a subprocess by test_curve.py: a CURVE ROUTER (the master's transport) with a real ZAP
handler and allow list, and clients with no key, a wrong key, a revoked key, a good key, frame
floods and an oversized frame, on a real asyncio reactor (one reactor per process).

Each step goes on when what it waits for has happened (polled), not after a fixed sleep, so a
loaded machine only makes the probe slower, never wrong; a step whose effect does not come
within WAIT seconds is recorded in "timeouts" and the probe goes on (the test's assertions then
say what is missing). DEADLINE is only a safety net: it always ends the run and says in which
step, so the probe never outlives test_curve's timeout."""

import time

STARTED = time.monotonic()

import ctypes  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from typing import Any, Callable  # noqa: E402

from tepui.sdk.runtime import install_reactor  # noqa: E402

reactor = install_reactor()

import zmq  # noqa: E402
from zmq.utils.monitor import recv_monitor_message  # noqa: E402

from tepui.sdk.curve import CurveServer, KeyGate  # noqa: E402
from tepui.sdk.keys import init_store, issue, load_client_keys, revoke  # noqa: E402
from tepui.sdk.keys import ClientKeys  # noqa: E402
from tepui.sdk.dealer import DealerEndpoint  # noqa: E402
from tepui.sdk.router import RouterEndpoint  # noqa: E402

FLOODERS = 8
FLOOD_FRAMES = 100_000
WAIT = 30.0  # seconds one step may wait for its effect
# Seconds for the whole run, from the process's start, under test_curve's 180 s timeout with room
# to close and report. A safety net, not a budget: the work is ~7 s of CPU (mostly the floods,
# sent and read frame by frame, ~0.9 s each), which on a 2-core machine shared with 14 busy
# processes took 45-80 s of wall time, and with 24 took 81-101 s.
DEADLINE = 150.0
POLL = 0.05

store = tempfile.mkdtemp(prefix="tepui-curve-probe-")
server = init_store(store)
keys = {name: load_client_keys(issue(store, name, "agent")[1])
        for name in ["good", "gone", "later-revoked", "big", "after-flood", *[f"flood-{i}" for i in range(FLOODERS)]]}
revoke(store, "gone")
gate = KeyGate(server.allow_list_path)
result: dict = {"got": [], "rss_mib": [], "timeouts": []}
finished = False


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


try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def rss_mib() -> float:
    """Resident memory once the C allocator has given back what is free: memory still held
    (a kept message, libzmq buffers of a cut peer) counts, glibc's per-thread arenas keeping
    freed pages for reuse (which made readings jump between ~59 and ~86 MiB) do not."""
    if _malloc_trim is not None:
        _malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def raw(name: str) -> zmq.Socket:
    """A plain DEALER with ``name``'s key. Send on it with NOBLOCK only: once the master has
    refused its key, libzmq ends the connection for good and a blocking send would wait for ever
    on the reactor's thread (where neither the deadline nor SIGTERM could end the run)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys[name].server, keys[name].public, keys[name].secret
    sock.connect(router.address)
    return sock


def texts() -> list[str]:
    return [text for _identity, text, _size in result["got"]]


def step(fn: Callable[..., None]) -> Callable[..., None]:
    """A scenario step: names itself in result["step"]; an exception ends the run at once (with
    the traceback in result["error"]) instead of leaving the reactor waiting for a step that
    will never come."""
    def run(*args: Any) -> None:
        if finished:
            return
        result["step"] = fn.__name__ + "".join(f" {a}" for a in args)
        try:
            fn(*args)
        except Exception:
            result["error"] = traceback.format_exc()
            finish()
    run.__name__ = fn.__name__
    return run


def wait_for(what: str, condition: Callable[[], bool], then: Callable[..., None], *args: Any,
             settle: float = 0.0) -> None:
    """Calls ``then(*args)`` ``settle`` seconds after ``condition()`` holds, or after WAIT
    seconds with ``what`` recorded in result["timeouts"]."""
    limit = time.monotonic() + WAIT

    def poll() -> None:
        if finished:
            return
        try:
            met = condition()
        except Exception:
            result["error"] = traceback.format_exc()
            finish()
            return
        if met:
            reactor.callLater(settle, then, *args)
        elif time.monotonic() > limit:
            result["timeouts"].append(what)
            print(f"curve_probe: timed out after {WAIT:.0f} s waiting for: {what}", file=sys.stderr)
            then(*args)
        else:
            reactor.callLater(POLL, poll)
    poll()


def cut(monitor: zmq.Socket) -> bool:
    """Whether ``monitor`` (a socket monitor for EVENT_DISCONNECTED) has seen its socket's
    connection dropped."""
    while monitor.poll(0):
        if recv_monitor_message(monitor, zmq.NOBLOCK)["event"] == zmq.EVENT_DISCONNECTED:
            result["big_cut"] = True
    return bool(result.get("big_cut"))


REFUSED = ("none", "wrong", "revoked", "wrong-server-key")


@step
def step1() -> None:
    for name, client in clients.items():
        client.send(f"hello from {name}".encode())
    wait_for("both accepted clients' hellos, and a handshake failure for each refused client",
             lambda: len(result["got"]) >= 2 and all(clients[n].handshakes.last_failure for n in REFUSED),
             step2, settle=0.2)


@step
def step2() -> None:
    result["handshakes"] = {name: c.handshakes.last_failure for name, c in clients.items()}
    result["phase1"] = list(result["got"])
    # Revoked while connected: takes effect at its next message, without a restart.
    revoke(store, "later-revoked")
    result["reloaded"] = gate.reload()
    clients["later-revoked"].send(b"after revoke")
    wait_for("the revoked key's message refused", lambda: router.stats.refused_revoked >= 1, step3)


@step
def step3() -> None:
    clients["later-revoked"].send(b"after revoke, reconnected")
    clients["good"].send(b"still fine")
    wait_for("'still fine' delivered, and the revoked key's reconnection refused",
             lambda: "still fine" in texts() and clients["later-revoked"].handshakes.last_failure == "key_refused",
             step4, settle=0.2)


@step
def step4() -> None:
    result["later_revoked_handshake"] = clients["later-revoked"].handshakes.last_failure
    result["refused_revoked"] = router.stats.refused_revoked
    result["rss_mib"].append(rss_mib())
    result["flooders"] = [raw(f"flood-{i}") for i in range(FLOODERS)]
    flood(0)


@step
def flood(i: int) -> None:
    if i == FLOODERS:
        step5()
        return
    result["flooders"][i].send_multipart([b"x" * 16] * FLOOD_FRAMES, zmq.NOBLOCK)
    # Measured once the router has read (and dropped) the whole message and cut its sender.
    wait_for(f"flood {i} read and its sender cut off", lambda: router.stats.bad_frames > i, measure, i,
             settle=0.5)


@step
def measure(i: int) -> None:
    result["rss_mib"].append(rss_mib())
    flood(i + 1)


@step
def step5() -> None:
    result["bad_frames"] = router.stats.bad_frames
    result["disconnected_peers"] = router.stats.disconnected_peers
    try:  # its reconnection was refused (cool-down), so there may be no connection left to queue on
        result["flooders"][0].send(b"flooder again, within its cool-down", zmq.NOBLOCK)
        result["flooder_again"] = "queued"
    except zmq.Again:
        result["flooder_again"] = "no connection"
    big = raw("big")
    result["big_monitor"] = big.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    result["big_cut"] = False
    big.send(b"y" * (5 * 2**20), zmq.NOBLOCK)  # over MAXMSGSIZE: libzmq cuts the connection
    result["big"] = big
    after = raw("after-flood")
    after.send(b"after the flood", zmq.NOBLOCK)
    result["after"] = after
    wait_for("'after the flood' delivered, and the 5 MiB sender's connection cut",
             lambda: "after the flood" in texts() and cut(result["big_monitor"]), finish, settle=0.5)


def finish(deadline: bool = False) -> None:
    """Ends the run, once, whatever state it is in: takes the final snapshot, closes what is
    open and always stops the reactor."""
    global finished
    if finished:
        return
    finished = True
    if deadline:
        result["deadline_hit"] = f"the {DEADLINE:.0f} s deadline passed in step {result.get('step')}"
    result["final"] = list(result["got"])
    try:
        if result.get("big") is not None and result.get("big_monitor") is not None:
            result["big"].disable_monitor()
        socks = result.pop("flooders", []) + [result.pop(k, None) for k in ("big_monitor", "big", "after")]
        for sock in socks:
            if sock is not None:
                sock.close(linger=0)
        for client in clients.values():
            client.close()
        router.close()
    finally:
        reactor.stop()


reactor.callWhenRunning(step1)
reactor.callLater(max(0.0, DEADLINE - (time.monotonic() - STARTED)), finish, True)
reactor.run()
shutil.rmtree(store, ignore_errors=True)  # the probe's key store
result.pop("got")
json.dump(result, sys.stdout)
