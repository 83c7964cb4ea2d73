"""Scale: one master, 10,000 simulated agents, 100,000 long-running tasks.

Starts a real master (``--insecure``, ``--log-level warning``), ``tepui sim --agents N`` and the
scale framework (``bench/scale_framework.py``), which launches ``--tasks`` tasks of one hour
(cpus 0.01, mem 8 each, at most ceil(tasks / agents) per offer so they spread over the agents)
as fast as offers allow. Once every task runs it reports:

* the RSS of the master, the simulator and the framework (``VmRSS`` in /proc/<pid>/status);
* ``/state`` and ``/state-summary``: the median of 5 GETs each and the size of the document;
* ``/metrics``: its time and which allocation figures it exposes;
* the master's CPU use while nothing happens but pings and batch allocations (10 s window);
* an allocation cycle over every agent as the framework sees it: REVIVE, then the time to the
  first OFFERS (the master computes the whole cycle before sending any offer) and to the last.

It ends with one line, ``master_rss_mib=<n>`` (the master's RSS with every task running).
The master runs with Mesos's ping interval (15 s; Tepui's default is 2 s) and without the
per-framework call rate limit (one framework sends 10,000 ACCEPTs and 100,000 ACKNOWLEDGEs).

    python bench/scale.py                      # 10,000 agents, 100,000 tasks
    python bench/scale.py --smoke              # 200 agents, 2,000 tasks
    python bench/scale.py --agents 2000 --tasks 20000
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import free_port  # noqa: E402

FRAMEWORK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale_framework.py")
TASK_SECONDS = 3600
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    return status_kib(pid, "VmRSS") / 1024


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime, all threads


def say(line: str) -> None:
    print(line, flush=True)


class Bench:
    def __init__(self, agents: int, tasks: int, quiet_window: float = 10.0, zmq_heartbeat: float = 5.0) -> None:
        self.agents, self.tasks, self.quiet_window = agents, tasks, quiet_window
        self.zmq_heartbeat = zmq_heartbeat
        self.port, self.http_port = free_port(), free_port()
        self.dir = tempfile.mkdtemp(prefix="tepui-scale-")
        self.processes: dict[str, subprocess.Popen[Any]] = {}
        self.lines: queue.Queue[str] = queue.Queue()
        self.ok = False

    # --- processes --------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")
        kwargs.setdefault("stdout", log)
        process = subprocess.Popen(args, stderr=log, stdin=kwargs.pop("stdin", subprocess.DEVNULL), **kwargs)
        self.processes[name] = process
        return process

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; logs in {self.dir}")

    def get(self, path: str, timeout: float = 120.0) -> tuple[float, bytes]:
        start = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout) as response:
            body = response.read()
        return time.perf_counter() - start, body

    def wait_for(self, what: str, done: Any, timeout: float, report: Any = None, every: float = 5.0) -> float:
        start = time.monotonic()
        last_report = start
        while not done():
            self.check_alive()
            now = time.monotonic()
            if now - start > timeout:
                raise RuntimeError(f"{what}: not done after {timeout:.0f} s; logs in {self.dir}")
            if report is not None and now - last_report >= every:
                last_report = now
                say(f"  {what}: {report()} ({now - start:.0f} s)")
            time.sleep(0.2)
        return time.monotonic() - start

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> float:
        tepui = [sys.executable, "-m", "tepui.cli"]
        env = dict(os.environ, TEPUI_CONFIG=os.devnull, PYTHONUNBUFFERED="1")
        master = self.spawn("master", tepui + [
            "master", "--insecure", "--ip", "127.0.0.1", "--port", str(self.port), "--http-port", str(self.http_port),
            "--log-level", "warning", "--agent-ping-interval", "15", "--framework-rate-limit", "unlimited",
            "--zmq-heartbeat-interval", f"{self.zmq_heartbeat:g}"], env=env)
        self.wait_for("master", lambda: self._health() is not None, 30)
        say(f"master pid {master.pid} on 127.0.0.1:{self.port} (http {self.http_port}); logs in {self.dir}")

        ready_file = os.path.join(self.dir, "sim.ready")
        sim = self.spawn("sim", tepui + [
            "sim", "--insecure", "--master", f"127.0.0.1:{self.port}", "--agents", str(self.agents),
            "--ready-file", ready_file, "--stats-interval", "10", "--log-level", "warning"], env=env)
        took = self.wait_for("agents registering", lambda: os.path.exists(ready_file), 60 + self.agents / 50,
                             lambda: f"{(self._health() or {}).get('agents', '?')}/{self.agents} agents")
        say(f"{self.agents} simulated agents registered in {took:.1f} s ({self.agents / took:.0f}/s); "
            f"sim pid {sim.pid}, RSS {rss_mib(sim.pid):.0f} MiB; master RSS {rss_mib(master.pid):.0f} MiB")

        framework = self.spawn("framework", [
            sys.executable, FRAMEWORK, "--master", f"127.0.0.1:{self.port}", "--tasks", str(self.tasks),
            "--duration", str(TASK_SECONDS), "--agents", str(self.agents), "--until", "running"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, args=(framework.stdout,), daemon=True).start()
        progress = {"line": "starting"}
        running = self._wait_line("all_running", 120 + self.tasks / 100, progress)
        say(f"{self.tasks} tasks running: {running}")
        time.sleep(3)  # the last acknowledgements settle

        master_rss = rss_mib(master.pid)
        say(f"RSS: master {master_rss:.0f} MiB (peak {status_kib(master.pid, 'VmHWM') / 1024:.0f}), "
            f"sim {rss_mib(sim.pid):.0f} MiB, framework {rss_mib(framework.pid):.0f} MiB")
        self._measure_http()
        before, start = cpu_seconds(master.pid), time.monotonic()
        time.sleep(self.quiet_window)
        idle = (cpu_seconds(master.pid) - before) / (time.monotonic() - start)
        say(f"master CPU with every task running and nothing to do but pings and batch allocations: "
            f"{100 * idle:.0f}% of a core (over {self.quiet_window:g} s)")

        assert framework.stdin is not None
        framework.stdin.write("probe\n")
        framework.stdin.flush()
        probe = self._wait_line("probe", 300, progress)
        fields = dict(part.split("=", 1) for part in probe.split()[1:])
        say(f"allocation cycle over {self.agents} agents (REVIVE → first OFFERS, seen by the framework): "
            f"{fields['first_offer_seconds']} s; last offer at {fields['last_offer_seconds']} s; "
            f"{fields['offers']} offers")
        say(f"master RSS after the probe: {rss_mib(master.pid):.0f} MiB (peak "
            f"{status_kib(master.pid, 'VmHWM') / 1024:.0f}); sim {rss_mib(sim.pid):.0f} MiB")
        self.ok = True
        return master_rss

    def _health(self) -> dict[str, Any] | None:
        import json

        try:
            return json.loads(self.get("/health", timeout=5)[1])  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def _measure_http(self) -> None:
        for path in ("/state", "/state-summary"):
            times, size = [], 0
            for _ in range(5):
                took, body = self.get(path)
                times.append(took)
                size = len(body)
            say(f"{path}: median {statistics.median(times):.3f} s over 5 GETs (min {min(times):.3f}, "
                f"max {max(times):.3f}), {size / 1e6:.1f} MB")
        took, body = self.get("/metrics")
        values = {line.split()[0]: line.split()[1] for line in body.decode().splitlines()
                  if line and not line.startswith("#") and len(line.split()) == 2}
        allocation = {n: float(v) for n, v in values.items() if "allocation_" in n and n.endswith("_seconds")}
        say(f"/metrics: {took:.3f} s, {len(values)} series")
        if allocation:
            say("allocation cycle (the master's own timing, allocator + offers sent): " + ", ".join(
                f"{n.removeprefix('tepui_master_allocation_')} {v * 1000:.1f} ms" for n, v in sorted(allocation.items())))
        else:
            say("allocation cycle: the master exposes no timing (tepui_master_allocation_*_seconds missing)")

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def _wait_line(self, prefix: str, timeout: float, progress: dict[str, str]) -> str:
        start = time.monotonic()
        last_report = start
        while True:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                line = None
            now = time.monotonic()
            if line is not None:
                if line.startswith(prefix):
                    return line
                if line.startswith("framework:"):
                    progress["line"] = line
                elif line:
                    say(f"  {line}")
            if now - last_report >= 5:
                last_report = now
                say(f"  {progress['line']}")
            self.check_alive()
            if now - start > timeout:
                raise RuntimeError(f"no {prefix!r} line from the framework within {timeout:.0f} s; logs in {self.dir}")

    def stop(self) -> None:
        """The sim first (its agents just go), then the framework and the master."""
        for name in ("sim", "framework", "master"):
            process = self.processes.get(name)
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.ok:
            shutil.rmtree(self.dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--zmq-heartbeat-interval", type=float, default=60.0,
                        help="the master's ZeroMQ heartbeat interval (its default, 5 s, saturates libzmq's I/O "
                        "thread at 10,000 agents: see docs/performance.md); 0 turns them off")
    parser.add_argument("--smoke", action="store_true", help="200 agents, 2,000 tasks")
    args = parser.parse_args()
    if args.smoke:
        args.agents, args.tasks = 200, 2_000
    bench = Bench(args.agents, args.tasks, quiet_window=3.0 if args.smoke else 10.0,
                  zmq_heartbeat=args.zmq_heartbeat_interval)
    started = time.monotonic()
    say(f"scale: {args.agents} simulated agents, {args.tasks} tasks of {TASK_SECONDS} s; master with "
        f"--agent-ping-interval 15 (Mesos' default), --zmq-heartbeat-interval {args.zmq_heartbeat_interval:g}, "
        "--framework-rate-limit unlimited")
    try:
        master_rss = bench.run()
    except (RuntimeError, OSError) as exc:
        print(f"scale: failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        bench.stop()
    say(f"scale: done in {time.monotonic() - started:.0f} s")
    say(f"master_rss_mib={master_rss:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
