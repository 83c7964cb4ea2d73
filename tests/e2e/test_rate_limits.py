"""Scenario 37 with real processes: a framework flooding the master at 10x its allowance is
throttled (its calls answered with ERRORs, counted by principal in /metrics) while a second
framework's launch latency (ACCEPT → TASK_RUNNING, median of 10) stays within 2x its unloaded
value. The rate limit is lowered to 100/s here so that 10x is a flood this machine can send."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cluster, http_get

pytestmark = pytest.mark.slow
FRAMEWORK = Path(__file__).with_name("rate_framework.py")
RATE = 100


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    instance = Cluster(tmp_path_factory.mktemp("rates"), agents=1,
                       master_args=["--framework-rate-limit", f"{RATE}/s", "--framework-rate-burst", str(RATE)])
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def latencies(cluster: Cluster) -> list[float]:
    done = subprocess.run([sys.executable, str(FRAMEWORK), "--master", cluster.master, "--mode", "latency",
                           "--launches", "10"], capture_output=True, text=True, timeout=120,
                          env=cluster.env_for("calm"))  # a key of its own: principals are bound to keys
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and {"event": "done"} in events, done.stdout + done.stderr + cluster.log_tails()
    assert not [e for e in events if e["event"] == "error"], events
    return [e["seconds"] for e in events if e["event"] == "latency"]


def metric(cluster: Cluster, name: str) -> float:
    _status, body = http_get(cluster.http_port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_37_a_flooding_framework_is_throttled_and_another_keeps_its_launch_latency(cluster: Cluster) -> None:
    latencies(cluster)  # warm up: the first launch pays for imports and page cache
    unloaded = statistics.median(latencies(cluster))

    flood = subprocess.Popen([sys.executable, str(FRAMEWORK), "--master", cluster.master, "--mode", "flood",
                              "--rate", str(10 * RATE), "--seconds", "60"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=cluster.env_for("flood"))
    try:
        assert flood.stdout is not None
        assert json.loads(flood.stdout.readline())["event"] == "flooding"
        deadline = time.monotonic() + 10
        while metric(cluster, 'tepui_master_rate_limited_by_principal_total{principal="flood"}') < 100:
            assert time.monotonic() < deadline, "the flood was not throttled:\n" + cluster.log_tails()
            time.sleep(0.2)
        loaded = statistics.median(latencies(cluster))
    finally:
        flood.terminate()
        flood.wait(10)
    dropped = metric(cluster, 'tepui_master_rate_limited_by_principal_total{principal="flood"}')
    assert metric(cluster, 'tepui_master_rate_limited_by_principal_total{principal="calm"}') == 0
    print(f"launch latency median: unloaded {unloaded * 1000:.1f} ms, while flooded {loaded * 1000:.1f} ms; "
          f"flood calls dropped {dropped:g}")
    assert loaded <= 2 * unloaded, (unloaded, loaded)
