"""HA frameworks (issue 19, item 4) as an operator runs them: real `tepui services` (and `tepui
batch`) processes with ``--zk`` on the standalone ZooKeeper (TEPUI_TEST_ZK, a path of their own
per test), a real master and agent. One instance leads, the other answers 307 to it; SIGKILL the
leader and the standby takes over within the session timeout, re-subscribes under the same
framework id with the apps (jobs) in the shared store, the tasks keep running (not relaunched), and the master's
``/frameworks/<name>/`` proxy reaches the new leader. A leader whose session is lost (SIGSTOP
past the session timeout) exits non-zero and never writes again."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, child_env, free_ports, stop_process, tail, tepui_cmd

pytestmark = pytest.mark.slow

SESSION_TIMEOUT = 2.0
# Per framework: what is submitted through the proxy (path, body, content type), and where the
# leader then reads it back.
WORK = {
    "services": ("/v1/apps", "id: /sleepy\ncommand: sleep 3600\ncpus: 0.1\nmem: 16\ninstances: 2\n",
                 "application/yaml", "/v1/apps/sleepy"),
    "batch": ("/v1/jobs?id=sleepy-1", json.dumps({"name": "sleepy", "stages": [
        {"name": "s", "command": "sleep 3600", "array": 2, "resources": {"cpus": 0.1, "mem": 16}}]}),
        "application/json", "/v1/jobs/sleepy-1"),
}


@pytest.fixture
def zk_url() -> Iterator[str]:
    hosts = os.environ.get("TEPUI_TEST_ZK")
    if not hosts:
        pytest.skip("TEPUI_TEST_ZK is unset: run through scripts/test, which starts a standalone ZooKeeper")
    path = f"/tepui-test-framework-ha-{uuid.uuid4().hex[:12]}"
    yield f"zk://{hosts}{path}"
    from kazoo.client import KazooClient

    client = KazooClient(hosts=hosts)
    client.start(timeout=10)
    try:
        client.delete(path, recursive=True)
    finally:
        client.stop()
        client.close()


class Instance:
    """One `tepui NAME --zk` process on its own API port, called directly (redirects are not
    followed, so a 307 is seen as such)."""

    def __init__(self, root: Path, label: str, zk: str, master: str, token_file: Path | None = None,
                 name: str = "services") -> None:
        self.root, self.label, self.zk, self.master, self.token_file = root, label, zk, master, token_file
        self.name = name
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.id = f"{name}@127.0.0.1:{self.port}"
        self.log = root / f"{name}-{label}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        token = ["--http-token-file", str(self.token_file)] if self.token_file else []
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(
                tepui_cmd(self.name, "--master", self.master, "--zk", self.zk, "--zk-session-timeout",
                          str(SESSION_TIMEOUT), "--http-port", str(self.port), *token),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=child_env(), cwd=self.root)

    def get(self, path: str) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            raw = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw or b"null")
        except (OSError, ValueError):
            return 0, {}, None
        finally:
            connection.close()

    def health(self) -> dict[str, Any]:
        status, _headers, body = self.get("/v1/health")
        return body if status == 200 and isinstance(body, dict) else {}

    def leads(self) -> bool:
        return "role" not in self.health() and self.health().get("subscribed") is True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, 10)


def wait(condition: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str]) -> float:
    """Seconds it took until ``condition``; an AssertionError with the logs after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{logs()}")


def proxied(cluster: Cluster, name: str, path: str, method: str = "GET", body: str | None = None,
            content_type: str = "application/json") -> tuple[int, Any]:
    """A call through the master's /frameworks/NAME/ proxy with the cluster token."""
    connection = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=10)
    try:
        connection.request(method, f"/frameworks/{name}{path}", body=body, headers={
            "Authorization": f"Bearer {cluster.token}", "Content-Type": content_type})
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw or b"null")
        except ValueError:
            return response.status, raw.decode(errors="replace")
    finally:
        connection.close()


def running_tasks(cluster: Cluster, name: str) -> list[str]:
    """The ids of framework NAME's running tasks, as the master has them."""
    state = cluster.state()
    return sorted(t["id"] for f in state["frameworks"] if f["name"] == name for t in f["tasks"]
                  if t["state"] == "TASK_RUNNING")


