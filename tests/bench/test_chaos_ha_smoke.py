"""The chaos benchmark with highly available masters as a test: ``bench/chaos.py --masters 3
--smoke`` (issue 19's "Done when": it prints ``lost_or_duplicated=0``).

Three ``tepui master --zk`` on a 3-server ZooKeeper ensemble of the bench's own (free ports,
its temp dir, stopped at the end — never the shared test ensemble), each master in its own
network namespace, 60 tasks, 30 s of chaos with 5% of messages dropped and 5% duplicated on
every agent's and the framework's link, and the five HA faults one after another: the leading
master SIGKILLed, a ZooKeeper server (the quorum leader) SIGKILLed, the leader SIGSTOPped until
another leads and then resumed (it must exit non-zero: fenced), the framework's leading
instance SIGKILLed (its standby takes over with the same framework id), and the leader cut
from ZooKeeper by an iptables DROP in its namespace. 45–60 s here.

The bench needs root for the namespaces (without it, it runs without the partition fault and
says so); it removes its namespaces, veths and guard route at the end, which this test checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tepui.cli.ensemble import installed

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not installed(), reason="needs the ZooKeeper server jars (zookeeperd)")]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def test_chaos_with_three_ha_masters_loses_and_duplicates_nothing() -> None:
    # On a timeout the bench gets SIGTERM, not SIGKILL: it then removes its namespaces, veths,
    # guard route and ZooKeeper servers before it exits.
    bench = subprocess.Popen([sys.executable, str(BENCH), "--masters", "3", "--smoke"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        out, err = bench.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        bench.terminate()
        out, err = bench.communicate(timeout=60)
    result = subprocess.CompletedProcess(bench.args, bench.returncode, out, err)
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output (exit {result.returncode})\n{result.stderr[-3000:]}"
    assert lines[-1] == "lost_or_duplicated=0", f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, result.stdout
    ha = result.stdout[result.stdout.index("== HA ("):]
    for fault in ("leader SIGKILL", "ZooKeeper quorum leader SIGKILL", "leader SIGSTOP", "framework leader SIGKILL"):
        assert f"\n  {fault} " in ha, ha
    assert "old leader exited 1" in ha, ha  # the SIGSTOPped leader, resumed, was fenced
    assert "re-subscribed with the same id" in ha, ha
    assert "PROBLEM" not in ha, ha  # not fenced, or namespaces/veths/routes left behind (the bench checks)
    if os.geteuid() == 0:
        assert "\n  leader cut from ZooKeeper " in ha, ha
