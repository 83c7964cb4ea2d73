"""A real cluster plus a real `tepui batch` process, reached through the master's proxy.

Shared by the batch end-to-end tests (issue 17, "Correct under failure"): start/stop/SIGKILL the
framework on the same store, call its REST API as `tepui jobs` does (bearer token, through
`/frameworks/batch/`), read a task's stdout through the master's files proxy as `tepui logs`
does, and wait for conditions with the framework's and the cluster's log tails in the failure.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Cluster, processes_under
from tests.e2e.services_harness import FrameworkProcess

ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED"})
AGENT_RESOURCES = "cpus:2;mem:2048;disk:4096"  # both agents the same, so "does not fit" is exact


def batch_cluster(root: Path) -> Cluster:
    """Two agents with known resources, failure detection in ~1.5 s (pings every 0.5 s, 3
    missed), an unreachable agent gone after 2 s (so its tasks end TASK_GONE and are retried),
    and offers every 0.2 s."""
    return Cluster(root, agents=2, kill_grace_period=1.0, agent_args=["--resources", AGENT_RESOURCES],
                   master_args=["--agent-ping-interval", "0.5", "--max-agent-ping-timeouts", "3",
                                "--agent-gone-timeout", "2", "--allocation-interval", "0.2"])


class Batch(FrameworkProcess):
    """`tepui batch` (its process and API calls from :class:`FrameworkProcess`): jobs, attempts,
    and the master's side of them."""

    name = "batch"
    subscribe_timeout = 30.0

    def log_tails(self, lines: int = 40) -> str:
        """The cluster's logs and this framework's (shown by the suite's hook on failure)."""
        return self.cluster.log_tails(lines)

    def submit(self, spec: dict[str, Any], job_id: str) -> dict[str, Any]:
        status, body = self.call("POST", "/jobs?id=" + urllib.parse.quote(job_id), spec)
        assert status in (200, 201), f"submit {job_id} answered {status}: {body}"
        return body["job"]

    def job(self, job_id: str) -> dict[str, Any]:
        status, body = self.call("GET", "/jobs/" + job_id)
        assert status == 200, f"GET job {job_id}: {status} {body}"
        return body["job"]

    def attempts(self, job_id: str, **filters: str | int) -> list[dict[str, Any]]:
        query = ("?" + urllib.parse.urlencode(filters)) if filters else ""
        status, body = self.call("GET", f"/jobs/{job_id}/attempts{query}")
        assert status == 200, f"GET attempts {job_id}: {status} {body}"
        return body["attempts"]

    def why(self, job_id: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/jobs/{job_id}/why")
        assert status == 200, f"GET why {job_id}: {status} {body}"
        return body

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The job once it has ended."""
        found: dict[str, Any] = {}

        def ended() -> bool:
            found.update(self.job(job_id))
            return found["state"] in ENDED

        self.wait(ended, timeout, f"job {job_id} ended")
        return found

    # --- the master's side ------------------------------------------------------------------

    def framework_id(self) -> str:
        framework_id = self.health().get("framework_id")
        assert framework_id, "the batch framework has no framework id"
        return str(framework_id)

    def master_tasks(self, job_id: str, states: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """The job's tasks the master's /state lists as active (in ``states`` when given)."""
        state = self.cluster.state()
        return [t for f in state["frameworks"] if f["name"] == "batch" for t in f["tasks"]
                if t["id"].startswith(job_id + ".") and (states is None or t["state"] in states)]

    def task_file(self, task_id: str, path: str = "stdout") -> str:
        """A file of the task's sandbox through the master's files proxy (as `tepui logs`)."""
        query = urllib.parse.urlencode({"path": path, "offset": "0", "length": str(1 << 20),
                                        "framework_id": self.framework_id()})
        url = (f"http://127.0.0.1:{self.cluster.http_port}/tasks/{urllib.parse.quote(task_id, safe='')}"
               f"/files/read?{query}")
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(json.load(response)["data"])

    def agent_of(self, attempt: dict[str, Any]) -> int:
        """The 1-based index of the cluster agent that ran ``attempt`` (by hostname agent-N)."""
        state = self.cluster.state()
        hosts = {a["id"]: a["hostname"] for a in state.get("slaves", [])}
        hostname = attempt.get("hostname") or hosts.get(attempt["agent_id"])
        assert hostname and hostname.startswith("agent-"), f"no agent hostname for {attempt}"
        return int(hostname.split("-")[1])

    def kill_agent(self, index: int) -> None:
        """The machine dies: SIGKILL agent ``index`` and then every process in its work dir (its
        tasks), so nothing of it runs on while the master declares it gone."""
        process = self.cluster.processes[f"agent-{index}"]
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        work_dir = self.cluster.work_dirs[index - 1]
        for _ in range(3):
            pids = processes_under(work_dir)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)


def shared_dir(cluster: Cluster, name: str) -> Path:
    """A directory every task may append to (tasks run as the framework's user), removed with
    the cluster's agents' root."""
    path = cluster.agents_root / name
    path.mkdir()
    os.chmod(path, 0o777)
    return path


def stage(name: str, command: str, *, array: int = 1, **extra: Any) -> dict[str, Any]:
    """A stage spec with the suite's small resources (cpus 0.1, mem 16)."""
    return {"name": name, "command": command, "array": array, "resources": {"cpus": 0.1, "mem": 16}, **extra}


def overlaps(intervals: list[tuple[float, float]]) -> bool:
    """Whether any two [start, end] intervals overlap."""
    ordered = sorted(intervals)
    return any(b[0] < a[1] for a, b in zip(ordered, ordered[1:]))