@pytest.mark.parametrize("name", ["services", "batch"])
def test_a_standby_takes_over_a_killed_leader_and_the_tasks_keep_running(tmp_path: Path, zk_url: str,
                                                                         name: str) -> None:
    cluster = Cluster(tmp_path, agents=1, kill_grace_period=1.0, master_args=["--allocation-interval", "0.2"])
    a = Instance(tmp_path, "a", zk_url, cluster.master, tmp_path / "http-token", name)
    b = Instance(tmp_path, "b", zk_url, cluster.master, tmp_path / "http-token", name)
    for instance in (a, b):
        cluster.master_args += ["--proxy-allow", f"127.0.0.1:{instance.port}"]
        cluster.logs[f"{name}-{instance.label}"] = instance.log

    def logs() -> str:
        return cluster.log_tails(40)

    try:
        cluster.start()
        a.start()
        wait(a.leads, 30, "instance a leading and subscribed", logs)
        b.start()
        wait(lambda: (b.health().get("leader") or {}).get("id") == a.id, 20, "b standing by for a", logs)
        assert b.health() == {"ok": True, "role": "standby", "instance": b.id, "subscribed": False,
                              "leader": {"id": a.id, "http": a.url, "epoch": 1}}
        status, headers, body = b.get("/v1/anything?embed=x")
        assert (status, headers["location"], body["reason"]) == (307, f"{a.url}/v1/anything?embed=x", "NOT_LEADER")

        framework_id = a.health()["framework_id"]
        submit, spec, content_type, read_back = WORK[name]
        status, answer = proxied(cluster, name, submit, "POST", spec, content_type)
        assert status in (200, 201), answer
        wait(lambda: len(running_tasks(cluster, name)) == 2, 60, "2 tasks running", logs)
        before = running_tasks(cluster, name)

        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        took = wait(b.leads, 20, "b leading and subscribed after a's SIGKILL", logs)
        print(f"framework_failover_seconds={took:.2f} (session timeout {SESSION_TIMEOUT:g} s)")
        assert took < SESSION_TIMEOUT + 6

        assert b.health()["framework_id"] == framework_id  # the same framework, failed over
        state = cluster.state()
        [ours] = [f for f in state["frameworks"] if f["name"] == name]
        assert (ours["id"], ours["webui_url"], ours["active"]) == (framework_id, b.url, True)
        # The master's proxy reaches the new leader (a is dead): the work came from the shared store.
        status, found = proxied(cluster, name, read_back)
        assert status == 200, found
        time.sleep(3)  # reconciliation and a few offer cycles: nothing is relaunched
        assert running_tasks(cluster, name) == before
        state = cluster.state()
        [ours] = [f for f in state["frameworks"] if f["name"] == name]
        assert sorted(t["id"] for t in ours["tasks"]) == before and ours["completed_tasks"] == []
    finally:
        b.stop()
        a.stop()
        cluster.stop()


def test_a_leader_whose_session_is_lost_exits_non_zero_and_a_standby_leads(tmp_path: Path, zk_url: str) -> None:
    """SIGSTOP past the session timeout: ZooKeeper expires the leader's session, the standby
    takes over (epoch 2), and the old leader, resumed, finds its session gone and exits 1."""
    nowhere = f"127.0.0.1:{free_ports(1)[0]}"  # no master: leadership needs none
    a = Instance(tmp_path, "a", zk_url, nowhere)
    b = Instance(tmp_path, "b", zk_url, nowhere)

    def logs() -> str:
        return "\n".join(f"===== {i.label} =====\n{tail(i.log, 40)}" for i in (a, b))

    try:
        a.start()
        wait(lambda: a.health().get("subscribed") is False and "role" not in a.health(), 20, "a serving", logs)
        b.start()
        wait(lambda: (b.health().get("leader") or {}) == {"id": a.id, "http": a.url, "epoch": 1}, 20,
             "b standing by for a", logs)
        assert a.process is not None
        a.process.send_signal(signal.SIGSTOP)
        try:
            took = wait(lambda: "role" not in b.health() and b.health() != {}, SESSION_TIMEOUT + 8,
                        "b serving after a stopped", logs)
            print(f"takeover_after_sigstop_seconds={took:.2f}")
            assert a.process.poll() is None
        finally:
            a.process.send_signal(signal.SIGCONT)
        assert a.process.wait(15) == 1, tail(a.log, 40)
        assert "event=framework_leadership_lost" in a.log.read_text()
        assert "epoch=2" in b.log.read_text()
    finally:
        b.stop()
        a.stop()


def test_a_leader_stopped_with_sigterm_hands_over_at_once_and_exits_0(tmp_path: Path, zk_url: str) -> None:
    """SIGTERM: the leader leaves the election (deletes its node), so the standby leads well
    before the session timeout would have let it."""
    nowhere = f"127.0.0.1:{free_ports(1)[0]}"
    a = Instance(tmp_path, "a", zk_url, nowhere)
    b = Instance(tmp_path, "b", zk_url, nowhere)

    def logs() -> str:
        return "\n".join(f"===== {i.label} =====\n{tail(i.log, 40)}" for i in (a, b))

    try:
        a.start()
        wait(lambda: a.health().get("subscribed") is False and "role" not in a.health(), 20, "a serving", logs)
        b.start()
        wait(lambda: (b.health().get("leader") or {}).get("id") == a.id, 20, "b standing by for a", logs)
        assert a.process is not None
        a.process.send_signal(signal.SIGTERM)
        took = wait(lambda: "role" not in b.health() and b.health() != {}, 10, "b serving after a's SIGTERM", logs)
        print(f"takeover_after_sigterm_seconds={took:.2f}")
        assert a.process.wait(10) == 0
        assert took < SESSION_TIMEOUT - 0.5, "the standby waited for the session timeout: a did not leave"
    finally:
        b.stop()
        a.stop()
