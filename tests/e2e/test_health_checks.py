"""Health checks through a real agent: an HTTP server turns healthy; a failing command check
kills its task after the configured number of failures, which ends FAILED with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cluster, child_env

pytestmark = pytest.mark.slow
FRAMEWORK = Path(__file__).with_name("health_framework.py")


def test_http_check_turns_healthy_and_failing_command_check_kills(cluster: Cluster) -> None:
    done = subprocess.run([sys.executable, str(FRAMEWORK), "--master", cluster.master], capture_output=True,
                          text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr + cluster.log_tails()
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    web = [e for e in events if e["task"] == "web"]
    sick = [e for e in events if e["task"] == "sick"]
    assert any(e["state"] == "TASK_RUNNING" and e["healthy"] is True
               and e["reason"] == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED" for e in web), web
    assert web[-1]["state"] == "TASK_KILLED", web
    unhealthy = [e for e in sick if e["healthy"] is False]
    assert unhealthy and sick[-1]["state"] == "TASK_FAILED", sick
    assert "2 consecutive health check failures" in sick[-1]["message"], sick[-1]
    running_at = next(e["t"] for e in sick if e["state"] == "TASK_RUNNING")
    assert sick[-1]["t"] - running_at < 8, "the unhealthy task should die within a few check intervals"
