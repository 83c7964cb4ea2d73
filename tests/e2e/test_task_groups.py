"""Task groups (pods) through a real agent: members share a volume; one failing kills the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cluster, child_env

pytestmark = pytest.mark.slow
FRAMEWORK = Path(__file__).with_name("group_framework.py")


def test_pods_share_a_volume_and_fail_together(cluster: Cluster) -> None:
    done = subprocess.run([sys.executable, str(FRAMEWORK), "--master", cluster.master], capture_output=True,
                          text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr + cluster.log_tails()
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    final = {e["task"]: e for e in events if e["state"] not in ("TASK_STARTING", "TASK_RUNNING")}
    assert final["writer"]["state"] == "TASK_FINISHED" and final["reader"]["state"] == "TASK_FINISHED", final
    assert final["breaker"]["state"] == "TASK_FAILED", final
    for sleeper in ("sleeper-1", "sleeper-2"):
        assert final[sleeper]["state"] == "TASK_KILLED", final
        assert "task 'breaker' of its group failed" in final[sleeper]["message"], final[sleeper]
    reader_out = list(cluster.work_dirs[0].glob("sandboxes/*/reader/stdout")) + \
        list(cluster.work_dirs[1].glob("sandboxes/*/reader/stdout"))
    assert reader_out and reader_out[0].read_text() == "from-writer\n"
