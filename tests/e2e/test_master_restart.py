"""A master restarted on the same work dir keeps its registry: weights and quotas are back, and
the agent re-registers under its old id."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import child_env, free_ports, get_state, stop_agent, stop_process, tail, tepui_cmd, write_token

pytestmark = pytest.mark.slow


TOKEN_FILE: dict[int, Path] = {}  # http port → the master's --http-token-file


def call(port: int, method: str, path: str, body: object | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"authorization": f"Bearer {TOKEN_FILE[port].read_text().strip()}"} if port in TOKEN_FILE else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_master_restart_keeps_the_registry_and_the_agent_comes_back(tmp_path: Path) -> None:
    port, http_port = free_ports(2)
    master_dir, agent_dir = tmp_path / "master", tmp_path / "agent"
    write_token(tmp_path / "http-token")
    TOKEN_FILE[http_port] = tmp_path / "http-token"
    master_args = ["master", "--ip", "127.0.0.1", "--port", str(port), "--http-port", str(http_port),
                   "--work-dir", str(master_dir), "--http-token-file", str(tmp_path / "http-token"),
                   "--insecure"]  # not about security: plain ZeroMQ
    logs = {name: open(tmp_path / f"{name}.log", "ab") for name in ("master-1", "master-2", "agent")}

    def start_master(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(tepui_cmd(*master_args), stdout=logs[name], stderr=subprocess.STDOUT,
                                env=child_env())

    master = start_master("master-1")
    agent = subprocess.Popen(tepui_cmd("agent", "--master", f"127.0.0.1:{port}", "--work-dir", str(agent_dir),
                                       "--hostname", "agent-a", "--http-port", "0", "--master-silence-limit", "2",
                                       "--insecure"),
                             stdout=logs["agent"], stderr=subprocess.STDOUT, env=child_env())
    second = None
    try:
        wait_for(lambda: (get_state(http_port) or {}).get("activated_slaves") == 1, "the agent to register")
        agent_id = get_state(http_port)["slaves"][0]["id"]  # type: ignore[index]
        call(http_port, "PUT", "/weights", [{"role": "db", "weight": 4}])
        call(http_port, "POST", "/quota", {"role": "db", "limit": {"cpus": 1}})
        master.send_signal(signal.SIGKILL)  # no goodbye: the registry is all that is left
        master.wait(10)
        second = start_master("master-2")
        wait_for(lambda: get_state(http_port) is not None, "the new master to answer")
        assert call(http_port, "GET", "/weights") == (200, [{"role": "db", "weight": 4.0}])
        status, quotas = call(http_port, "GET", "/quota")
        assert quotas["infos"][0]["role"] == "db" and quotas["infos"][0]["limit"] == {"cpus": 1.0}  # type: ignore[index]
        wait_for(lambda: [s["id"] for s in (get_state(http_port) or {}).get("slaves", [])] == [agent_id],
                 "the agent to re-register under its old id", timeout=30)
    except BaseException:
        for name in logs:
            print(f"===== {name} =====\n{tail(tmp_path / f'{name}.log', 40)}")
        raise
    finally:
        stop_agent(agent, 15)
        for process in (second, master):
            if process is not None:
                stop_process(process, 10)


def test_28_a_master_that_cannot_write_its_registry_exits(tmp_path: Path) -> None:
    """Scenario 28: the store stops taking writes (here another process holds its write lock
    past the busy timeout) → the master exits rather than run with unpersisted state."""
    import sqlite3
    import threading

    port, http_port = free_ports(2)
    master_dir = tmp_path / "master"
    log_path = tmp_path / "master.log"
    write_token(tmp_path / "http-token")
    TOKEN_FILE[http_port] = tmp_path / "http-token"
    with open(log_path, "ab") as log_file:
        master = subprocess.Popen(tepui_cmd("master", "--ip", "127.0.0.1", "--port", str(port), "--http-port",
                                            str(http_port), "--work-dir", str(master_dir),
                                            "--http-token-file", str(tmp_path / "http-token"), "--insecure"),
                                  stdout=log_file, stderr=subprocess.STDOUT, env=child_env())
    blocker = None
    try:
        wait_for(lambda: get_state(http_port) is not None, "the master to answer")
        blocker = sqlite3.connect(master_dir / "registry.db", isolation_level=None, timeout=1)
        blocker.execute("BEGIN EXCLUSIVE")
        threading.Thread(target=lambda: _quietly(http_port), daemon=True).start()  # a write is now due
        code = master.wait(30)
        assert code == 1, tail(log_path, 40)
        assert "event=registry_failed" in log_path.read_text(), tail(log_path, 40)
    finally:
        if blocker is not None:
            if blocker.in_transaction:
                blocker.rollback()
            blocker.close()
        stop_process(master, 5)


def _quietly(http_port: int) -> None:
    try:
        call(http_port, "PUT", "/weights", [{"role": "db", "weight": 2}])
    except Exception:  # noqa: BLE001 - the master is expected to go away mid-call
        pass


def test_25_a_master_missing_too_many_agents_after_a_restart_exits_with_a_message(tmp_path: Path) -> None:
    """Scenario 25 with a real process: the registry knows two agents, neither re-registers
    within --agent-reregister-timeout, and --recovery-agent-removal-limit allows 50% → the master
    exits with status 1, says why and what to do, and removes nothing from its registry."""
    from tepui.master.records import AgentRecord
    from tepui.master.durability.registry import AGENTS, agent_entry
    from tepui.sdk.resources import Resources
    from tepui.sdk.store import SQLiteStore

    master_dir = tmp_path / "master"
    store = SQLiteStore(master_dir / "registry.db")
    for agent_id in ("old-S1", "old-S2"):
        entry = agent_entry(AgentRecord(agent_id, b"", "h", Resources.parse("cpus:1"), {}, "v", 0.0, 0.0))
        store.put(entry.ns, entry.key, entry.value or b"")
    store.close()
    port, http_port = free_ports(2)
    log_path = tmp_path / "master.log"
    with open(log_path, "ab") as log_file:
        master = subprocess.Popen(tepui_cmd("master", "--ip", "127.0.0.1", "--port", str(port), "--http-port",
                                            str(http_port), "--work-dir", str(master_dir),
                                            "--agent-reregister-timeout", "1", "--recovery-agent-removal-limit",
                                            "50%", "--insecure"),
                                  stdout=log_file, stderr=subprocess.STDOUT, env=child_env())
    try:
        code = master.wait(30)
        log = log_path.read_text()
        assert code == 1, tail(log_path, 40)
        assert "event=master_aborted" in log and "--recovery-agent-removal-limit" in log, tail(log_path, 40)
        store = SQLiteStore(master_dir / "registry.db")
        assert sorted(store.list(AGENTS)) == ["old-S1", "old-S2"] and store.list("unreachable") == {}
        store.close()
    finally:
        stop_process(master, 5)
