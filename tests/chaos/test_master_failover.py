"""Master failover with real processes (RELIABILITY.md scenario 23, single-master form: the
master is SIGKILLed and started again on its registry; the standby form comes with highly
available masters, issue HA): agents and frameworks come back under their ids and every task
is still accounted for."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.processes import OneAgentCluster, master_task_states, running_cluster, wait_for

pytestmark = pytest.mark.slow


def test_23_a_master_killed_and_restarted_on_its_registry_gets_every_agent_framework_and_task_back(
        tmp_path: Path) -> None:
    cluster = OneAgentCluster(tmp_path)
    try:
        tasks = {f"svc-{i}": 'echo started >> "$MESOS_SANDBOX/starts"; exec sleep 600' for i in range(6)}
        cluster.master_args = ["--work-dir", str(tmp_path / "master")]
        running_cluster(cluster, tasks, master_args=tuple(cluster.master_args))
        before = cluster.state()
        agent_id = before["slaves"][0]["id"]
        framework_id = cluster.framework_id()
        pids = {t: cluster.settled_task_processes(t) for t in tasks}

        cluster.kill_master()
        killed_at = time.monotonic()
        cluster.restart_master()
        wait_for(lambda: master_task_states(cluster) == {t: "TASK_RUNNING" for t in tasks},
                 "every task back in the new master", timeout=30, logs=cluster.tail_logs)
        recovered_in = time.monotonic() - killed_at
        state = cluster.state()
        assert [s["id"] for s in state["slaves"] if s.get("active")] == [agent_id]
        [framework] = [f for f in state["frameworks"] if f["id"] == framework_id]
        wait_for(lambda: [f for f in cluster.state()["frameworks"] if f["id"] == framework_id][0].get("active"),
                 "the framework to re-subscribe under its id", timeout=30, logs=cluster.tail_logs)
        subscriptions = [e for e in cluster.events() if e["event"] == "subscribed"]
        assert [e["framework_id"] for e in subscriptions] == [framework_id, framework_id]
        terminal = [e for e in cluster.events() if e["event"] == "status"
                    and e["state"] not in ("TASK_STARTING", "TASK_RUNNING")]
        assert terminal == [], terminal
        for task_id, task_pids in pids.items():
            assert task_pids == cluster.task_processes(task_id), f"{task_id} is not the same process"
            starts = (cluster.work_dir / "sandboxes" / framework_id / task_id / "starts").read_text()
            assert starts == "started\n", f"{task_id} was launched more than once"
        # Fresh offers after the failover: the framework can still launch.
        print(f"recovered in {recovered_in:.1f} s")
    finally:
        cluster.stop()
