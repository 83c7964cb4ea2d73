"""The ZeroMQ transport over real sockets (in a subprocess, on Twisted's asyncio reactor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tepui.sdk.transport import tcp_address

PROBE = os.path.join(os.path.dirname(__file__), "transport_probe.py")


@pytest.mark.slow
def test_drain_loop_delivers_everything_in_order_counts_bad_frames_and_reports_unreachable_peers() -> None:
    done = subprocess.run([sys.executable, PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["router_got"] == 20_000 and result["in_order"]
    # Drained in batches, not one wake-up per message.
    assert result["batches"] < 20_000 / 2
    # Sent in batches: what one turn queued for a peer leaves as few frames (tepui.sdk.batch),
    # at most 10,000 envelopes each, and the receiver gets every envelope in order.
    assert result["dealer_sent"] == 20_000 and result["dealer_frames_sent"] == 2
    assert result["router_received"] == 3  # the two batches and the bad multi-frame message
    assert result["dealer_frames"] == 1  # the three answers, in one frame
    assert result["router_bad_frames"] == 1
    assert result["dealer_got"] == [0, 1, 2]
    assert result["unreachable"] == ["no-such-peer"]


@pytest.mark.slow
def test_a_peer_that_stops_reading_holds_back_only_its_own_messages() -> None:
    """Per-peer send queues: with one shared queue, the first frame a stalled peer could not
    take held back every later message to everyone (an agent stuck in a long pause would delay
    every other agent's pings and run-task messages)."""
    probe = os.path.join(os.path.dirname(__file__), "queue_probe.py")
    done = subprocess.run([sys.executable, probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["queued"] > 0 and result["peers_waiting"] == 1, result  # the stalled peer's queue
    assert result["fast_got"] == 200 and result["in_order"], result


@pytest.mark.slow
def test_a_dealer_hears_when_its_connection_comes_back_after_a_loss() -> None:
    """What lets agents re-register and frameworks re-subscribe at once after a master restart."""
    probe = os.path.join(os.path.dirname(__file__), "reconnect_probe.py")
    done = subprocess.run([sys.executable, probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["reconnects"] == 1, result  # the first connection is not a reconnection
    assert result["got"] == ["before", "after"]


def test_tcp_address_parses_and_explains() -> None:
    assert tcp_address("10.0.0.1:5050", 5050) == "tcp://10.0.0.1:5050"
    assert tcp_address("master", 5050) == "tcp://master:5050"
    assert tcp_address("tcp://h:1", 5050) == "tcp://h:1"
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        tcp_address("h:99999", 5050)
