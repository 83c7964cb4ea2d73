"""Epoch fencing with real processes (RELIABILITY scenario 27): an old master frozen with SIGSTOP
while a new one serves the same registry, then resumed, changes nothing.

    agent ──► chaos proxy ─┬─► master A (epoch a; SIGSTOPped, later resumed)
    framework ──► proxy ───┘   master B (epoch b > a; same --work-dir, other ports)

Each peer reaches the masters through its own ``bench/chaos_proxy.py``. Before A is frozen, the
proxies hold back what A sends (as a socket buffer would); ``master`` then points them at B, so
the peers reconnect and follow B while their links to A stay open; once they follow B, the held
messages are delivered: A's stale pings and heartbeats reach both peers, which must drop and
count every one. Then A is resumed: its overdue timers fire (the agent looks silent to it, so it
tries to mark it unreachable in the registry) and it must find B's epoch in the registry and
exit without writing, while the task keeps running in the same process under B.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tepui.master.durability.epoch import stored_epoch
from tepui.master.durability.registry import AGENTS, UNREACHABLE
from tepui.sdk.store import SQLiteStore
from tests.chaos.processes import OneAgentCluster, wait_for
from tests.e2e.conftest import REPO, child_env, free_ports, http_get, stop_process

pytestmark = pytest.mark.slow

PROXY = REPO / "bench" / "chaos_proxy.py"
MASTER_ARGS = ("--heartbeat-interval", "2")  # a framework hears from its master every 2 s (15 s by default)


class Link:
    """One ``bench/chaos_proxy.py`` (no faults): commands on its stdin, its JSON answers read by
    a thread so that a test never blocks on a proxy that has nothing to say."""

    def __init__(self, root: Path, name: str, master_port: int) -> None:
        [self.port] = free_ports(1)
        with open(root / f"proxy-{name}.log", "ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, str(PROXY), "--listen", str(self.port), "--master", f"127.0.0.1:{master_port}",
                 "--name", name, "--fault-rate", "0", "--duplicate-rate", "0"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=child_env())
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready")

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                self.answers.put(json.loads(line))
            except ValueError:
                continue

    def expect(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = self.answers.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if answer.get("event") == event:
                return answer
        raise AssertionError(f"proxy on port {self.port} did not answer {event!r}")

    def ask(self, command: str, event: str) -> dict[str, Any]:
        assert self.popen.stdin is not None
        self.popen.stdin.write((command + "\n").encode())
        self.popen.stdin.flush()
        return self.expect(event)

    def stats(self) -> dict[str, Any]:
        return self.ask("stats", "stats")

    def stop(self) -> None:
        if self.popen.poll() is None and self.popen.stdin is not None:
            try:
                self.popen.stdin.write(b"quit\n")
                self.popen.stdin.flush()
            except OSError:
                pass
        stop_process(self.popen, 5)


def essentials(state: dict[str, Any]) -> dict[str, Any]:
    """What a stale master must not change in the serving master's view."""
    return {
        "id": state["id"],
        "epoch": state["epoch"],
        "agents": sorted(agent["id"] for agent in state["slaves"]),
        "unreachable": state["unreachable_agents"],
        "gone": state["gone_slaves"],
        "frameworks": sorted((f["id"], f["active"], f["connected"],
                              sorted((t["id"], t["state"], t["slave_id"]) for t in f["tasks"]))
                             for f in state["frameworks"]),
        "completed_frameworks": [f["id"] for f in state["completed_frameworks"]],
    }


