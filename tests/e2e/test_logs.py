"""End to end: the agents' sandbox files API behind the master, and ``tepui logs`` — real master
and agents (``Cluster``), real tasks through ``tepui run``.

The shared cluster starts two agents on one machine without ``--http-port``: at most one gets
5051 and the other falls back to a free port, so these tests also cover that fallback and the
master learning each agent's real port.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, child_env, free_ports, http_get, tepui_cmd

pytestmark = pytest.mark.slow

TIMEOUT = 30.0
TASK_LINE = re.compile(r"^(run-[0-9a-f]{8}): TASK_", re.MULTILINE)


def tepui(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tepui_cmd(*args), capture_output=True, text=True, timeout=timeout, env=child_env(),
                          check=False)


def run_task(cluster: Cluster, script: str) -> str:
    """Runs ``sh -c script`` to the end with ``tepui run``; returns the task id."""
    done = tepui("run", "--master", cluster.master, "--quiet-output", "--", "sh", "-c", script)
    match = TASK_LINE.search(done.stderr)
    assert match, f"no task id in tepui run's stderr:\n{done.stderr}"
    assert done.returncode == 0, done.stderr
    return match.group(1)


def logs(cluster: Cluster, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return tepui("logs", "--http", f"127.0.0.1:{cluster.http_port}", *args, timeout=timeout)


def master_json(cluster: Cluster, path: str) -> tuple[int, Any]:
    status, body = http_get(cluster.http_port, path, timeout=10.0)
    return status, json.loads(body)


def test_agents_register_their_http_api(cluster: Cluster) -> None:
    slaves = cluster.state()["slaves"]
    ports = [slave["http_port"] for slave in slaves]
    assert len(set(ports)) == len(slaves) == 2 and all(isinstance(p, int) and p > 0 for p in ports)
    for slave in slaves:
        assert slave["url"] == f"http://127.0.0.1:{slave['http_port']}"
        with urllib.request.urlopen(f"{slave['url']}/health", timeout=5) as response:
            health = json.load(response)
        assert health["healthy"] and health["agent_id"] == slave["id"] and health["registered"]


def test_logs_prints_stdout_and_stderr(cluster: Cluster) -> None:
    task_id = run_task(cluster, "echo out; echo err >&2")
    out = logs(cluster, task_id)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "out\n"
    err = logs(cluster, "--stderr", task_id)
    assert err.returncode == 0, err.stderr
    assert err.stdout == "err\n"


def test_browse_and_read_through_the_master(cluster: Cluster) -> None:
    task_id = run_task(cluster, "printf 'h\\303\\251llo\\n'; mkdir sub; echo x > sub/file")
    status, entries = master_json(cluster, f"/tasks/{task_id}/files/browse")
    assert status == 200
    assert {"stdout", "stderr", "sub"} <= {e["name"] for e in entries}
    assert next(e for e in entries if e["name"] == "sub")["is_dir"]
    status, entries = master_json(cluster, f"/tasks/{task_id}/files/browse?path=sub")
    assert status == 200 and [e["path"] for e in entries] == ["sub/file"]
    status, chunk = master_json(cluster, f"/tasks/{task_id}/files/read?path=stdout&offset=0&length=100")
    assert status == 200 and chunk["data"] == "h\u00e9llo\n" and chunk["eof"] and chunk["size"] == 7
    status, chunk = master_json(cluster, f"/tasks/{task_id}/files/read?path=stdout&offset=-1")
    assert status == 200 and chunk["offset"] == 7 and chunk["data"] == ""


def test_follow_prints_every_line_and_ends_with_the_task(cluster: Cluster) -> None:
    run = subprocess.Popen(
        tepui_cmd("run", "--master", cluster.master, "--quiet-output", "--", "sh", "-c",
                  "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env())
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(run.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        task_id = None
        while task_id is None and time.monotonic() < deadline:
            match = TASK_LINE.search("".join(lines))
            task_id = match.group(1) if match else None
            time.sleep(0.05)
        assert task_id, f"tepui run printed no task state:\n{''.join(lines)}"
        followed = logs(cluster, "--follow", task_id)  # starts while the task runs (~1 s left)
        assert followed.returncode == 0, followed.stderr
        assert followed.stdout == "".join(f"line {i}\n" for i in range(1, 6))
        assert run.wait(TIMEOUT) == 0  # it ended with the task, not before
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(10)
        reader.join(5)


def test_paths_out_of_the_sandbox_are_refused_through_the_master(cluster: Cluster) -> None:
    task_id = run_task(cluster, "ln -s /etc leak; ln -s .. up; echo fine")
    for path, code, reason in (("../../../../etc/passwd", 400, "BAD_PATH"), ("/etc/passwd", 400, "BAD_PATH"),
                               ("leak/passwd", 403, "PATH_ESCAPES"), ("up/stdout", 403, "PATH_ESCAPES")):
        status, document = master_json(cluster, f"/tasks/{task_id}/files/read?path={urllib.parse.quote(path)}")
        assert (status, document["reason"]) == (code, reason), document
        assert "root:" not in json.dumps(document)
    status, document = master_json(cluster, f"/tasks/{task_id}/files/browse?path=leak")
    assert (status, document["reason"]) == (403, "PATH_ESCAPES")


def test_unknown_task_is_a_clear_error(cluster: Cluster) -> None:
    result = logs(cluster, "no-such-task")
    assert result.returncode != 0 and result.stdout == ""
    assert "no task 'no-such-task'" in result.stderr and "tepui state" in result.stderr
    status, document = master_json(cluster, "/tasks/no-such-task/files/read?path=stdout")
    assert status == 404 and document["reason"] == "UNKNOWN_TASK"


def test_no_master_says_how_to_start_one() -> None:
    (port,) = free_ports(1)
    result = tepui("logs", "--http", f"127.0.0.1:{port}", "some-task")
    assert result.returncode != 0
    assert "cannot reach the master" in result.stderr and "tepui up" in result.stderr


def test_an_agent_advertising_another_address(tmp_path: Path) -> None:
    """``--ip``/``--advertise-ip`` reach the master: /state's url and the proxy use them."""
    cluster = Cluster(tmp_path, agents=1, agent_args=["--ip", "127.0.0.2", "--http-port", "0"])
    try:
        cluster.start()
        (slave,) = cluster.state()["slaves"]
        assert slave["url"] == f"http://127.0.0.2:{slave['http_port']}"
        task_id = run_task(cluster, "echo via 127.0.0.2")
        out = logs(cluster, task_id)
        assert (out.returncode, out.stdout) == (0, "via 127.0.0.2\n"), out.stderr
    finally:
        cluster.stop()
