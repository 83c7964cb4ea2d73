"""Real processes for the chaos suite: a master (optionally with a registry), one agent that
can be SIGKILLed and started again on the same work dir, and ``recovery_framework.py``, which
launches tasks and records every update it receives (JSON lines). Task processes are found by
their sandbox working directory; everything started here is stopped by pid in ``stop``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import (
    child_env,
    free_ports,
    get_state,
    is_alive,
    processes_under,
    stop_agent,
    stop_process,
    tail,
    tepui_cmd,
)

HERE = Path(__file__).resolve().parent


def wait_for(predicate: Any, what: str, timeout: float = 20.0, logs: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{logs()}" if logs else ""))


class OneAgentCluster:
    def __init__(self, root: Path, agent_args: list[str] | None = None) -> None:
        self.root = root
        self.port, self.http_port = free_ports(2)
        self.agents_root = Path(tempfile.mkdtemp(prefix="tepui-recovery-"))
        os.chmod(self.agents_root, 0o711)
        self.work_dir = self.agents_root / "agent"
        self.agent_args = ["--containerizers", "mesos"] if agent_args is None else agent_args
        self.master: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.framework: subprocess.Popen[bytes] | None = None
        self.agent_runs = 0
        self.master_runs = 0
        self.master_args: list[str] = []
        self.logs: list[Path] = []

    def _log(self, name: str) -> Any:
        path = self.root / f"{name}.log"
        self.logs.append(path)
        return open(path, "ab")

    def start_master(self, *extra: str) -> None:
        """With ``--work-dir`` among ``extra`` the registry survives a SIGKILL (restart_master)."""
        self.master_runs += 1
        self.master_args = list(extra)
        with self._log(f"master-{self.master_runs}") as log:
            self.master = subprocess.Popen(
                tepui_cmd("master", "--ip", "127.0.0.1", "--port", str(self.port), "--http-port", str(self.http_port),
                          "--insecure", *extra),  # not about security: plain ZeroMQ
                stdout=log, stderr=subprocess.STDOUT, env=child_env())

    def kill_master(self) -> None:
        assert self.master is not None
        self.master.send_signal(signal.SIGKILL)
        self.master.wait(10)

    def restart_master(self) -> None:
        self.start_master(*self.master_args)

    def start_agent(self, *extra: str) -> subprocess.Popen[bytes]:
        self.agent_runs += 1
        with self._log(f"agent-{self.agent_runs}") as log:
            self.agent = subprocess.Popen(
                tepui_cmd("agent", "--master", f"127.0.0.1:{self.port}", "--work-dir", str(self.work_dir),
                          "--hostname", "agent-r", "--http-port", "0", "--resources", "cpus:4;mem:2048",
                          "--insecure", *self.agent_args, *extra),
                stdout=log, stderr=subprocess.STDOUT, env=child_env())
        return self.agent

    def start_framework(self, tasks: dict[str, str], *extra: str) -> None:
        args = [sys.executable, str(HERE / "recovery_framework.py"), "--master", f"127.0.0.1:{self.port}", *extra]
        for task_id, command in tasks.items():
            args += ["--task", f"{task_id}={command}"]
        self.framework_out = self.root / "framework.jsonl"
        with open(self.framework_out, "ab") as out, self._log("framework-stderr") as err:
            self.framework = subprocess.Popen(args, stdout=out, stderr=err, env=child_env())

    def events(self) -> list[dict[str, Any]]:
        if not self.framework_out.exists():
            return []
        return [json.loads(line) for line in self.framework_out.read_text().splitlines() if line.startswith("{")]

    def latest_states(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for event in self.events():
            if event["event"] == "status":
                states[event["task_id"]] = event["state"]
        return states

    def state(self) -> dict[str, Any]:
        return get_state(self.http_port) or {}

    def tail_logs(self) -> str:
        return "\n".join(f"===== {path.name} =====\n{tail(path, 30)}" for path in self.logs)

    def task_processes(self, task_id: str) -> list[int]:
        return processes_under(self.work_dir / "sandboxes" / self.framework_id() / task_id)

    def settled_task_processes(self, task_id: str, timeout: float = 5.0) -> list[int]:
        """The task's processes once they stop changing. TASK_RUNNING is reported as soon as
        the supervisor is spawned, which may be before it has changed into the sandbox (where
        ``processes_under`` finds processes) and before the command has started."""
        deadline = time.monotonic() + timeout
        last: list[int] | None = None
        while True:
            current = sorted(self.task_processes(task_id))
            if (current and current == last) or time.monotonic() > deadline:
                return current
            last = current
            time.sleep(0.1)

    def framework_id(self) -> str:
        return next(e["framework_id"] for e in self.events() if e["event"] == "subscribed")

    def kill_agent(self) -> None:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGKILL)
        self.agent.wait(10)

    def stop(self) -> None:
        leftovers = processes_under(self.agents_root)
        if self.framework is not None:
            stop_process(self.framework, 5)
        if self.agent is not None and self.agent.poll() is None:
            stop_agent(self.agent, 20)  # SIGUSR1: it ends its tasks too
        if self.master is not None:
            stop_process(self.master, 10)
        for pid in leftovers + processes_under(self.agents_root):
            if is_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.agents_root, ignore_errors=True)


def running_everywhere(cluster: OneAgentCluster, task_ids: list[str]) -> bool:
    states = cluster.latest_states()
    return all(states.get(t) == "TASK_RUNNING" for t in task_ids)


def running_cluster(cluster: OneAgentCluster, tasks: dict[str, str], *framework_args: str,
                    agent_args: tuple[str, ...] = (), master_args: tuple[str, ...] = ()) -> OneAgentCluster:
    """Master, agent and framework up, with every task of ``tasks`` RUNNING."""
    cluster.start_master(*master_args)
    cluster.start_agent(*agent_args)
    wait_for(lambda: cluster.state().get("activated_slaves") == 1, "the agent to register", logs=cluster.tail_logs)
    cluster.start_framework(tasks, *framework_args)
    wait_for(lambda: running_everywhere(cluster, list(tasks)), f"{len(tasks)} tasks RUNNING", timeout=60,
             logs=cluster.tail_logs)
    return cluster


def master_task_states(cluster: OneAgentCluster) -> dict[str, str]:
    return {t["id"]: t["state"] for f in cluster.state().get("frameworks", []) for t in f.get("tasks", [])}
