"""Agent recovery with real processes (RELIABILITY.md scenarios 12-16): an agent SIGKILLed and
started again on the same work dir takes its tasks back through their supervisors.

One master, one agent (restartable), and ``recovery_framework.py``, which launches the tasks and
records every update it receives. Task processes are found by their sandbox working directory.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.processes import (
    OneAgentCluster,
    master_task_states,
    running_cluster,
    wait_for,
)
from tests.e2e.conftest import is_alive

pytestmark = pytest.mark.slow


@pytest.fixture
def recovery_cluster(tmp_path: Path) -> Any:
    cluster = OneAgentCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_12_an_agent_killed_and_restarted_readopts_its_20_running_tasks(recovery_cluster: OneAgentCluster) -> None:
    cluster = recovery_cluster
    tasks = {f"long-{i}": 'echo started >> "$MESOS_SANDBOX/starts"; exec sleep 600' for i in range(20)}
    running_cluster(cluster, tasks)
    before = {t: cluster.settled_task_processes(t) for t in tasks}
    assert all(before.values()), before
    agent_id = cluster.state()["slaves"][0]["id"]

    cluster.kill_agent()
    assert all(all(is_alive(pid) for pid in pids) for pids in before.values()), "tasks died with their agent"
    cluster.start_agent()
    wait_for(lambda: "event=agent_reregistered" in (cluster.root / "agent-2.log").read_text(),
             "the restarted agent to re-register", logs=cluster.tail_logs)
    assert [s["id"] for s in cluster.state().get("slaves", []) if s.get("active")] == [agent_id]
    log = (cluster.root / "agent-2.log").read_text()
    assert "event=agent_recovered" in log and "adopted=20" in log, cluster.tail_logs()
    time.sleep(1.0)  # let anything wrong show up: a task ended, a second copy started

    assert master_task_states(cluster) == {t: "TASK_RUNNING" for t in tasks}, cluster.tail_logs()
    assert all(state == "TASK_RUNNING" for state in cluster.latest_states().values())
    for task_id, pids in before.items():
        assert all(is_alive(pid) for pid in pids), f"{task_id} stopped running"
        starts = (cluster.work_dir / "sandboxes" / cluster.framework_id() / task_id / "starts").read_text()
        assert starts == "started\n", f"{task_id} was launched {starts.count('started')} times"
    launches = [e for e in cluster.events() if e["event"] == "launch"]
    assert len(launches) == 20

    # The adopted tasks are really under the new agent's control: draining it ends them.
    cluster.agent.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
    assert cluster.agent.wait(20) == 0  # type: ignore[union-attr]
    wait_for(lambda: not any(cluster.task_processes(t) for t in tasks), "the adopted tasks to be stopped")


def test_13_a_task_that_exits_while_its_agent_is_down_gets_its_real_terminal_state(
        recovery_cluster: OneAgentCluster) -> None:
    cluster = recovery_cluster
    running_cluster(cluster, {"fails": "sleep 2; exit 7", "succeeds": "sleep 2", "stays": "sleep 600"})
    cluster.kill_agent()
    wait_for(lambda: not cluster.task_processes("fails") and not cluster.task_processes("succeeds"),
             "the short tasks to end while the agent is down")
    cluster.start_agent()
    wait_for(lambda: cluster.latest_states().get("fails") == "TASK_FAILED"
             and cluster.latest_states().get("succeeds") == "TASK_FINISHED",
             "the real terminal states", logs=cluster.tail_logs)
    final = {e["task_id"]: e for e in cluster.events() if e["event"] == "status"}
    assert final["fails"]["exit_code"] == 7 and "status 7" in final["fails"]["message"]
    assert final["succeeds"]["exit_code"] == 0
    assert cluster.latest_states()["stays"] == "TASK_RUNNING"
    assert master_task_states(cluster) == {"stays": "TASK_RUNNING", "fails": "TASK_FAILED",
                                           "succeeds": "TASK_FINISHED"} or \
        master_task_states(cluster).get("stays") == "TASK_RUNNING"


def _checkpoint_files(cluster: OneAgentCluster) -> list[Path]:
    return sorted((cluster.work_dir / "meta" / "tasks").glob("*/task.json"))


def test_14_a_torn_checkpoint_is_refused_in_strict_mode_and_discarded_otherwise(
        recovery_cluster: OneAgentCluster) -> None:
    cluster = recovery_cluster
    running_cluster(cluster, {"kept": "exec sleep 600", "torn": "exec sleep 600"})
    torn_pids = cluster.settled_task_processes("torn")
    cluster.kill_agent()
    torn = next(p for p in _checkpoint_files(cluster) if p.parent.name.startswith("torn-"))
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) // 2])  # a write the disk lost half of
    (cluster.work_dir / "meta" / "agent.json.tmp").write_bytes(b'{"agent_id": "half')  # an interrupted write

    strict = cluster.start_agent()
    assert strict.wait(20) != 0, "strict recovery must refuse a torn checkpoint"
    message = (cluster.root / f"agent-{cluster.agent_runs}.log").read_text()
    assert str(torn) in message and "--no-strict" in message, message
    assert "checkpoint_temp_removed" in message  # debris of an interrupted write: removed in either mode

    cluster.start_agent("--no-strict")
    wait_for(lambda: "event=agent_recovered" in (cluster.root / f"agent-{cluster.agent_runs}.log").read_text(),
             "recovery", logs=cluster.tail_logs)
    log = (cluster.root / f"agent-{cluster.agent_runs}.log").read_text()
    assert "checkpoint_part_discarded" in log
    assert not (cluster.work_dir / "meta" / "agent.json.tmp").exists()
    wait_for(lambda: cluster.state().get("activated_slaves") == 1, "re-registration", logs=cluster.tail_logs)
    # The intact task is back; the damaged one's leftovers (no record of it) are destroyed.
    assert cluster.settled_task_processes("kept")
    wait_for(lambda: not any(is_alive(pid) for pid in torn_pids), "the unaccounted task to be destroyed")


def test_15_a_host_reboot_registers_a_new_agent_and_the_old_tasks_end(recovery_cluster: OneAgentCluster) -> None:
    cluster = recovery_cluster
    running_cluster(cluster, {"before-boot": "exec sleep 600"})
    old_id = cluster.state()["slaves"][0]["id"]
    cluster.kill_agent()
    # The checkpoint now says it was written in another boot of this host, and a crash left a
    # task record torn: after a reboot nothing of it is read, so strict mode does not object.
    (cluster.work_dir / "meta" / "boot_id").write_text("00000000-0000-0000-0000-000000000000")
    record = next((cluster.work_dir / "meta" / "tasks").glob("*/task.json"))
    record.write_bytes(record.read_bytes()[:10])
    cluster.start_agent()
    wait_for(lambda: [s["id"] for s in cluster.state().get("slaves", []) if s.get("active")] not in ([], [old_id]),
             "a new agent id", logs=cluster.tail_logs)
    wait_for(lambda: cluster.latest_states().get("before-boot") in ("TASK_GONE", "TASK_LOST"),
             "the old task to end", logs=cluster.tail_logs)
    log = (cluster.root / "agent-2.log").read_text()
    assert "event=host_rebooted" in log
    assert list(cluster.work_dir.glob("meta.before-reboot.*")), "the old checkpoint is kept aside"


def test_16_a_restart_with_fewer_resources_is_refused_with_a_clear_message(
        recovery_cluster: OneAgentCluster) -> None:
    cluster = recovery_cluster
    cluster.start_master()
    cluster.start_agent()
    wait_for(lambda: cluster.state().get("activated_slaves") == 1, "the agent to register", logs=cluster.tail_logs)
    cluster.kill_agent()
    shrunk = cluster.start_agent("--resources", "cpus:2;mem:2048", "--attributes", "rack:r9")
    assert shrunk.wait(20) != 0
    message = (cluster.root / f"agent-{cluster.agent_runs}.log").read_text()
    assert "resources changed from" in message and "attributes changed" in message, message
    assert "--reconfiguration-policy additive" in message
    # Growing is allowed under the additive policy.
    cluster.start_agent("--resources", "cpus:8;mem:4096", "--reconfiguration-policy", "additive")
    wait_for(lambda: "event=agent_recovered" in (cluster.root / f"agent-{cluster.agent_runs}.log").read_text(),
             "recovery under the additive policy", logs=cluster.tail_logs)


def test_12_a_custom_executor_reconnects_to_its_restarted_agent_and_keeps_its_tasks(tmp_path: Path) -> None:
    # The executor is this repository's Python: the default task user (nobody) may not be able
    # to run this interpreter, so tasks run as the agent's user here.
    # Running tasks as root needs a run_tasks rule naming root at the master.
    cluster = OneAgentCluster(tmp_path, agent_args=["--containerizers", "mesos", "--task-user", "root"])
    (tmp_path / "acls.yaml").write_text("permissive: true\nrun_tasks:\n  - principals: ANY\n    users: [root]\n")
    try:
        running_cluster(cluster, {"short": "sleep 2", "long": "sleep 600"}, "--executor",
                        master_args=("--acls", str(tmp_path / "acls.yaml")))
        cluster.kill_agent()
        time.sleep(2.5)  # "short" finishes while the agent is down: its executor holds the update
        cluster.start_agent()
        wait_for(lambda: cluster.latest_states().get("short") == "TASK_FINISHED",
                 "the update made while the agent was down", logs=cluster.tail_logs)
        log = (cluster.root / "agent-2.log").read_text()
        assert "event=executor_adopted" in log and "running=True" in log, log
        assert "event=executor_starting" not in log, "the executor was started again instead of reconnecting"
        assert cluster.latest_states()["long"] == "TASK_RUNNING"
        time.sleep(1.0)
        assert cluster.latest_states()["long"] == "TASK_RUNNING", cluster.tail_logs()
        assert master_task_states(cluster).get("long") == "TASK_RUNNING"
    finally:
        cluster.stop()


def test_12_docker_containers_are_readopted_through_their_labels(tmp_path: Path) -> None:
    docker = pytest.importorskip("docker")
    image = os.environ.get("TEPUI_TEST_IMAGE") or "tepui-test/busybox:1"
    try:
        api = docker.APIClient(base_url=os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock", timeout=10)
        api.inspect_image(image)
    except Exception as exc:
        pytest.skip(f"no Docker engine with the test image {image} (scripts/test sets both up): {exc}")
    cluster = OneAgentCluster(tmp_path, agent_args=[])
    agent_id = None
    try:
        running_cluster(cluster, {"c-long": "sleep 600", "c-exits": "sleep 2; exit 3"}, "--image", image,
                        agent_args=("--containerizers", "mesos,docker"))
        agent_id = cluster.state()["slaves"][0]["id"]
        ids = {c["Id"] for c in api.containers(filters={"label": [f"tepui.agent_id={agent_id}"]})}
        assert len(ids) == 2
        cluster.kill_agent()
        time.sleep(2.5)  # c-exits ends while the agent is down
        cluster.start_agent("--containerizers", "mesos,docker")
        wait_for(lambda: cluster.latest_states().get("c-exits") == "TASK_FAILED", "the real exit of c-exits",
                 timeout=30, logs=cluster.tail_logs)
        final = [e for e in cluster.events() if e["event"] == "status" and e["task_id"] == "c-exits"][-1]
        assert final["exit_code"] == 3, final
        running = {c["Id"] for c in api.containers(filters={"label": [f"tepui.agent_id={agent_id}"]})}
        assert len(running) == 1 and running <= ids, "the long container is the same one, still running"
        log = (cluster.root / "agent-2.log").read_text()
        assert log.count("event=container_adopted") == 2, log
        assert cluster.latest_states()["c-long"] == "TASK_RUNNING"
        cluster.agent.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
        assert cluster.agent.wait(30) == 0  # type: ignore[union-attr]
        wait_for(lambda: not api.containers(filters={"label": [f"tepui.agent_id={agent_id}"]}),
                 "the adopted container to be stopped by the agent", timeout=20)
    finally:
        cluster.stop()
        if agent_id is not None:  # whatever this test's agent left behind, and only that
            for container in api.containers(all=True, filters={"label": [f"tepui.agent_id={agent_id}"]}):
                api.remove_container(container["Id"], force=True)
        api.close()


def test_an_agent_stopped_with_sigterm_leaves_its_tasks_to_its_next_start(recovery_cluster: OneAgentCluster) -> None:
    """An upgrade: SIGTERM ends the agent process, not its tasks (Mesos); SIGUSR1 ends both."""
    cluster = recovery_cluster
    running_cluster(cluster, {"kept": "exec sleep 600"})
    pids = cluster.settled_task_processes("kept")
    cluster.agent.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert cluster.agent.wait(15) == 0  # type: ignore[union-attr]
    assert "tasks_left_running=1" in (cluster.root / "agent-1.log").read_text()
    assert pids and all(is_alive(pid) for pid in pids)
    cluster.start_agent()
    wait_for(lambda: "event=agent_reregistered" in (cluster.root / "agent-2.log").read_text(),
             "the next agent to take the task back", logs=cluster.tail_logs)
    assert all(is_alive(pid) for pid in pids) and cluster.latest_states() == {"kept": "TASK_RUNNING"}
