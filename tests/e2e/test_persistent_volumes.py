"""A persistent volume keeps a file written by one task for the next task of the same role, and
DESTROY deletes its data."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from .conftest import Cluster

pytestmark = pytest.mark.slow
FRAMEWORK = Path(__file__).with_name("volume_framework.py")


def test_volume_outlives_its_task_and_is_destroyed_on_request(cluster: Cluster) -> None:
    done = subprocess.run([sys.executable, str(FRAMEWORK), "--master", cluster.master], capture_output=True,
                          text=True, timeout=60, env=cluster.env_for("db-team"))  # its principal's key
    assert done.returncode == 0, done.stdout + done.stderr + cluster.log_tails()
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    final = {e["task"]: e["state"] for e in events if e["event"] == "status"}
    assert final == {"writer": "TASK_FINISHED", "reader": "TASK_FINISHED"}, events
    assert not [e for e in events if e["event"] == "error"], events
    sandboxes = [p for d in cluster.work_dirs for p in d.glob("sandboxes/*/reader/stdout")]
    assert sandboxes and sandboxes[0].read_text() == "kept-across-tasks\n"
    assert {"event": "destroyed"} in events
    volume_dirs = [p for d in cluster.work_dirs for p in d.glob("volumes/db/pgdata")]
    assert volume_dirs == [], f"the destroyed volume's data is still there: {volume_dirs}"
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.http_port}/state", timeout=5) as response:
        state = json.loads(response.read())
    assert all("pgdata" not in json.dumps(agent["resources"]) for agent in state["slaves"])
