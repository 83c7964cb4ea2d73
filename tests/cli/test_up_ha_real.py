"""A real `tepui up --ha` (cli/up_ha.py) on free ports in a temporary state dir, with its own local
ZooKeeper ensemble: three masters answer and exactly one leads, `tepui state` says which, an app
deployed through the CLI runs; the leading master SIGKILLed, another leads within seconds, the
CLI still works through the client configuration, and the killed one comes back as a standby;
then Ctrl-C (SIGINT) leaves nothing running, the ensemble included."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tepui.cli import ha_ports
from tepui.cli.ensemble import LocalEnsemble, installed
from tepui.cli.ensemble import port_free

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not installed(), reason="the ZooKeeper server is not installed (apt-get install "
                                                         "zookeeperd; scripts/test does)")]

APP = """id: /ha-sleeper
command: sleep 600
cpus: 0.1
mem: 32
instances: 1
"""


def free_plan() -> tuple[int, int]:
    """--port and --http-port whose whole plan (masters, instances, ensemble) is free, below the
    ephemeral range so that no connection of another test takes one of them meanwhile."""
    for _ in range(200):
        port = random.randrange(10000, 14900)
        http_port = port + 100
        plan = ha_ports.plan(port, http_port)
        if not ha_ports.collisions(plan, with_ensemble=True) and all(
                port_free(n) for n, _what in plan.all_ports(with_ensemble=True)):
            return port, http_port
    raise AssertionError("no free block of ports for tepui up --ha")


def health(http: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{http}/health", timeout=2) as response:
            body = json.load(response)
            return body if isinstance(body, dict) else None
    except (OSError, ValueError):
        return None


def until(condition: Callable[[], Any], timeout: float, what: str, output: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s: {what}\n--- tepui up said:\n{output()}")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (children of children too)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Up:
    def __init__(self, tmp: Path) -> None:
        self.port, self.http_port = free_plan()
        self.plan = ha_ports.plan(self.port, self.http_port)
        self.state = tmp / "state"
        self.env = {**os.environ, "TEPUI_CONFIG": str(tmp / "client.yaml")}
        self.env.pop("TEPUI_MASTER", None)
        self.env.pop("TEPUI_MASTER_HTTP", None)
        self.out = tmp / "up.out"
        self.started = time.monotonic()
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tepui.cli", "up", "--ha", "--port", str(self.port), "--http-port",
                 str(self.http_port), "--state-dir", str(self.state), "--timeout", "120"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def tepui(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tepui.cli", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def leaders(self) -> list[ha_ports.MasterPorts]:
        return [m for m in self.plan.masters if (h := health(m.http)) is not None and h.get("leading")]

    def ensemble(self) -> LocalEnsemble:
        return LocalEnsemble(self.state / "zookeeper", self.plan.ensemble_base)

    def cleanup(self) -> None:
        """After a failed test: stop what is left (this test's processes only)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()  # its children die with it (PR_SET_PDEATHSIG)
                self.process.wait()
        self.ensemble().stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Up]:
    up = Up(tmp_path)
    try:
        yield up
    finally:
        up.cleanup()


def test_tepui_up_ha_survives_the_loss_of_its_leading_master_and_stops_everything(cluster: Up) -> None:
    up = cluster
    until(lambda: "stop: Ctrl-C" in up.output(), 150, "the cluster up", up.output)  # the last line of the summary
    print(f"tepui up --ha: up after {time.monotonic() - up.started:.1f} s")
    text = up.output()
    assert "leading master: master-" in text and "services: leader services-" in text, text

    # All three masters answer; exactly one leads, and `tepui state` says which.
    answers = {m.name: health(m.http) for m in up.plan.masters}
    assert all(answers.values()), answers
    leaders = [name for name, h in answers.items() if h and h["leading"]]
    assert len(leaders) == 1, answers
    leader = next(m for m in up.plan.masters if m.name == leaders[0])
    leader_id = answers[leader.name]["id"]  # type: ignore[index]
    state = up.tepui("state")
    assert state.returncode == 0, state.stdout + state.stderr
    row = next(line for line in state.stdout.splitlines() if leader_id in line and "leading" in line)
    assert leader.http in row, state.stdout

    # An app deployed through the CLI (client configuration: master zk://) runs.
    app = up.state.parent / "sleeper.yaml"
    app.write_text(APP)
    deployed = up.tepui("apps", "deploy", str(app), timeout=120)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    # SIGKILL the leading master: another leads within a few seconds.
    pids = descendants(up.process.pid)
    leader_pid = next(p for p in pids if f"--http-port\0{leader.http_port}\0".encode()
                      in Path(f"/proc/{p}/cmdline").read_bytes() and b"master" in Path(f"/proc/{p}/cmdline").read_bytes())
    killed_at = time.monotonic()
    os.kill(leader_pid, signal.SIGKILL)
    new = until(lambda: [m for m in up.leaders() if m != leader], 20, "another master leading", up.output)
    print(f"a new leader ({new[0].name}) answers leading=true {time.monotonic() - killed_at:.1f} s after the kill")
    assert time.monotonic() - killed_at < 15

    # The CLI follows it through the client configuration.
    def cli_works() -> bool:
        listed, shown = up.tepui("apps", "list"), up.tepui("state")
        return (listed.returncode == 0 and "/ha-sleeper" in listed.stdout and shown.returncode == 0
                and new[0].http in next((line for line in shown.stdout.splitlines() if "leading" in line), ""))

    until(cli_works, 30, "tepui apps list and tepui state through the new leader", up.output)

    # The killed master is restarted, and answers as a standby.
    until(lambda: f"{leader.name} restarted (pid" in up.output(), 30, f"{leader.name} restarted", up.output)
    assert f"{leader.name} exited with code -9 (killed); restarting it as a standby" in up.output()
    standby = until(lambda: (h := health(leader.http)) is not None and h.get("leading") is False and h, 30,
                    f"{leader.name} answering as a standby", up.output)
    assert standby["id"] != leader_id  # a new process, a new contender
    assert f"{new[0].name} is the leading master now" in up.output()

    # Ctrl-C: everything it started stops, the ensemble too, and nothing is left.
    pids = descendants(up.process.pid)
    ensemble = up.ensemble()
    zk_pids = {p for i in range(3) if (p := ensemble.pid(i)) is not None}
    assert len(zk_pids) == 3
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(90) == 0, up.output()
    assert "stopped." in up.output()
    left = sorted(p for p in pids | zk_pids if alive(p))
    assert not left, f"left running: {left}\n{up.output()}"
    assert not any(ensemble.pid(i) for i in range(3))
    assert all(port_free(n) for n, _what in up.plan.all_ports(with_ensemble=True))
