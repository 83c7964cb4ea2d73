"""A custom executor (examples/echo_executor.py) run by a real agent: 5 tasks, messages both ways."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cluster, child_env

pytestmark = pytest.mark.slow
FRAMEWORK = Path(__file__).with_name("executor_framework.py")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # The executor is this repository's Python program; the default task user (nobody) may not
    # be able to run this interpreter, so the agent runs tasks as its own user (root) here, which
    # the master allows only with a run_tasks rule naming root.
    root = tmp_path_factory.mktemp("executors")
    (root / "acls.yaml").write_text("permissive: true\nrun_tasks:\n  - principals: ANY\n    users: [root]\n")
    instance = Cluster(root, agents=1, agent_args=["--task-user", "root"],
                       master_args=["--acls", str(root / "acls.yaml")])
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def test_custom_executor_runs_tasks_and_echoes_messages(cluster: Cluster) -> None:
    done = subprocess.run([sys.executable, str(FRAMEWORK), "--master", cluster.master], capture_output=True,
                          text=True, timeout=90, env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr + cluster.log_tails()
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finished = {e["task"] for e in events if e["event"] == "status" and e["state"] == "TASK_FINISHED"}
    assert finished == {f"t{i}" for i in range(5)}, events
    sources = {e["source"] for e in events if e["event"] == "status"}
    assert sources == {"SOURCE_EXECUTOR"} and {e["executor"] for e in events if e["event"] == "status"} == {"echo"}
    assert {"event": "message", "executor": "echo", "data": "echo: ping"} in events
    log = cluster.logs["agent-1"].read_text()
    assert log.count("event=executor_starting") == 1, "one executor runs every task of its framework"
