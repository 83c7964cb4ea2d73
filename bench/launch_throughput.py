"""Launch throughput: how many tasks per second one master launches, with simulated agents.

Starts an insecure master (``--framework-rate-limit unlimited``: the load framework sends an
ACCEPT per offer and three acknowledgements per task, far over the default 1000 calls/s) and the
agent simulator ``tepui sim --agents N`` (it prints ``ready agents=N`` once all registered), then
runs ``bench/load_framework.py`` with M tasks of duration 0 (the simulator finishes each task as
soon as it is RUNNING), R times, against the same cluster. Each run's launches/s is M divided by
first ACCEPT → last TASK_RUNNING, measured in the framework; the last line is the median.

    python bench/launch_throughput.py [--agents 1000] [--tasks 20000] [--runs 3]
    python bench/launch_throughput.py --agents 100 --agents 1000 --agents 10000
    python bench/launch_throughput.py --smoke            # 20 agents, 500 tasks, 1 run
    python bench/launch_throughput.py --real-agents 2 --tasks 200   # real `tepui agent`s instead

Output: a line per run, a line per cluster size (``agents=N launches_per_second=<median> ...``)
and last ``launches_per_second=<median>`` for 1,000 agents (or the last size when 1,000 was
not run). The run's directory (logs of the master and the simulator) is kept when it fails.
The master's pid is printed on stderr so that a profiler can attach
(``py-spy record -o prof.svg --pid PID``).

Anchors (PERFORMANCE_ANCHORS): kube-scheduler CI thresholds 680–810 pods/s at 5,000 nodes (3.5);
Nomad C1M 3,750 containers/s with 5 servers (4.1); Slurm 500 jobs/s sustained (7.1); Borg
> 167 task arrivals/s per cell (6.1).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import IO, Any

sys.path.insert(0, os.path.dirname(__file__))
from cluster import free_port  # noqa: E402

LOAD_FRAMEWORK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "load_framework.py")
REAL_AGENT_RESOURCES = "cpus:16;mem:16384"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TEPUI_CONFIG"] = os.devnull  # an --insecure cluster: no keys from ~/.config/tepui
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("TEPUI_MASTER", None)
    return env


class Cluster:
    """A master plus either the agent simulator or real agents, on free ports, stopped by pid."""

    def __init__(self, agents: int, real_agents: bool, allocation_interval: float, sim_args: list[str],
                 master_args: list[str]) -> None:
        self.agents, self.real_agents = agents, real_agents
        self.allocation_interval, self.sim_args, self.master_args = allocation_interval, sim_args, master_args
        self.port, self.http_port = free_port(), free_port()
        self.dir = tempfile.mkdtemp(prefix="tepui-launch-")
        os.chmod(self.dir, 0o711)  # real agents' task users must reach their sandboxes
        self.master: subprocess.Popen[bytes] | None = None
        self.others: list[subprocess.Popen[bytes]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _log(self, name: str) -> IO[bytes]:
        return open(os.path.join(self.dir, f"{name}.log"), "ab")

    def _spawn(self, name: str, args: list[str], stdout: Any = None) -> subprocess.Popen[bytes]:
        with self._log(name) as log:
            return subprocess.Popen([sys.executable, "-m", "tepui.cli", *args], stdout=stdout or log, stderr=log,
                                    stdin=subprocess.DEVNULL, env=child_env(), cwd=self.dir)

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/state", timeout=10) as response:
            return json.load(response)  # type: ignore[no-any-return]

    def start(self) -> None:
        self.master = self._spawn("master", [
            "master", "--ip", "127.0.0.1", "--port", str(self.port), "--http-port", str(self.http_port),
            "--insecure", "--log-level", "warning", "--framework-rate-limit", "unlimited",
            "--allocation-interval", str(self.allocation_interval), *self.master_args])
        print(f"master pid={self.master.pid} at {self.address}, logs in {self.dir}", file=sys.stderr, flush=True)
        self._wait(lambda: self.state() is not None, 30, "the master did not answer /state")
        started = time.perf_counter()
        if self.real_agents:
            for i in range(self.agents):
                self.others.append(self._spawn(f"agent-{i}", [
                    "agent", "--master", self.address, "--work-dir", os.path.join(self.dir, f"agent-{i}"),
                    "--hostname", f"agent-{i}", "--log-level", "warning", "--insecure", "--http-port", "0",
                    "--resources", REAL_AGENT_RESOURCES]))
            self._wait(lambda: self.state()["activated_slaves"] == self.agents, 60, "the agents did not register")
        else:
            self._start_simulator()
        print(f"{self.agents} {'real ' if self.real_agents else 'simulated '}agents registered in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)

    def _start_simulator(self) -> None:
        sim = self._spawn("sim", ["sim", "--master", self.address, "--agents", str(self.agents), "--insecure",
                                  *self.sim_args], stdout=subprocess.PIPE)
        self.others.append(sim)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:  # the ready line to us, everything else to the log
            assert sim.stdout is not None
            with self._log("sim") as log:
                for raw in sim.stdout:
                    line = raw.decode(errors="replace").strip()
                    if line.startswith("ready "):
                        lines.put(line)
                    log.write(raw)
                    log.flush()
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        timeout = 60 + self.agents / 50
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"`tepui sim` printed no ready line within {timeout:.0f} s; logs in {self.dir}") from None
        if line is None:
            status = sim.wait()
            with open(os.path.join(self.dir, "sim.log"), errors="replace") as log:
                tail = "".join(log.readlines()[-10:])
            raise RuntimeError(f"`tepui sim` exited (status {status}) before it was ready; logs in {self.dir}; "
                               f"the end of its log:\n{tail}")
        if line != f"ready agents={self.agents}":
            raise RuntimeError(f"`tepui sim` said {line!r}, expected 'ready agents={self.agents}'")
        registered = self.state()["activated_slaves"]
        if registered != self.agents:
            raise RuntimeError(f"the simulator is ready but the master counts {registered} agents, not {self.agents}")

    def _wait(self, ready: Any, timeout: float, problem: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master is not None and self.master.poll() is not None:
                raise RuntimeError(f"the master exited with {self.master.returncode}; logs in {self.dir}")
            try:
                if ready():
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{problem} within {timeout:.0f} s; logs in {self.dir}")

    def stop(self) -> None:
        for process in self.others:  # agents (or the simulator) first, then the master
            if process.poll() is None:
                # Real agents drain on SIGUSR1 (SIGTERM leaves their tasks for their next start).
                process.send_signal(signal.SIGUSR1 if self.real_agents else signal.SIGTERM)
        for process in self.others + ([self.master] if self.master else []):
            if process is self.master and process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_load(cluster: Cluster, run: int, tasks: int, timeout: float) -> dict[str, Any]:
    command = [sys.executable, LOAD_FRAMEWORK, "--master", cluster.address, "--insecure", "--tasks", str(tasks),
               "--duration", "0", "--timeout", str(timeout)]
    log_path = os.path.join(cluster.dir, f"load-{run}.log")  # its progress and failures
    with open(log_path, "w") as log:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, text=True, timeout=timeout + 60,
                              env=child_env())
    last = done.stdout.strip().splitlines()[-1:] or [""]
    try:
        result: dict[str, Any] = json.loads(last[0])
    except ValueError:
        raise RuntimeError(f"the load framework printed no result (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}\nits log: {log_path}") from None
    if done.returncode != 0:
        with open(log_path) as log:
            failures = [line.strip() for line in log if not line.startswith("[")][:10]
        raise RuntimeError(f"the load framework failed (exit {done.returncode}): {result}\n" + "\n".join(failures)
                           + f"\nits log: {log_path}")
    return result


def audit_counters(cluster: Cluster) -> str:
    """The master's anti-entropy counters (master/failures/task_audit.py): a lossless run that audits its
    agents is paying for false disagreements."""
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = ("task_digest_mismatches", "task_audits", "task_audits_retried")
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for key in wanted:
            if name.endswith(f"_{key}_total"):
                found[key] = int(float(value))
    return " ".join(f"{key}={found.get(key, 0)}" for key in wanted)


def measure(agents: int, args: argparse.Namespace) -> float:
    cluster = Cluster(agents, args.real_agents is not None, args.allocation_interval, args.sim_arg, args.master_arg)
    ok = False
    try:
        cluster.start()
        rates = []
        for run in range(1, args.runs + 1):
            result = run_load(cluster, run, args.tasks, args.timeout)
            rates.append(result["launches_per_second"])
            latency = result["latency_ms"]
            print(f"agents={agents} run {run}/{args.runs}: {result['tasks']} tasks launched in "
                  f"{result['launch_seconds']:.2f} s = {result['launches_per_second']:.0f} launches/s; all finished in "
                  f"{result['seconds']:.2f} s; ACCEPT->RUNNING p50 {latency['p50']:.0f} ms p90 {latency['p90']:.0f} ms "
                  f"p99 {latency['p99']:.0f} ms max {latency['max']:.0f} ms", flush=True)
        print(f"agents={agents} anti-entropy: {audit_counters(cluster)} (nothing is lost here: audits should be 0)",
              flush=True)
        ok = True
    finally:
        cluster.stop()
        if ok:
            shutil.rmtree(cluster.dir, ignore_errors=True)
        else:
            print(f"logs kept in {cluster.dir}", file=sys.stderr, flush=True)
    median = statistics.median(rates)
    print(f"agents={agents} tasks={args.tasks} runs={args.runs} launches_per_second={median:.1f} "
          f"(min {min(rates):.1f}, max {max(rates):.1f})", flush=True)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, action="append", help="simulated agents (repeat for several sizes)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per run (default 20000)")
    parser.add_argument("--runs", type=int, default=None, help="runs per size (default 3)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: 20 agents, 500 tasks, 1 run")
    parser.add_argument("--real-agents", type=int, default=None, metavar="N",
                        help=f"use N real `tepui agent`s ({REAL_AGENT_RESOURCES}) instead of the simulator")
    parser.add_argument("--allocation-interval", type=float, default=1.0,
                        help="the master's batch allocation interval (offers also follow every change at once)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one run may take")
    parser.add_argument("--sim-arg", action="append", default=[], help="extra argument for `tepui sim` (repeatable)")
    parser.add_argument("--master-arg", action="append", default=[],
                        help="extra argument for `tepui master` (repeatable), e.g. --master-arg=--max-agent-ping-timeouts=30")
    args = parser.parse_args()
    if args.smoke:
        sizes, args.tasks, args.runs = args.agents or [20], args.tasks or 500, args.runs or 1
    else:
        sizes, args.tasks, args.runs = args.agents or [1000], args.tasks or 20000, args.runs or 3
    if args.real_agents is not None:
        sizes = [args.real_agents]
    medians = {agents: measure(agents, args) for agents in sizes}
    headline = medians.get(1000, medians[sizes[-1]])
    print(f"launches_per_second={headline:.1f}")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as exc:
        print(f"launch_throughput: {exc}", file=sys.stderr)
        sys.exit(1)