def test_27_a_master_frozen_while_a_new_one_took_over_its_registry_changes_nothing_when_resumed(
        tmp_path: Path) -> None:
    cluster = OneAgentCluster(tmp_path)
    registry = tmp_path / "master" / "registry.db"
    links: list[Link] = []
    old_master: subprocess.Popen[bytes] | None = None
    try:
        # Master A; the agent and the framework each reach it through a proxy.
        a_port, a_http = cluster.port, cluster.http_port
        cluster.start_master("--work-dir", str(tmp_path / "master"), *MASTER_ARGS)
        old_master = cluster.master
        assert old_master is not None
        agent_link, framework_link = Link(tmp_path, "agent", a_port), Link(tmp_path, "framework", a_port)
        links += [agent_link, framework_link]
        cluster.port = agent_link.port
        cluster.start_agent()
        wait_for(lambda: cluster.state().get("activated_slaves") == 1, "the agent to register", timeout=60,
                 logs=cluster.tail_logs)
        cluster.port = framework_link.port
        cluster.start_framework({"long": "exec sleep 600"})
        wait_for(lambda: cluster.latest_states().get("long") == "TASK_RUNNING", "the task to run", timeout=60,
                 logs=cluster.tail_logs)
        pids = cluster.settled_task_processes("long")
        assert pids, "the task's processes are in its sandbox"
        state_a = cluster.state()
        epoch_a = state_a["epoch"]
        [agent] = state_a["slaves"]
        framework_id = cluster.framework_id()

        def health() -> dict[str, Any]:
            """The agent's /health: its master epoch and stale-epoch messages dropped."""
            try:
                status, body = http_get(agent["http_port"], "/health")
            except OSError:
                return {}
            return json.loads(body) if status == 200 else {}  # type: ignore[no-any-return]

        def driver() -> dict[str, Any]:
            """The framework's driver, as it last reported: epoch, stale-epoch messages dropped."""
            return ([e for e in cluster.events() if e["event"] == "driver"] or [{}])[-1]

        with SQLiteStore(registry) as store:
            assert stored_epoch(store) == epoch_a
        wait_for(lambda: health().get("master_epoch") == epoch_a and driver().get("epoch") == epoch_a,
                 "the agent and the framework to follow epoch a", logs=cluster.tail_logs)

        # What A sends from now on waits in the proxies, as in a socket buffer; A is frozen once
        # each peer has at least one message from it held (a ping; a heartbeat).
        for link in links:
            link.ask("hold", "holding")
        wait_for(lambda: all(link.stats()["down_held"] >= 1 for link in links),
                 "a message from A held for each peer", timeout=60, logs=cluster.tail_logs)
        old_master.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()

        # Master B on the same registry, on its own ports (A's are still bound).
        cluster.port, cluster.http_port = free_ports(2)
        b_port = cluster.port
        cluster.start_master("--work-dir", str(tmp_path / "master"), *MASTER_ARGS)
        wait_for(lambda: cluster.state().get("id"), "master B to serve", timeout=60, logs=cluster.tail_logs)
        epoch_b = cluster.state()["epoch"]
        assert epoch_b > epoch_a
        with SQLiteStore(registry) as store:
            assert stored_epoch(store) == epoch_b
        for link in links:
            link.ask(f"master 127.0.0.1:{b_port}", "master_changed")

        def following_b() -> bool:
            state = cluster.state()
            tasks = [(t["id"], t["state"]) for f in state.get("frameworks", []) if f["id"] == framework_id and
                     f["active"] for t in f["tasks"]]
            return ([s["id"] for s in state.get("slaves", [])] == [agent["id"]] and
                    tasks == [("long", "TASK_RUNNING")] and health().get("master_epoch") == epoch_b and
                    health().get("registered") is True and driver().get("epoch") == epoch_b)

        wait_for(following_b, "the agent and the framework to re-register with B, the task RUNNING", timeout=90,
                 logs=cluster.tail_logs)
        assert cluster.task_processes("long") == pids, "the same task, in the same process"
        assert (health().get("stale_epoch_dropped"), driver().get("stale_epoch_dropped")) == (0, 0)

        # A's messages queued across the failover reach peers that follow B: dropped, counted.
        for link in links:
            assert link.ask("release", "released")["messages"] >= 1
        wait_for(lambda: health().get("stale_epoch_dropped", 0) >= 1 and driver().get("stale_epoch_dropped", 0) >= 1,
                 "the peers to drop A's queued messages", logs=cluster.tail_logs)
        before = essentials(cluster.state())
        seen = len(cluster.events())

        # A resumes after longer than its agent-silence limit (2 s x 5): its timers fire, it finds
        # epoch b in the registry, and it exits without writing.
        time.sleep(max(0.0, 12.0 - (time.monotonic() - frozen_at)))
        old_master.send_signal(signal.SIGCONT)
        assert old_master.wait(60) == 1, "the superseded master exits"
        assert "event=master_superseded" in (tmp_path / "master-1.log").read_text()
        time.sleep(2.0)  # anything A sent in its last moment lands

        assert essentials(cluster.state()) == before
        assert cluster.task_processes("long") == pids
        assert (health().get("registered"), health().get("master_epoch")) == (True, epoch_b)
        with SQLiteStore(registry) as store:
            assert stored_epoch(store) == epoch_b
            assert list(store.list(AGENTS)) == [agent["id"]] and store.list(UNREACHABLE) == {}
        heard = [e for e in cluster.events()[seen:] if e["event"] != "driver"]
        assert [e for e in heard if e["event"] != "status" or e["state"] != "TASK_RUNNING"] == [], \
            "the framework neither re-subscribed nor heard of any change"
        # Every message A sent after the failover reached its peer and was dropped there.
        agent_stale = agent_link.stats()["down_from_old_master"]
        framework_stale = framework_link.stats()["down_from_old_master"]
        assert agent_stale >= 1 and framework_stale >= 1
        wait_for(lambda: (health().get("stale_epoch_dropped"), driver().get("stale_epoch_dropped"))
                 == (agent_stale, framework_stale), "every stale message counted", logs=cluster.tail_logs)
        print(f"epochs a={epoch_a} b={epoch_b}; stale messages dropped: agent {agent_stale}, "
              f"framework {framework_stale}")
    finally:
        if old_master is not None and old_master.poll() is None:
            os.kill(old_master.pid, signal.SIGCONT)
            stop_process(old_master, 10)
        cluster.stop()
        for link in links:
            link.stop()
