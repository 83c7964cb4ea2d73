"""`tepui up` heals (issue 14, item 6), with real processes: a SIGKILLed agent is restarted on its
work dir and takes its running task back under the same agent id, without restarting the task's
process; a SIGKILLed services framework is restarted on its store and fails over to the same
framework id without launching a duplicate; an agent that can no longer start is given up on
after five restarts, and only then does the cluster stop.

The supervision policy's exact decisions are tests/cli/test_supervision.py's; its shell with fake
children tests/cli/test_up_supervision.py's. Every wait here is on a condition, with deadlines
sized for a busy 2-core machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    LogBook,
    ProcessWatch,
    child_env,
    children_of,
    cmdline,
    get_state,
    http_get,
    is_alive,
    processes_under,
    start_time,
    stop_process,
    tail,
    tepui_cmd,
    up_ports,
)
from tests.chaos.processes import wait_for
from tests.e2e.test_cluster import _Lines

pytestmark = pytest.mark.slow

UP_TIMEOUT = 60.0  # `tepui up` until "Tepui is up"
HEAL_TIMEOUT = 60.0  # a killed process until it is back and re-registered


@dataclass
class Up:
    """One `tepui up` of this test, its output read in a thread, and what it started."""

    state_dir: Path
    http_port: int
    process: subprocess.Popen[str]
    output: _Lines
    watch: ProcessWatch = field(default_factory=ProcessWatch)

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_for(condition, what, timeout, logs=lambda: f"`tepui up` said:\n{self.output.text()}")

    def child(self, needle: str) -> int:
        """The pid of the one child of `tepui up` whose command line contains ``needle``."""
        found = [pid for pid in children_of(self.process.pid) if needle in cmdline(pid) + " "]
        assert len(found) == 1, f"{needle!r} among {[cmdline(p) for p in children_of(self.process.pid)]}"
        self.watch.add(found)
        return found[0]

    def state(self) -> dict[str, Any]:
        state = get_state(self.http_port)
        assert state is not None, f"/state did not answer; `tepui up` said:\n{self.output.text()}"
        return state

    def log_after_restart(self, name: str, count: int = 1) -> str:
        """What ``name`` logged since `tepui up` restarted it for the ``count``-th time."""
        text = (self.state_dir / f"{name}.log").read_text(errors="replace")
        marker = f"--- tepui up: restart {count} of {name} at "
        return text.split(marker, 1)[1] if marker in text else ""

    def remember_everything(self) -> None:
        """Every process `tepui up` started, and those under its state dir (tasks), for the
        check that nothing is left once it stops."""
        for child in children_of(self.process.pid):
            self.watch.add([child, *children_of(child)])
        self.watch.add(processes_under(self.state_dir))

    def log_tails(self, lines: int = 40) -> str:
        logs = sorted(self.state_dir.glob("*.log"))
        return "\n".join([f"===== tepui up =====\n{self.output.text()}",
                          *(f"===== {log.name} =====\n{tail(log, lines)}" for log in logs)])


@pytest.fixture
def up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Up]:
    """`tepui up` with the agent count of ``@pytest.mark.parametrize("up", [N], indirect=True)``."""
    # Its client configuration goes to this test's own file, not the user's.
    monkeypatch.setenv("TEPUI_CONFIG", str(tmp_path / "config.yaml"))
    agents = getattr(request, "param", 2)
    port, http_port = up_ports()
    state_dir = tmp_path / "state"
    process = subprocess.Popen(
        tepui_cmd("up", "--agents", str(agents), "--state-dir", str(state_dir), "--port", str(port),
                  "--http-port", str(http_port), "--timeout", str(UP_TIMEOUT - 5)),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env())
    instance = Up(state_dir, http_port, process, _Lines(process.stdout))
    instance.watch.add([process.pid])
    try:
        ready = instance.output.wait_for("Tepui is up", UP_TIMEOUT, alive=lambda: process.poll() is None)
        assert ready, f"`tepui up` never said it is up (exit {process.poll()}):\n{instance.output.text()}"
        instance.remember_everything()
        yield instance
    finally:
        if process.poll() is None:
            instance.remember_everything()
        stop_process(process, 30)
        # Only what we recorded as ours (children of our `tepui up`, its tasks), if still there.
        for entry in instance.watch.survivors():
            try:
                os.kill(int(entry.split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass


def deploy(app: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(app))
    result = subprocess.run(tepui_cmd("apps", "deploy", str(path)), check=False, capture_output=True, text=True,
                            timeout=90, env=child_env())
    assert result.returncode == 0, f"tepui apps deploy: {result.returncode}\n{result.stdout}\n{result.stderr}"


def framework(state: dict[str, Any], name: str) -> dict[str, Any]:
    found = [f for f in state["frameworks"] if f["name"] == name]
    assert len(found) == 1, [(f["name"], f["id"]) for f in state["frameworks"]]
    return found[0]


def launched(http_port: int) -> float:
    status, body = http_get(http_port, "/metrics")
    assert status == 200
    match = re.search(rb"^tepui_master_tasks_launched_total (\S+)$", body, re.MULTILINE)
    assert match, "no tasks_launched_total in /metrics"
    return float(match.group(1))


def test_a_killed_agent_and_a_killed_services_framework_are_restarted_on_their_state(
        up: Up, tmp_path: Path, logbook: LogBook) -> None:
    # A service instance, and a `tepui run` task: both must live through what follows.
    deploy({"id": "/sleepy", "command": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 1}, tmp_path / "app.json")
    sleeper_log = logbook.add("tepui run", tmp_path / "sleeper.log")
    with open(sleeper_log, "wb") as log_file:
        sleeper = subprocess.Popen(tepui_cmd("run", "--", "sleep", "300"), stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=child_env())
    try:
        up.wait(lambda: "TASK_RUNNING" in sleeper_log.read_text(), 60, "the `tepui run -- sleep 300` task RUNNING")
        state = up.state()
        (task,) = framework(state, "tepui-run:run")["tasks"]
        (agent,) = [a for a in state["slaves"] if a["id"] == task["slave_id"]]
        hostname = agent["hostname"]
        task_pid = up.wait(lambda: [p for p in processes_under(up.state_dir / hostname)
                                    if cmdline(p) == "sleep 300"], 30, "the task's process in its sandbox")[0]
        task_started = start_time(task_pid)
        up.remember_everything()

        # 1. SIGKILL the task's agent.
        agent_pid = up.child(f"--hostname {hostname} ")
        os.kill(agent_pid, signal.SIGKILL)
        up.wait(lambda: f"{hostname} exited with code -9 (killed); restarting it on its work dir in 1 s "
                        f"(restart 1 of 5 in 120 s)" in up.output.text(), 30, "the restart line")
        new_pid = int(up.wait(lambda: re.search(rf"{hostname} restarted \(pid (\d+)\)", up.output.text()), 30,
                              "the restarted line").group(1))
        assert new_pid != agent_pid and new_pid in children_of(up.process.pid)
        up.watch.add([new_pid])
        # It took its task back and re-registered under its id.
        restarted_log = lambda: up.log_after_restart(hostname)  # noqa: E731
        up.wait(lambda: f"event=task_adopted task_id={task['id']} " in restarted_log(), HEAL_TIMEOUT,
                "the restarted agent adopting the task")
        up.wait(lambda: f"event=agent_reregistered agent_id={agent['id']} " in restarted_log(), HEAL_TIMEOUT,
                f"{hostname} re-registered under {agent['id']}")
        state = up.state()
        assert state["activated_slaves"] == 2
        assert [a["id"] for a in state["slaves"] if a["hostname"] == hostname] == [agent["id"]]
        (after,) = framework(state, "tepui-run:run")["tasks"]
        assert (after["id"], after["state"], after["slave_id"]) == (task["id"], "TASK_RUNNING", agent["id"])
        # The very same process: never restarted, never duplicated.
        assert is_alive(task_pid, task_started), "the task's process did not survive its agent's restart"
        assert [p for p in processes_under(up.state_dir) if cmdline(p) == "sleep 300"] == [task_pid]
        assert sleeper.poll() is None, f"`tepui run` ended:\n{sleeper_log.read_text()}"

        # 2. SIGKILL the services framework.
        services = framework(up.state(), "services")
        (instance,) = services["tasks"]
        launches = launched(up.http_port)
        os.kill(up.child(" tepui.cli services "), signal.SIGKILL)
        up.wait(lambda: "services exited with code -9 (killed); restarting it on its store in 1 s "
                        "(restart 1 of 5 in 120 s)" in up.output.text(), 30, "the services restart line")
        up.wait(lambda: f"event=services_subscribed framework_id={services['id']} " in up.log_after_restart("services"),
                HEAL_TIMEOUT, "the services framework re-subscribed under its id")
        assert f"apps=1 instances=1 framework_id={services['id']} " in up.log_after_restart("services"), \
            "the restarted framework did not start from its store"

        def app_running() -> dict[str, Any] | None:
            status, body = http_get(up.http_port, "/frameworks/services/v1/apps/sleepy")
            app = json.loads(body) if status == 200 else None
            return app if app and app["running"] == 1 else None

        app = up.wait(app_running, HEAL_TIMEOUT, "/sleepy running through the restarted framework")
        assert [t["task_id"] for t in app["tasks"]] == [instance["id"]], app["tasks"]
        services = framework(up.state(), "services")
        assert services["connected"] and [t["id"] for t in services["tasks"]] == [instance["id"]]
        assert launched(up.http_port) == launches, "something was launched again"
        assert up.process.poll() is None, up.output.text()

        # 3. Stop: the restarted agent owns the task, and ends it with the rest.
        up.remember_everything()
        up.process.send_signal(signal.SIGTERM)
        try:
            code = up.process.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`tepui up` did not stop within 60 s of SIGTERM:\n{up.output.text()}")
        assert code == 0 and "stopped." in up.output.text(), up.output.text()
        assert not up.watch.survivors(), f"left running: {up.watch.survivors()}"
        sleeper.wait(30)
        assert sleeper.returncode == 143 and "TASK_KILLED" in sleeper_log.read_text(), sleeper_log.read_text()
    finally:
        stop_process(sleeper, 5)


@pytest.mark.parametrize("up", [1], indirect=True)
def test_an_agent_that_can_no_longer_start_is_given_up_on_after_five_restarts(up: Up) -> None:
    agent_pid = up.child("--hostname agent-1 ")
    # Freeze it (it writes no checkpoint while frozen), tear its checkpoint, kill it: each
    # restart now refuses to start (strict recovery).
    os.kill(agent_pid, signal.SIGSTOP)
    (up.state_dir / "agent-1" / "meta" / "agent.json").write_text('{"torn')
    os.kill(agent_pid, signal.SIGKILL)
    # Restarts after 1+2+4+8+16 s, plus six agent starts: about 40 s on an idle machine.
    try:
        code = up.process.wait(240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`tepui up` still runs 240 s after its agent's checkpoint was torn:\n{up.output.text()}")
    up.output.wait_for("stopped, after giving up.", 30)  # the reader thread may lag behind the exit
    text = up.output.text()
    assert code == 1, text
    assert "agent-1 exited with code -9 (killed); restarting it on its work dir in 1 s (restart 1 of 5 in 120 s)" in text
    for count, delay in ((2, 2), (3, 4), (4, 8), (5, 16)):
        assert (f"agent-1 exited with code 1; restarting it on its work dir in {delay} s "
                f"(restart {count} of 5 in 120 s)") in text, text
    assert ("agent-1 exited with code 1 again: 5 restarts within 120 s did not help (a crash loop); giving up on it "
            "and stopping the cluster. Its log says why: fix that, then start `tepui up` again, which starts agent-1 "
            "on its work dir again") in text, text
    assert "the agent's checkpoint is damaged" in text.split("giving up on it", 1)[1], "the log's tail"
    assert text.rstrip().endswith("stopped, after giving up."), text
    assert not up.watch.survivors(), f"left running: {up.watch.survivors()}"
