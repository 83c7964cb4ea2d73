"""Run as a subprocess by test_undelivered.py: the master's CURVE ROUTER (the real transport, on a
real asyncio reactor) against a key holder streaming a multipart message that never ends
(multipart_streamer.py, in its own process: only the master's memory is measured here), while a
well-behaved client sends a message every 100 ms and a legitimate client sends two 4 MiB messages.

Prints JSON: what each client got through, the master's resident memory (sampled every 50 ms,
after malloc_trim: what is really held), the connections cut, and the streamers' own reports."""

import time

STARTED = time.monotonic()

import ctypes  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

from tepui.sdk.runtime import install_reactor  # noqa: E402

reactor = install_reactor()

from tepui.sdk.curve import CurveServer, KeyGate  # noqa: E402
from tepui.sdk.keys import init_store, issue, load_client_keys  # noqa: E402
from tepui.sdk.dealer import DealerEndpoint  # noqa: E402
from tepui.sdk.router import RouterEndpoint  # noqa: E402

STREAMER = os.path.join(os.path.dirname(__file__), "multipart_streamer.py")
TOTAL = 1 << 30  # bytes of frames the first streamer sends, over as many connections as it takes
BIG = 4 << 20
DEADLINE = 200.0

store = tempfile.mkdtemp(prefix="tepui-undelivered-probe-")
server = init_store(store)
keys = {name: load_client_keys(issue(store, name, "agent")[1]) for name in ["good", "big", "stream", "known"]}
gate = KeyGate(server.allow_list_path)
result: dict[str, Any] = {"good": 0, "big": [], "other": [], "rss_mib": []}
got: list[tuple[str, int]] = []


def on_message(peer: bytes, payload: bytes, identity: str | None) -> None:
    if identity == "good":
        result["good"] += 1
    elif identity == "big":
        result["big"].append(len(payload))
    else:
        result["other"].append([identity, len(payload)])


router = RouterEndpoint(reactor, "tcp://127.0.0.1:*", on_message, curve=CurveServer(server.public, server.secret, gate))
port = router.address.rsplit(":", 1)[1]
good = DealerEndpoint(reactor, router.address, lambda p: None, curve=keys["good"])
big = DealerEndpoint(reactor, router.address, lambda p: None, curve=keys["big"])

try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None


def rss_mib() -> float:
    if _malloc_trim is not None:
        _malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    """The process's peak resident memory so far (VmHWM): nothing between two samples escapes it."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def tick() -> None:
    good.send(b"tick")
    reactor.callLater(0.1, tick)


def streamer(name: str, total: int, seconds: float, *extra: str) -> subprocess.Popen:
    k = keys[name]
    process = subprocess.Popen([sys.executable, STREAMER, "127.0.0.1", port, k.server.decode(), k.public.decode(),
                             k.secret.decode(), str(total), str(seconds), *extra], stdout=subprocess.PIPE)
    streamers.append(process)
    return process


def fail(exc: BaseException) -> None:
    result["error"] = "".join(traceback.format_exception(exc))
    reactor.stop()


async def scenario() -> None:
    from twisted.internet import task

    def sleep(seconds: float) -> Any:
        return task.deferLater(reactor, seconds, lambda: None)

    tick()
    await sleep(0.5)
    # A legitimate client's two largest messages back to back: delivered, never cut.
    big.send(b"b" * BIG)
    big.send(b"c" * BIG)
    while len(result["big"]) < 2 and time.monotonic() - STARTED < 30:
        await sleep(0.05)
    await sleep(0.5)
    result["cut_after_big"] = router.stats.cut_undelivered
    result["rss_before_mib"] = rss_mib()
    result["peak_before_mib"] = peak_mib()
    good_before = result["good"]
    # The endless multipart message: 1 GiB of 64 KiB frames, reconnecting after each cut.
    process = streamer("stream", TOTAL, 150)
    started = time.monotonic()
    while process.poll() is None:
        result["rss_mib"].append(rss_mib())
        await sleep(0.05)
    result["stream_seconds"] = time.monotonic() - started
    result["peak_after_mib"] = peak_mib()
    result["stream"] = json.loads(process.stdout.read())
    result["good_during_stream"] = result["good"] - good_before
    result["cut_after_stream"] = router.stats.cut_undelivered
    # A streamer whose key the master knows (it sent a whole message first): its key is refused
    # for a cool-down after the cut, so its reconnections are refused.
    process = streamer("known", 1 << 40, 4, "--first-a-whole-message")
    while process.poll() is None:
        await sleep(0.05)
    result["known"] = json.loads(process.stdout.read())
    result["rss_after_mib"] = rss_mib()
    result["limit"] = router.undelivered.limits.per_connection
    reactor.stop()


def start() -> None:
    from twisted.internet import defer

    defer.ensureDeferred(scenario()).addErrback(lambda failure: fail(failure.value))


streamers: list[subprocess.Popen] = []
reactor.callWhenRunning(start)
reactor.callLater(DEADLINE, lambda: (result.setdefault("deadline_hit", True), reactor.stop()))
try:
    reactor.run()
finally:
    for process in streamers:
        if process.poll() is None:
            process.kill()
            process.wait()
good.close()
big.close()
router.close()
shutil.rmtree(store, ignore_errors=True)
json.dump(result, sys.stdout)
