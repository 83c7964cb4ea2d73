"""End to end: artifacts between stages with no shared filesystem (issue 17, item 2) — a real
master and two real agents with ``tepui up``'s security (CURVE keys, the HTTP token file), and a
real SDK framework (artifacts_framework.py) that runs task ``up`` on one agent and task ``down``
on the other with the URIs of ``frameworks/batch/artifacts.input_uris``: ``down`` finds
``up/0/out.txt`` and ``up/0/sub/part.txt``, fetched through the master's files proxy.

Twice: with the master's reads open (``tepui up``'s setting: the task files token rides along
unused), and with ``--http-read-auth token`` (the token is what lets the fetch through).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import conftest
from tests.e2e.conftest import Cluster, child_env, http_get

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


@pytest.fixture(scope="module", params=["open", "token"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    read_auth = request.param
    instance = Cluster(tmp_path_factory.mktemp(f"artifacts-{read_auth}"), agents=2,
                       master_args=["--http-read-auth", read_auth])
    # The harness polls /state until the agents registered; a token-read master wants the token.
    polled = conftest.get_state
    conftest.get_state = lambda port: state_with_token(instance, port)
    try:
        instance.start()
        yield instance
    finally:
        conftest.get_state = polled
        instance.stop()
    assert not instance.watch.survivors(), instance.watch.survivors()


def state_with_token(cluster: Cluster, port: int) -> dict[str, Any] | None:
    try:
        status, body = get_with_token(cluster, "/state")
    except (OSError, ValueError):
        return None
    return json.loads(body) if status == 200 else None


def describe(result: subprocess.CompletedProcess[str], cluster: Cluster) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}\n{cluster.log_tails(30)}"


def run_framework(cluster: Cluster) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    result = subprocess.run(
        [sys.executable, str(HERE / "artifacts_framework.py"), "--master", cluster.master,
         "--master-http", f"http://127.0.0.1:{cluster.http_port}", "--token-file", str(cluster.root / "http-token")],
        check=False, capture_output=True, text=True, timeout=90, env=child_env(),
    )
    return result, [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_a_downstream_task_on_another_agent_finds_the_upstream_outputs(cluster: Cluster) -> None:
    result, events = run_framework(cluster)
    assert result.returncode == 0, describe(result, cluster)
    launches = {e["task_id"]: e for e in events if e["event"] == "launch"}
    assert set(launches) == {"e2e-1.up.0.1", "e2e-1.down.0.1"}, describe(result, cluster)
    assert launches["e2e-1.up.0.1"]["agent_id"] != launches["e2e-1.down.0.1"]["agent_id"]
    assert launches["e2e-1.down.0.1"]["uris"] == [
        {"output_file": "up/0/out.txt", "cache": True, "extract": False},
        {"output_file": "up/0/sub/part.txt", "cache": True, "extract": False},
    ]
    ends = {e["task_id"]: e["state"] for e in events if e["event"] == "status"}
    assert ends == {"e2e-1.up.0.1": "TASK_FINISHED", "e2e-1.down.0.1": "TASK_FINISHED"}, describe(result, cluster)

    # What ``down`` printed: the upstream's contents, read back through the master (with the
    # cluster token, which the token-read master needs for anyone's logs).
    framework_id = next(e["framework_id"] for e in events if e["event"] == "subscribed")
    status, body = get_with_token(cluster, f"/tasks/e2e-1.down.0.1/files/read?framework_id={framework_id}&path=stdout")
    assert status == 200 and json.loads(body)["data"] == "hello artifact 42\nnested\n", body


def get_with_token(cluster: Cluster, path: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{cluster.http_port}{path}",
                                     headers={"Authorization": f"Bearer {cluster.token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_without_the_token_a_token_read_master_refuses_the_download(cluster: Cluster) -> None:
    """The token is what opens the fetch when reads need one; without it, 401 (the downstream
    task would fail with reason fetch_failed)."""
    status, body = http_get(cluster.http_port, "/tasks/e2e-1.up.0.1/files/download?framework_id=x&path=out.txt",
                            timeout=10.0)
    read_auth = cluster.master_args[-1]
    assert status == (401 if read_auth == "token" else 404), body
