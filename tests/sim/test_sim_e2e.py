"""``tepui sim`` against a real ``--insecure`` master: 50 simulated agents register (over
libzmq and over the Python ZMTP peer), a real framework (the SDK's SchedulerDriver) launches
100 tasks of duration 0 on them, and every one finishes; ``/state`` shows the 50 agents by
their hostnames and attributes. SIGTERM with ``--unregister`` removes them from the master.
Against a CURVE master, ``--keys DIR`` (one agent key for every simulated agent) registers them
over both transports; without keys the sim refuses to start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.conftest import child_env, free_ports, get_state, stop_process, tail, tepui_cmd

pytestmark = pytest.mark.slow

FRAMEWORK = Path(__file__).resolve().parents[2] / "bench" / "scale_framework.py"
AGENTS, TASKS = 50, 100


class Master:
    def __init__(self, root: Path, security: tuple[str, ...] = ("--insecure",)) -> None:
        self.port, self.http_port = free_ports(2)
        self.log = root / "master.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                tepui_cmd("master", *security, "--ip", "127.0.0.1", "--port", str(self.port), "--http-port",
                          str(self.http_port), "--log-level", "warning"),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env())
        deadline = time.monotonic() + 15
        while get_state(self.http_port) is None:
            assert self.process.poll() is None and time.monotonic() < deadline, tail(self.log)
            time.sleep(0.1)


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    instance = Master(tmp_path)
    yield instance
    stop_process(instance.process, 10)


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("transport", ["zmq", "zmtp"])
def test_simulated_agents_register_and_run_a_frameworks_tasks(master: Master, tmp_path: Path, transport: str) -> None:
    ready_file = tmp_path / "ready"
    sim_log = tmp_path / "sim.log"
    with open(sim_log, "ab") as log:
        sim = subprocess.Popen(
            tepui_cmd("sim", "--insecure", "--master", f"127.0.0.1:{master.port}", "--agents", str(AGENTS),
                      "--transport", transport, "--attributes", "rack:r{i%10};zone:z{i%3}", "--ready-file",
                      str(ready_file), "--unregister", "--wave", "20"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=child_env())
    try:
        wait_for(ready_file.exists, 30, f"the sim to be ready:\n{tail(sim_log)}\n{tail(master.log)}")
        assert sim.stdout is not None
        assert sim.stdout.readline().decode().strip() == f"ready agents={AGENTS}"
        assert ready_file.read_text() == f"agents={AGENTS}\n"
        state = get_state(master.http_port)
        assert state is not None and state["activated_slaves"] == AGENTS
        agents = {agent["hostname"]: agent for agent in state["slaves"]}
        assert sorted(agents) == [f"sim-{i:05d}" for i in range(1, AGENTS + 1)]
        assert agents["sim-00013"]["attributes"] == {"rack": "r3", "zone": "z1"}

        framework = subprocess.run(
            [sys.executable, str(FRAMEWORK), "--master", f"127.0.0.1:{master.port}", "--tasks", str(TASKS),
             "--agents", str(AGENTS), "--duration", "0", "--until", "finished"],
            capture_output=True, text=True, timeout=60, env=child_env(), check=False)
        assert framework.returncode == 0, f"{framework.stdout[-2000:]}\n{framework.stderr[-2000:]}\n{tail(sim_log)}"
        assert framework.stdout.strip().splitlines()[-1] == f"{TASKS} tasks finished"

        sim.terminate()
        assert sim.wait(15) == 0, tail(sim_log)
        assert "agents_unregistered=50" in sim_log.read_text()
        wait_for(lambda: (get_state(master.http_port) or {}).get("activated_slaves") == 0, 10,
                 "the master to drop the unregistered agents")
    finally:
        if sim.poll() is None:
            stop_process(sim, 10)
        if sim.stdout is not None:
            sim.stdout.close()


@pytest.mark.parametrize("transport", ["zmq", "zmtp"])
def test_simulated_agents_register_with_a_curve_master_using_one_agent_key(tmp_path: Path, transport: str) -> None:
    from tepui.sdk.keys import init_store, issue

    store = tmp_path / "keys"
    init_store(str(store))
    _entry, agent_dir = issue(str(store), "sim", "agent")
    master = Master(tmp_path, ("--keys", str(store)))
    ready_file = tmp_path / "ready"
    sim_log = tmp_path / "sim.log"
    try:
        with open(sim_log, "ab") as log:
            sim = subprocess.Popen(
                tepui_cmd("sim", "--keys", agent_dir, "--master", f"127.0.0.1:{master.port}", "--agents", "20",
                          "--transport", transport, "--ready-file", str(ready_file), "--wave", "10"),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=child_env())
        try:
            wait_for(ready_file.exists, 30, f"the sim to be ready:\n{tail(sim_log)}\n{tail(master.log)}")
            state = get_state(master.http_port)
            assert state is not None and state["activated_slaves"] == 20
            assert "CURVE" in sim_log.read_text()
            # ZMTP heartbeats (encrypted PING/PONG on zmtp) keep the links up past the master's
            # 15 s heartbeat timeout, and the master's pings go on being answered.
            time.sleep(17)
            assert (get_state(master.http_port) or {}).get("activated_slaves") == 20, tail(master.log)
        finally:
            stop_process(sim, 10)
        refused = subprocess.run(tepui_cmd("sim", "--master", f"127.0.0.1:{master.port}", "--agents", "1"),
                                 capture_output=True, text=True, timeout=30, env=child_env(), check=False)
        assert refused.returncode != 0 and "--keys DIR" in refused.stderr
    finally:
        stop_process(master.process, 10)
