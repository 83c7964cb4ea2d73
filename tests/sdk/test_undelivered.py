"""The bound on undelivered bytes per connection (tepui.sdk.undelivered): the pure accounting on
exact numbers, the wire size it credits (checked against a live CURVE connection), and scenario
33's multipart half over real sockets: a key holder streaming a multipart message that never
ends is cut, again and again, while the master's memory stays bounded and everyone else is served."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import zmq

from tepui.sdk.undelivered import Cut, Limits, Undelivered, curve_wire_size, tcp_bytes_received

LIMITS = Limits(per_connection=1000, ceiling=4000, forgive=100, streaming_rate=500)


def test_a_connection_holding_more_than_its_limit_once_drained_is_cut_and_streaming_refuses_its_key() -> None:
    books = Undelivered(LIMITS)
    books.accepted(7, now=0.0)
    books.delivered(7, 50, "agent-1")
    assert books.check({7: 50 + 900}, now=0.5, drained=True) == []  # 900 held: under the limit
    assert books.check({7: 50 + 1001}, now=1.0, drained=True) == [Cut(7, 1001, "agent-1", block=True)]
    assert 7 not in books.connections  # forgotten: libzmq's own disconnect event comes next


def test_whole_messages_waiting_to_be_read_count_only_against_the_ceiling() -> None:
    books = Undelivered(LIMITS)
    books.accepted(3, now=0.0)
    assert books.check({3: 3000}, now=1.0, drained=False) == []
    assert [cut.fd for cut in books.check({3: 4001}, now=2.0, drained=False)] == [3]


def test_delivered_messages_are_credited_and_a_connection_that_keeps_up_forgets_its_heartbeats() -> None:
    books = Undelivered(LIMITS)
    books.accepted(4, now=0.0)
    for second in range(1, 40):
        # Each second: a 900-byte message delivered, and 40 bytes of heartbeats never delivered.
        books.delivered(4, 900, "fw")
        assert books.check({4: second * 940}, now=float(second), drained=True) == []
    assert books.connections[4].base == 39 * 940  # the heartbeats were forgiven as they came


def test_an_idle_connections_heartbeats_reach_the_limit_after_a_long_time_and_its_key_is_not_refused() -> None:
    books = Undelivered(LIMITS)
    books.accepted(5, now=0.0)
    books.delivered(5, 60, "fw")
    assert books.check({5: 60}, now=1.0, drained=True) == []
    # No message for 1000 s: 1.1 bytes a second of heartbeats. Cut (it reconnects), key not refused.
    assert books.check({5: 60 + 1100}, now=1001.0, drained=True) == [Cut(5, 1100, "fw", block=False)]


def test_a_descriptor_number_used_again_starts_from_zero_and_unknown_connections_are_skipped() -> None:
    books = Undelivered(LIMITS)
    books.accepted(9, now=0.0)
    books.delivered(9, 500, None)
    books.closed(9)
    books.accepted(9, now=1.0)  # the new connection gets what was pending (the safe error)
    assert books.check({9: 400}, now=2.0, drained=True) == []
    assert books.check({}, now=3.0, drained=True) == []  # TCP_INFO unreadable: nothing decided
    assert books.connections[9].identity is None


def test_limits_for_the_message_size_hold_two_largest_messages() -> None:
    limits = Limits.for_message_size(4 << 20)
    assert limits.per_connection > 2 * (4 << 20) + 2 * 1024
    assert limits.ceiling == 4 * limits.per_connection


def test_the_credited_wire_size_and_tcp_bytes_received_match_a_live_curve_connection() -> None:
    ctx = zmq.Context()
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    router = ctx.socket(zmq.ROUTER)
    router.curve_server, router.curve_secretkey = True, server_secret
    router.bind("tcp://127.0.0.1:*")
    dealer = ctx.socket(zmq.DEALER)
    dealer.curve_serverkey, dealer.curve_publickey, dealer.curve_secretkey = server_public, client_public, client_secret
    dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
    try:
        dealer.send(b"hello")
        fd = router.recv_multipart(copy=False)[1].get(zmq.SRCFD)
        for size in (0, 1, 222, 223, 70_000):
            before = tcp_bytes_received(fd)
            assert before is not None
            dealer.send(b"x" * size)
            router.recv_multipart()
            deadline = time.monotonic() + 5
            while tcp_bytes_received(fd) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            assert tcp_bytes_received(fd) - before == curve_wire_size(size), size
        assert tcp_bytes_received(-1) is None
    finally:
        dealer.close(0)
        router.close(0)
        ctx.term()


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    path = os.path.join(os.path.dirname(__file__), "undelivered_probe.py")
    done = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    assert "error" not in result and "deadline_hit" not in result, (result, done.stderr[-3000:])
    result["log"] = done.stderr
    return result


@pytest.mark.slow
def test_33_an_endless_multipart_message_is_cut_and_the_masters_memory_stays_bounded(probe: dict[str, Any]) -> None:
    stream = probe["stream"]
    assert stream["sent"] == 1 << 30  # 1 GiB of 64 KiB frames, never a last one
    assert stream["cut"] >= 1 << 30 // (probe["limit"] * 8)  # cut again and again, each time near the bound
    assert probe["cut_after_stream"] >= stream["cut"]
    growth = probe["peak_after_mib"] - probe["peak_before_mib"]
    print(f"\nstreamed 1 GiB over {stream['connections']} connections in {probe['stream_seconds']:.1f} s: "
          f"{stream['cut']} cuts, peak RSS {probe['peak_before_mib']:.0f} -> {probe['peak_after_mib']:.0f} MiB "
          f"(+{growth:.0f} MiB), trimmed RSS samples max {max(probe['rss_mib']):.0f} MiB")
    assert growth < 64, probe["rss_mib"]
    assert "event=undelivered_over_limit" in probe["log"]


@pytest.mark.slow
def test_a_well_behaved_client_is_served_throughout_and_two_4_mib_messages_are_not_cut(probe: dict[str, Any]) -> None:
    assert probe["big"] == [4 << 20, 4 << 20] and probe["cut_after_big"] == 0
    # One message every 100 ms from the good client: it kept being delivered during the stream.
    assert probe["good_during_stream"] >= probe["stream_seconds"] * 10 * 0.5


@pytest.mark.slow
def test_a_streamer_whose_key_is_known_is_refused_for_a_cool_down_after_its_cut(probe: dict[str, Any]) -> None:
    known = probe["known"]
    assert known["cut"] == 1 and known["refused"] >= 1
    assert "name=known reason=cooling_down_after_violation" in probe["log"]
