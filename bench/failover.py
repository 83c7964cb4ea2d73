"""Master failover: SIGKILL the leading master of three and measure how long until the cluster
works again (issue 19, item 7; target ≤ 3 s with 1,000 simulated agents; Mesos 4–8 s).

The bench starts everything itself, in a temporary directory, on free ports:

* its own 3-server ZooKeeper ensemble (tepui.cli.ensemble.LocalEnsemble, tickTime 200 ms) —
  never the shared test ensemble on 21811-21813;
* three ``tepui master --insecure --zk zk://…/<unique path> --zk-session-timeout T``;
* ``tepui sim --agents N --master zk://… --wave N`` (the agents follow the serving master and all
  re-register at once, as real agents do; the sim's default waves of 250 added ≈ 0.5 s at 1,000);
* bench/failover_framework.py, an SDK SchedulerDriver given ``zk://…`` that keeps ``--tasks``
  long tasks running on the simulated agents.

Then, ``--rounds`` times: SIGKILL the leader and measure, from the kill (``time.monotonic()``,
one clock for every process of the machine), until

* **expired**: the killed master's election node is gone — ZooKeeper expired its session, the
  floor of every failover (≈ T after the last contact, rounded up to a tick); its successor is
  elected by the same event (it watched that node);
* **serving**: the successor published its epoch — it claimed the epoch in the ZooKeeper
  registry, recovered agents and frameworks from it, and serves (followers move now);
* **agents99**: 99% of the agents have re-registered with it (its /health ``agents``; the sim's
  own ``reregistered`` line gives 100%);
* **resubscribed**: the framework re-subscribed (it prints when, on the same clock);
* **task**: a new task launched by the framework after re-subscribing reached TASK_RUNNING.

``failover`` is the last of these four per round. Between rounds the killed master is started
again (a standby, on new ports) and the bench waits until everything is steady. It also
watches for false failovers: a change of serving master the bench did not cause, a master
that exits by itself, ``event=leadership_lost`` / ``event=zookeeper_suspended`` in the masters'
logs — run it with ``--cpu-hog 2`` to see whether a session timeout holds on a busy machine.

    python bench/failover.py                          # 1,000 agents, 5 rounds, T = the default
    python bench/failover.py --session-timeout 1.5
    python bench/failover.py --cpu-hog 2              # both cores of a 2-core box busy
    python bench/failover.py --agents 100 --rounds 2  # a quick look

It prints a table per round with the median of each column, where the time goes (per phase),
and ends with one line, ``failover_seconds=<median of the per-round failover>``.
The session timeout is passed to the masters, whose sessions bound the failover; the sim and
the framework only follow (a ZooKeeper watch tells them), so theirs plays no part.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import free_port  # noqa: E402
from cpu_hog import CpuHog  # noqa: E402

from tepui.cli.ensemble import LocalEnsemble, port_free  # noqa: E402
from tepui.sdk.leadership import MASTERS, contenders, decode_info  # noqa: E402
from tepui.sdk.zookeeper import DEFAULT_SESSION_TIMEOUT, connect, parse_zk_url  # noqa: E402

FRAMEWORK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "failover_framework.py")
PHASES = ("expired", "serving", "agents99", "resubscribed", "task")
POLL = 0.01  # seconds between looks at ZooKeeper and at the new leader's /health
ROUND_TIMEOUT = 90.0


def say(line: str) -> None:
    print(line, flush=True)


def ensemble_base_port() -> int:
    """A base port whose client, quorum and election ports (base+0..2, +10..12, +20..22) are all
    free, away from the shared test ensemble (21811-21833) and the standalone one (21810)."""
    for base in range(24111, 40000, 50):
        if all(port_free(base + offset + i) for offset in (0, 10, 20) for i in range(3)):
            return base
    raise RuntimeError("no free port range for the bench's ZooKeeper ensemble")


@dataclass
class Master:
    name: str
    port: int
    http_port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def health(base: str, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:  # a standby without a leader answers 503
        try:
            return json.loads(exc.read())  # type: ignore[no-any-return]
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


class ZkWatch(threading.Thread):
    """Looks at ``<path>/masters`` every POLL seconds on its own ZooKeeper session and records
    when each election node disappears and every change of serving master (lowest node, epoch > 0)."""

    def __init__(self, zk_url: str) -> None:
        super().__init__(name="zk-watch", daemon=True)
        url = parse_zk_url(zk_url)
        self.client = connect(url, session_timeout=10.0)  # the observer must not lose its own session
        self.path = url.child(MASTERS)
        self.lock = threading.Lock()
        self.nodes: dict[str, int] = {}  # node → pid of the master it holds
        self.gone: dict[str, float] = {}  # node → when it was first seen missing
        self.changes: list[tuple[float, str, int]] = []  # (when, serving master id, epoch)
        self.serving: tuple[str, int, str] | None = None  # id, epoch, http
        self.stopping = False

    def run(self) -> None:
        from kazoo.exceptions import KazooException, NoNodeError

        while not self.stopping:
            try:
                self._look(NoNodeError)
            except KazooException:
                pass
            time.sleep(POLL)

    def _look(self, no_node: type[Exception]) -> None:
        try:
            names = contenders(self.client.get_children(self.path))
        except no_node:
            return
        now = time.monotonic()
        serving = None
        first = True
        for name in names:
            if name not in self.nodes:
                try:
                    data, _ = self.client.get(f"{self.path}/{name}")
                except no_node:
                    continue
                info = decode_info(data, name)
                with self.lock:
                    self.nodes[name] = info.pid if info else 0
            if first:
                first = False
                try:
                    data, _ = self.client.get(f"{self.path}/{name}")
                except no_node:
                    continue
                info = decode_info(data, name)
                if info is not None and info.epoch > 0:
                    serving = (info.id, info.epoch, info.http)
        with self.lock:
            for name in self.nodes:
                if name not in names and name not in self.gone:
                    self.gone[name] = now
            if serving is not None and (self.serving is None or serving[:2] != self.serving[:2]):
                self.serving = serving
                self.changes.append((now, serving[0], serving[1]))

    def node_of(self, pid: int) -> str | None:
        with self.lock:
            return next((name for name, p in self.nodes.items() if p == pid and name not in self.gone), None)

    def stop(self) -> None:
        self.stopping = True
        self.join(2)
        self.client.stop()
        self.client.close()


@dataclass
class Round:
    number: int
    killed: str
    times: dict[str, float] = field(default_factory=dict)  # phase → seconds after the kill
    sim_all: float | None = None  # the sim's "reregistered" line: every agent, seconds after the kill
    leader: str = ""

    @property
    def failover(self) -> float:
        return max(self.times[p] for p in ("agents99", "resubscribed", "task"))


class FailoverBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="tepui-failover-"))
        self.ensemble = LocalEnsemble(self.dir / "zk", base_port=ensemble_base_port())
        self.zk_url = self.ensemble.zk_url(f"/tepui-failover-{os.getpid()}-{int(time.time())}")
        self.masters: list[Master] = []
        self.processes: dict[str, subprocess.Popen[Any]] = {}
        self.lines: dict[str, queue.Queue[str]] = {"sim": queue.Queue(), "framework": queue.Queue()}
        self.watch: ZkWatch | None = None
        self.hog: CpuHog | None = None
        self.killed_by_us: set[int] = set()
        self.rounds: list[Round] = []
        self.started_masters = 0
        self.ok = False
        self.env = dict(os.environ, TEPUI_CONFIG=os.devnull, PYTHONUNBUFFERED="1")

    # --- processes --------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], reader: str | None = None) -> subprocess.Popen[Any]:
        log = open(self.dir / f"{name}.log", "ab")
        stdout: Any = subprocess.PIPE if reader else log
        process = subprocess.Popen(argv, stdout=stdout, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
                                   text=bool(reader))
        self.processes[name] = process
        if reader:
            threading.Thread(target=self._read, args=(process.stdout, reader, self.dir / f"{name}.out"),
                             daemon=True).start()
        return process

    def _read(self, stream: IO[str], into: str, copy: Path) -> None:
        with open(copy, "a") as out:
            for line in stream:
                out.write(line)
                out.flush()
                self.lines[into].put(line.rstrip("\n"))

    def start_master(self) -> Master:
        self.started_masters += 1
        name = f"master{self.started_masters}"
        port, http_port = free_port(), free_port()
        process = self.spawn(name, [
            sys.executable, "-m", "tepui.cli", "master", "--insecure", "--ip", "127.0.0.1", "--port", str(port),
            "--http-port", str(http_port), "--zk", self.zk_url, "--zk-session-timeout", f"{self.args.session_timeout:g}",
            "--log-level", "info"])
        master = Master(name, port, http_port, process, self.dir / f"{name}.log")
        self.masters.append(master)
        return master

    def answering(self, master: Master, timeout: float = 60.0) -> Master:
        """Wait until ``master`` answers HTTP; one that exited at once (a free port taken by
        another process meanwhile: free_port() cannot reserve it) is started again on others."""
        deadline = time.monotonic() + timeout
        while health(master.http) is None:
            if master.process.poll() is not None:
                say(f"  {master.name} exited with {master.process.returncode} at start (see {master.log}); "
                    "starting it again on other ports")
                self.masters.remove(master)
                del self.processes[master.name]
                master = self.start_master()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{master.name} did not answer within {timeout:.0f} s; logs in {self.dir}")
            time.sleep(0.05)
        return master

    def live_masters(self) -> list[Master]:
        return [m for m in self.masters if m.process.pid not in self.killed_by_us]

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.pid in self.killed_by_us:
                continue
            if process.poll() is not None:
                raise RuntimeError(f"{name} (pid {process.pid}) exited with {process.returncode}; logs in {self.dir}")

    def wait_for(self, what: str, done: Any, timeout: float) -> float:
        start = time.monotonic()
        while not done():
            self.check_alive()
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{what}: not done after {timeout:.0f} s; logs in {self.dir}")
            time.sleep(0.05)
        return time.monotonic() - start

    def wait_line(self, source: str, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines[source].get(timeout=0.2)
            except queue.Empty:
                line = None
            if line is not None:
                if line.startswith(prefix):
                    return line
                if not line.startswith(("probe_launched", "subscribed", "disconnected")):
                    say(f"  {source}: {line}")
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {prefix!r} line from {source} within {timeout:.0f} s; logs in {self.dir}")

    def leader(self) -> Master | None:
        for master in self.live_masters():
            answer = health(master.http)
            if answer is not None and answer.get("leading"):
                return master
        return None

    # --- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        args = self.args
        if args.cpu_hog:
            self.hog = CpuHog.start(args.cpu_hog, 3600)
            say(self.hog.describe())
        t0 = time.monotonic()
        self.ensemble.start()
        say(f"ZooKeeper ensemble {self.ensemble.connect_string} (tickTime {self.ensemble.tick_ms} ms) serving "
            f"after {time.monotonic() - t0:.1f} s; state and logs in {self.dir}")
        self.watch = ZkWatch(self.zk_url)
        self.watch.start()
        for master in [self.start_master() for _ in range(3)]:
            self.answering(master)
        took = self.wait_for("a master leads", lambda: self.leader() is not None, 60)
        say(f"3 masters (session timeout {args.session_timeout:g} s) on {self.zk_url}: "
            f"{self.leader().name} leads after {took:.1f} s")  # type: ignore[union-attr]
        sim = self.spawn("sim", [
            sys.executable, "-m", "tepui.cli", "sim", "--insecure", "--master", self.zk_url, "--agents",
            str(args.agents), "--wave", str(args.wave), "--stats-interval", "0", "--log-level", "warning"],
            reader="sim")
        line = self.wait_line("sim", "ready", 60 + args.agents / 20)
        say(f"sim pid {sim.pid}: {line}")
        framework = self.spawn("framework", [
            sys.executable, FRAMEWORK, "--master", self.zk_url, "--tasks", str(args.tasks), "--agents",
            str(args.agents)], reader="framework")
        line = self.wait_line("framework", "all_running", 120 + args.tasks / 50)
        say(f"framework pid {framework.pid}: {line.split(' t=')[0]}")
        time.sleep(2)  # the last acknowledgements settle

    # --- one round ----------------------------------------------------------------------------

    def kill_round(self, number: int) -> Round:
        assert self.watch is not None
        leader = self.leader()
        if leader is None:
            raise RuntimeError(f"no master leads before round {number}; logs in {self.dir}")
        node = self.watch.node_of(leader.process.pid)
        changes_before = len(self.watch.changes)
        for source in self.lines.values():  # only what comes after the kill counts
            while not source.empty():
                source.get_nowait()
        result = Round(number, leader.name)
        if self.args.profile and number == 1:
            self.profile([(m.name, m.process.pid) for m in self.live_masters() if m is not leader]
                         + [("sim", self.processes["sim"].pid)])
        killed_at = time.monotonic()
        self.killed_by_us.add(leader.process.pid)
        os.kill(leader.process.pid, signal.SIGKILL)
        leader.process.wait()
        target = math.ceil(0.99 * self.args.agents)
        new_http: str | None = None
        deadline = killed_at + ROUND_TIMEOUT
        while len(result.times) < len(PHASES) or result.sim_all is None:
            now = time.monotonic()
            if now > deadline:
                missing = [p for p in PHASES if p not in result.times]
                raise RuntimeError(f"round {number}: {missing or 'the sim line'} not seen within "
                                   f"{ROUND_TIMEOUT:.0f} s of the kill; logs in {self.dir}")
            with self.watch.lock:
                if "expired" not in result.times and node is not None and node in self.watch.gone:
                    result.times["expired"] = self.watch.gone[node] - killed_at
                if "serving" not in result.times and len(self.watch.changes) > changes_before:
                    when, leader_id, epoch = self.watch.changes[changes_before]
                    result.times["serving"] = when - killed_at
                    result.leader = f"{leader_id[:8]}/{epoch}"
                    new_http = self.watch.serving[2] if self.watch.serving else None
            if new_http is not None and "agents99" not in result.times:
                answer = health(new_http, timeout=2.0)
                if answer is not None and answer.get("leading") and answer.get("agents", 0) >= target:
                    result.times["agents99"] = time.monotonic() - killed_at
            for source in ("framework", "sim"):
                while True:
                    try:
                        line = self.lines[source].get_nowait()
                    except queue.Empty:
                        break
                    self._round_line(result, line, killed_at)
            self.check_alive()
            time.sleep(POLL)
        return result

    def profile(self, targets: list[tuple[str, int]]) -> None:
        """py-spy records the masters that may take over and the sim, from just before the kill,
        as collapsed stacks with idle time (``<dir>/<name>.pyspy``; the run keeps its directory):
        a reactor waiting on ZooKeeper is idle, and must show."""
        py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        for name, pid in targets:
            out = self.dir / f"{name}.pyspy"
            process = self.spawn(f"py-spy-{name}", [py_spy, "record", "--nonblocking", "--idle", "--format", "raw",
                                                    "--rate", "200", "-d", f"{self.args.profile:g}", "-o", str(out),
                                                    "--pid", str(pid)])
            self.killed_by_us.add(process.pid)  # it ends by itself
        self.args.keep = True
        time.sleep(1.0)  # py-spy attaches

    def _round_line(self, result: Round, line: str, killed_at: float) -> None:
        fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
        if line.startswith("resubscribed") and "resubscribed" not in result.times:
            result.times["resubscribed"] = float(fields["t"]) - killed_at
        elif line.startswith("probe_running") and "task" not in result.times:
            result.times["task"] = float(fields["t"]) - killed_at
        elif line.startswith("reregistered") and result.sim_all is None:
            # The sim counts from when it saw the new leader, which the watch saw at "serving".
            result.sim_all = result.times.get("serving", 0.0) + float(fields["seconds"])
        elif line.startswith(("probe_failed", "task_ended")):
            say(f"  framework: {line}")

    def steady(self) -> None:
        """Start the killed master again (a standby) and wait until it answers."""
        master = self.answering(self.start_master())
        self.wait_for(f"{master.name} answers as a standby", lambda: (health(master.http) or {}).get("leading") is False,
                      60)
        time.sleep(self.args.settle)

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> float:
        self.setup()
        for number in range(1, self.args.rounds + 1):
            result = self.kill_round(number)
            self.rounds.append(result)
            say(f"round {number}: killed {result.killed}; " + ", ".join(
                f"{p} {result.times[p]:.2f} s" for p in PHASES) + f"; all agents {result.sim_all:.2f} s; "
                f"failover {result.failover:.2f} s")
            self.steady()
        self.report()
        self.ok = self.false_failovers() == 0
        return statistics.median(r.failover for r in self.rounds)

    def report(self) -> None:
        columns = ["round", "killed", *PHASES, "all_agents", "failover"]
        rows = [[str(r.number), r.killed, *(f"{r.times[p]:.3f}" for p in PHASES), f"{r.sim_all:.3f}",
                 f"{r.failover:.3f}"] for r in self.rounds]
        medians = ["median", "", *(f"{statistics.median(r.times[p] for r in self.rounds):.3f}" for p in PHASES),
                   f"{statistics.median(r.sim_all or 0.0 for r in self.rounds):.3f}",
                   f"{statistics.median(r.failover for r in self.rounds):.3f}"]
        widths = [max(len(c), *(len(row[i]) for row in rows + [medians])) for i, c in enumerate(columns)]
        say("")
        say(f"seconds after SIGKILL of the leading master ({self.args.agents} agents, {self.args.tasks} tasks, "
            f"session timeout {self.args.session_timeout:g} s, tickTime {self.ensemble.tick_ms} ms"
            f"{', CPU hog ' + str(self.args.cpu_hog) if self.args.cpu_hog else ''}):")
        for row in [columns, *rows, medians]:
            say("  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)))

        def med(values: list[float]) -> float:
            return statistics.median(values)

        t = self.rounds
        say("where the time goes (medians):")
        say(f"  session expiry   kill → node gone          {med([r.times['expired'] for r in t]):.3f} s "
            f"(session timeout {self.args.session_timeout:g} s, rounded up to a {self.ensemble.tick_ms} ms tick)")
        say(f"  take-over        node gone → serving       "
            f"{med([r.times['serving'] - r.times['expired'] for r in t]):.3f} s "
            f"(elected, epoch claimed, registry recovered, epoch published)")
        say(f"  re-registration  serving → 99% of agents   "
            f"{med([r.times['agents99'] - r.times['serving'] for r in t]):.3f} s "
            f"(all: {med([(r.sim_all or 0.0) - r.times['serving'] for r in t]):.3f} s)")
        say(f"  re-subscription  serving → resubscribed    "
            f"{med([r.times['resubscribed'] - r.times['serving'] for r in t]):.3f} s")
        say(f"  first launch     resubscribed → RUNNING    "
            f"{med([r.times['task'] - r.times['resubscribed'] for r in t]):.3f} s")
        recoveries = self.recovery_times()
        if recoveries:
            say(f"  (the masters' own take-over times, elected → leading, from their logs: "
                f"{', '.join(f'{x:.3f}' for x in recoveries)} s)")

    def recovery_times(self) -> list[float]:
        took = []
        for master in self.masters:
            try:
                text = master.log.read_text(errors="replace")
            except OSError:
                continue
            took += [float(x) for x in re.findall(r"event=leading .*?took_s=([0-9.]+)", text)]
        return took[1:]  # the first is the initial election

    def false_failovers(self) -> int:
        """Leadership changes the bench did not cause (each kill causes exactly one)."""
        assert self.watch is not None
        changes = len(self.watch.changes) - 1 - len(self.rounds)  # minus the first election
        exited = [m.name for m in self.masters
                  if m.process.pid not in self.killed_by_us and m.process.poll() is not None]
        lost = suspended = 0
        for master in self.masters:
            try:
                text = master.log.read_text(errors="replace")
            except OSError:
                continue
            lost += text.count("event=leadership_lost")
            suspended += text.count("event=zookeeper_suspended")
        say(f"false failovers: {changes} leadership changes not caused by a kill; masters that exited by "
            f"themselves: {exited or 'none'}; event=leadership_lost in logs: {lost}; "
            f"event=zookeeper_suspended in logs: {suspended}")
        return changes + len(exited) + lost

    # --- teardown -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Everything this bench started, by pid: the sim and the framework first, then the
        masters (and py-spy), the watch, the ensemble, the hog."""
        order = ["sim", "framework"] + [name for name in self.processes if name not in ("sim", "framework")]
        for name in order:
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name in order:
            process = self.processes.get(name)
            if process is None:
                continue
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.watch is not None:
            self.watch.stop()
        try:
            self.ensemble.stop()
        except Exception as exc:  # noqa: BLE001 - the rest must still be stopped
            say(f"stopping the ensemble: {exc!r}")
        if self.hog is not None:
            say(self.hog.stop())
        if self.ok and not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            say(f"logs kept in {self.dir}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=None, help="long tasks the framework keeps running "
                        "(default: one per agent)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--session-timeout", type=float, default=DEFAULT_SESSION_TIMEOUT,
                        help=f"the masters' ZooKeeper session timeout (default {DEFAULT_SESSION_TIMEOUT:g} s)")
    parser.add_argument("--wave", type=int, default=None,
                        help="the sim's registration wave (default: every agent at once, as real agents re-register "
                        "the moment ZooKeeper names a new master; the sim's own default is 250)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of quiet between rounds")
    parser.add_argument("--cpu-hog", type=int, default=0, metavar="K",
                        help="K busy-looping processes for the whole run (bench/cpu_hog.py): false failovers?")
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                        help="py-spy the standby masters and the sim for SECONDS from just before the first kill")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) at the end")
    args = parser.parse_args()
    if args.tasks is None:
        args.tasks = args.agents
    if args.wave is None:
        args.wave = args.agents
    bench = FailoverBench(args)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        value = bench.run()
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except RuntimeError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        bench.stop()
    say(f"failover_seconds={value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
