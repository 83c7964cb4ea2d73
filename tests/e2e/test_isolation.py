"""Real cgroup isolation through a real agent: memory, cpu and pids limits, whole-tree kills,
and the unprivileged task user. Needs root and cgroups (CI has both); skipped otherwise."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tepui.agent.containerizers.cgroups import Cgroups

from .conftest import Cluster, child_env, processes_under, stop_process, tepui_cmd

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Cgroups.usable(),
                       reason="needs root and a usable cgroup hierarchy (CI has both)"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    instance = Cluster(tmp_path_factory.mktemp("isolated"), agents=1,
                       agent_args=["--isolation", "cgroups", "--task-pids-max", "64"])
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def run(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tepui_cmd("run", "--master", cluster.master, *args), capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def test_memory_limit_ends_the_task_failed_with_a_clear_reason(cluster: Cluster) -> None:
    done = run(cluster, "--mem", "48", "--", "python3", "-c", "x = bytearray(300 * 1024 * 1024); print('survived')")
    assert done.returncode == 137, done.stdout + done.stderr
    assert "TASK_FAILED" in done.stderr and "Memory limit exceeded" in done.stderr and "48 MiB" in done.stderr
    assert "survived" not in done.stdout


def test_cpu_quota_holds_a_busy_loop_to_its_share(cluster: Cluster) -> None:
    script = ("import os, time\nend = time.time() + 2\nwhile time.time() < end: pass\n"
              "t = os.times()\nprint(t.user + t.system)")
    done = run(cluster, "--cpus", "0.2", "--", "python3", "-c", script)
    assert done.returncode == 0, done.stdout + done.stderr
    used = float(done.stdout.strip().splitlines()[-1])
    assert 0.25 <= used <= 0.6, f"0.2 cpus over 2 s should use about 0.4 cpu-seconds, used {used}"


def test_fork_bomb_stops_at_the_pids_limit_and_leftovers_die_with_the_task(cluster: Cluster) -> None:
    script = ("import os, time\nn = 0\ntry:\n    for _ in range(1000):\n        if os.fork() == 0:\n"
              "            time.sleep(60)\n            os._exit(0)\n        n += 1\n"
              "except OSError as e:\n    print('stopped at', n, e.errno)\n")
    done = run(cluster, "--", "python3", "-c", script)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"stopped at (\d+) 11", done.stdout)
    assert match and int(match.group(1)) < 64, done.stdout
    time.sleep(0.5)
    assert processes_under(cluster.work_dirs[0]) == [], "the bomb's sleeping children outlived their task"


def test_killing_a_task_kills_a_grandchild_that_left_its_process_group(cluster: Cluster) -> None:
    runner = subprocess.Popen(
        tepui_cmd("run", "--master", cluster.master, "--", "sh", "-c", "setsid sleep 300 & sleep 300"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(processes_under(cluster.work_dirs[0])) < 3:
            time.sleep(0.1)
        assert len(processes_under(cluster.work_dirs[0])) >= 3, "the task and its escaped grandchild should run"
        runner.send_signal(signal.SIGTERM)  # tears the framework down: the agent kills the task
        runner.wait(20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and processes_under(cluster.work_dirs[0]):
            time.sleep(0.1)
        assert processes_under(cluster.work_dirs[0]) == [], "a process of the killed task survived"
    finally:
        stop_process(runner, 5)


def test_tasks_run_unprivileged_and_other_users_need_permission(cluster: Cluster) -> None:
    done = run(cluster, "--", "id", "-un")
    assert done.returncode == 0 and done.stdout.strip() == "nobody", done.stdout + done.stderr
    refused = run(cluster, "--user", "root", "--", "id", "-un")
    assert refused.returncode == 125, refused.stdout + refused.stderr
    # The master refuses root before the agent sees it (no run_tasks rule names root).
    assert "TASK_ERROR" in refused.stderr and "asks to run as user 'root'" in refused.stderr
    # Another user passes the master's ACLs and is refused by the agent (not in --allowed-users).
    refused = run(cluster, "--user", "daemon", "--", "id", "-un")
    assert refused.returncode == 125, refused.stdout + refused.stderr
    assert "TASK_ERROR" in refused.stderr and "does not allow" in refused.stderr


def test_no_task_cgroup_is_left_behind(cluster: Cluster) -> None:
    run(cluster, "--", "true")
    name = f"agent-1-{hashlib.sha1(os.path.abspath(cluster.work_dirs[0]).encode()).hexdigest()[:8]}"
    agent_dirs = [os.path.join(base, "tepui", name) for base in
                  ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/pids", "/sys/fs/cgroup")]
    existing = [d for d in agent_dirs if os.path.isdir(d)]
    assert existing, f"the agent's cgroup directory was not found among {agent_dirs}"
    for directory in existing:
        assert [e for e in os.scandir(directory) if e.is_dir()] == [], f"task cgroups left in {directory}"


def test_agent_reports_per_task_usage_from_the_cgroup(cluster: Cluster) -> None:
    import json
    import urllib.request

    runner = subprocess.Popen(
        tepui_cmd("run", "--master", cluster.master, "--", "python3", "-c",
                  "import time\nx = bytearray(20 * 1024 * 1024)\nend = time.time() + 3\nwhile time.time() < end: pass"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        url = cluster.state()["slaves"][0]["url"]
        best: dict[str, tuple[int, float]] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            request = urllib.request.Request(f"{url}/usage", headers={"Authorization": f"Bearer {cluster.token}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                for task in json.loads(response.read())["tasks"]:
                    memory, cpu = best.get(task["task_id"], (0, 0.0))
                    best[task["task_id"]] = (max(memory, task["memory_bytes"]), max(cpu, task["cpu_seconds"]))
            if any(memory > 10 * 1024 * 1024 and cpu > 0.1 for memory, cpu in best.values()):
                break
            time.sleep(0.3)
        if not any(memory > 10 * 1024 * 1024 and cpu > 0.1 for memory, cpu in best.values()):
            runner.wait(30)
            pytest.fail(f"no task showed its usage: {best}\n{runner.stderr.read() if runner.stderr else ''}")
    finally:
        runner.wait(30)
