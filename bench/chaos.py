"""Chaos benchmark (issue #5): does every task stay accounted for while processes die, messages
are lost and duplicated, and agents are cut off?

    python bench/chaos.py --tasks 2000 --duration 120      # the issue's run (~4 min)
    python bench/chaos.py --smoke                          # 60 tasks, 20 s, 3 faults (~30 s)
    python bench/chaos.py --masters 3 [--smoke]            # three HA masters and the HA faults (root)

What runs (all real processes, on free ports, under one temp dir):

* a master with ``--work-dir`` (its registry survives SIGKILL) and short failure detection:
  ``--agent-ping-interval 0.5 --max-agent-ping-timeouts 6`` (silent 3 s → unreachable),
  ``--heartbeat-interval 1`` (the SDK driver re-subscribes when its connection comes back, or
  after 5 s without a heartbeat),
  ``--offer-timeout 10``, ``--agent-reregister-timeout 30``;
* ``--agents`` agents (default 3), each with its own ``--work-dir`` (restarted on it, they
  re-adopt their tasks from their checkpoint), default isolation, ``--update-retry 1``,
  ``--containerizers mesos``, ``--resources cpus:8;mem:4096`` (``cpus:4;mem:2048`` in smoke);
* one ``bench/chaos_proxy.py`` per link (each agent's, and the framework's): the peer connects
  to the proxy, which forwards to the master through a DEALER with the peer's own routing id,
  dropping ``--fault-rate`` (5%) of the messages and duplicating another ``--duplicate-rate``
  (default: the same 5%) of them, in each direction, until the chaos ends; a link can be
  partitioned (everything dropped, TCP connections kept up); while the master is down the
  proxy stops listening, so peers see their connection drop and come back as on a direct link;
* ``bench/chaos_framework.py``, an SDK framework (PARTITION_AWARE, failover timeout 1 h) that
  releases ``--tasks`` work items evenly over the first 60% of ``--duration`` (50% in smoke);
  15% of them are long (``sleep`` 4–20 s; in smoke 30%, 4–8 s), the rest short (``sleep``
  0.1–0.9 s). Its rules (relaunch under a new id, reconcile, launch timeout) are in its
  docstring.

Chaos, from ``--seed``: after 6 s (3 s in smoke) and then every 5–10 s (4–5 s in smoke) until
``--duration``, one action on a component not already under a fault:

====================  =========================================================================
agent SIGKILL         the agent process is SIGKILLed; restarted on its work dir after 1–5 s
agent SIGSTOP         the agent is frozen (socket up, process dead) for 4–8 s, then SIGCONT
agent partition       its proxy drops everything both ways for 4–10 s
master SIGKILL        the master is SIGKILLed; restarted on its work dir after 1–3 s
framework partition   the framework's proxy drops everything both ways for 2–6 s
====================  =========================================================================

The full run cycles through shuffled rounds of these (agents weighted more); smoke does one
agent partition, one master SIGKILL and one agent SIGKILL. Each action is printed as it
happens. At ``--duration`` every fault is healed (links restored, agents continued or
restarted, the master restarted, and the proxies stop dropping and duplicating); the framework
is told (SIGUSR1) to wait until every item has finished and every task id has a terminal state
(at most ``--settle`` seconds: status updates still queued behind an agent's retry backoff,
doubling from 1 s, come in meanwhile), then to reconcile, record its final view and tear down.

How it counts (all from the framework's durable record and the tasks' own start marks):

* **launched**: task ids the framework sent in an ACCEPT. **started**: task ids whose command
  ran (each start appends the id to a file the bench owns, mode 1777 since tasks run as
  nobody). **launched twice**: task ids that started more than once.
* An attempt's **final state**: TASK_FINISHED if one was ever received for it, else the last
  state received (after the final reconciliation), else none.
* A work item is **accounted for** when one of its attempts finished and the cluster told the
  fate of every one of its attempts: a terminal final state, or TASK_UNKNOWN (the master's
  reconciliation answer for a task it has no record of) for an attempt that indeed never
  started (its ACCEPT or RUN_TASK was lost). Attempts the framework replaced after a TASK_LOST,
  TASK_DROPPED, TASK_GONE, TASK_UNKNOWN (never heard of by an agent), TASK_FAILED for an
  agent-side reason, or TASK_KILLED by its own launch timeout are accounted for by that
  terminal report plus the item's later attempt. **lost** = work items not accounted for:
  never finished, or with an attempt whose fate the cluster never told (no state, or
  non-terminal: STAGING, RUNNING, UNREACHABLE, or UNKNOWN for a task that did start).
* **finished twice**: work items with two attempts that both finished — the cluster reported
  an attempt lost/dropped/gone/unknown, the framework relaunched it, yet it ran to the end: the
  work ran twice.
* ``lost_or_duplicated = lost + launched twice + finished twice``; it must be 0 (exit code 0
  iff it is).
* **detection time**: from an agent's partition, SIGSTOP or SIGKILL to the first
  TASK_UNREACHABLE (reason AGENT_DISCONNECTED: the master's own detection, not a
  reconciliation answer) the framework receives for a task on that agent; none if the agent had
  no task, or came back before the 3 s limit; not measured if the agent was not registered
  when the fault began (still away after an earlier one). Also shown: master SIGKILL → framework
  re-subscribed, and → all agents registered again.

Highly available masters (issue 19): ``--masters 3`` (root; ``--smoke``: 60 tasks, 30 s, the
five HA faults below one after another, ~50–60 s in all, run by tests/bench/test_chaos_ha_smoke.py)
runs the same chaos against three ``tepui master --zk`` contenders on a 3-server ZooKeeper
ensemble of the bench's own (``tepui.cli.ensemble.LocalEnsemble`` on a free port range under
the run's dir, stopped at the end; never the shared test ensemble). Each master runs in its own
network namespace, reached through a veth; ZooKeeper serves on an address in 10.200.0.0/16 that
every namespace reaches (bench/chaos_netns.py). The bench follows the serving master with
``tepui.sdk.leadership.LeaderFollower`` and points every proxy at each new leader (the proxies
run with ``--follow``: peers see their connection drop when the next leader is named and
re-register / re-subscribe, still through 5% drops and duplicates). A master that exits is
restarted as a standby 1–3 s later (``tepui up --ha`` supervises the same way). The framework
runs as two instances, one leading (bench/chaos_framework.py: the elected one replays the shared
record and re-subscribes with the same framework id). The faults, in addition to agent SIGKILL,
SIGSTOP and partition and the framework's link partition (``master_kill`` becomes the leader's):

=======================  ======================================================================
``master_kill``          the leading master SIGKILLed (twice a round); restarted as a standby
                         after 1–3 s
``master_stop``          the leader SIGSTOPped until another master leads (+1 s), then SIGCONT:
                         it must exit non-zero (fenced) within 15 s; what it logged is shown
``master_partition``     the leader cut from ZooKeeper for 4–10 s (``iptables -A OUTPUT -d
                         <ZooKeeper> -j DROP`` in its namespace; its agents and framework still
                         reach it): it must pause, then exit; in the full run every other cut
                         lasts 1.0–1.6 s, within its session: it must pause at most and resume
``zk_kill``              one ZooKeeper server SIGKILLed (the quorum leader every other time),
                         restarted after 2–5 s; masters should keep their leader
``framework_kill``       the framework's leading instance SIGKILLed, restarted 1–3 s later as a
                         standby; the other takes over under the same framework id
=======================  ======================================================================

Measured per HA fault and printed in an HA section after the summary: → new leader (the
follower's notice), → framework re-subscribed, → all agents registered with the new leader; the
fenced leader's exit and its last words; ZooKeeper kills: whether the masters kept their
leader; framework kills: → standby leading (record replayed) and → re-subscribed with the same
id; and how many messages of deposed masters reached peers and were dropped as stale epochs.
Measured (full seeds 1–2 and smoke seeds 2–4, 2-core machine, session timeout 2 s, tick 200 ms):
leader SIGKILL → new leader 1.73–2.24 s, → framework re-subscribed 1.85–2.64 s, → all agents
registered 1.93–3.71 s; SIGSTOP → new leader 1.73–2.37 s, the resumed leader exits 1 within
0.10–0.12 s; cut from ZooKeeper → new leader 1.71–2.08 s, the cut leader exits 1 2.57–2.94 s
after the cut (a 1.0–1.6 s cut: paused, resumed leading); ZooKeeper kills (quorum leader or follower): no master failover, the server
back 0.9–1.5 s after its restart; framework leader kill → re-subscribed under the same id
1.65–2.05 s. Full size: 2 min 20 s, ``lost_or_duplicated=0``; smoke: 45–60 s, 0 in every run.
A master not fenced, or a namespace,
veth or route left behind, makes the exit code 1 (the last line stays ``lost_or_duplicated=``).
Namespaces, veths, iptables rules and the guard route are removed at the end, also on an error
or Ctrl-C.

Logs, the framework's record, the proxies' fault logs (every dropped or duplicated message, by
type and task id) stay in the run's directory when the result is not 0 (or with ``--keep``).
The last line is ``lost_or_duplicated=<n>``.
"""

from __future__ import annotations

import argparse
import collections
import heapq
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from chaos_ha import HaCluster  # noqa: E402  (--masters N)
from chaos_ha_faults import HA_KINDS, HaFaults  # noqa: E402
from chaos_processes import Proc, Proxy, free_ports, stop_all  # noqa: E402
from chaos_report import FAULT_KINDS, MAX_PING_TIMEOUTS, PING_INTERVAL, Tally, analyse  # noqa: E402  (the accounting)
from chaos_seeds import hog_seconds, run_seeds  # noqa: E402
from cpu_hog import CpuHog  # noqa: E402
FRAMEWORK = HERE / "chaos_framework.py"
PROXY = HERE / "chaos_proxy.py"

HEARTBEAT_INTERVAL = 1.0
HA_FAULT_KINDS = ("agent_kill", "agent_stop", "agent_partition", "framework_partition") + HA_KINDS


@dataclass
class Fault:
    kind: str
    target: str
    start: float
    end: float | None = None
    agent_index: int | None = None
    registered_at_start: bool | None = None  # was the agent registered when the fault began (None: unknown)


@dataclass
class Run:
    args: argparse.Namespace
    root: Path
    t0: float = 0.0
    http_port: int = 0
    master: Proc | None = None
    agents: list[Proc] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)  # agents' first, the framework's last
    framework: Proc | None = None
    agent_ids: dict[int, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)  # components under a fault right now
    master_restarts: list[dict[str, Any]] = field(default_factory=list)
    records_read: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    _partial: str = ""
    ha: HaCluster | None = None  # --masters N: the masters, their ensemble, the leader
    ha_faults: HaFaults | None = None
    frameworks: list[Proc] = field(default_factory=list)  # --masters N: the framework's instances

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    def agent_registered(self, index: int) -> bool | None:
        """Whether the master lists this agent as registered now (None: the master does not answer)."""
        state = self.state()
        if state is None:
            return None
        return any(s.get("hostname") == f"agent-{index}" for s in state.get("slaves", []))

    def state(self) -> dict[str, Any] | None:
        base = f"http://127.0.0.1:{self.http_port}" if self.ha is None else self.ha.leader_http()
        if base is None:
            return None
        try:
            with urllib.request.urlopen(f"{base}/state", timeout=1.0) as response:
                return json.load(response)  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    # --- the framework's record --------------------------------------------------------------

    def read_records(self) -> None:
        path = self.root / "framework.jsonl"
        if not path.exists():
            return
        with open(path) as f:
            f.seek(self.records_read)
            data = f.read()
            self.records_read = f.tell()
        data = self._partial + data
        lines = data.split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    if self.ha is None:
                        raise
                    # --masters N: a line torn by a SIGKILLed framework leader (never acted on)


def build(run: Run) -> None:
    args, root = run.args, run.root
    os.environ["TEPUI_CONFIG"] = os.devnull  # an --insecure cluster: no client keys (tepui up's) for its framework
    port, run.http_port, *proxy_ports = free_ports(2 + args.agents + 1)
    master_addr = f"127.0.0.1:{port}"
    py = sys.executable
    if run.ha is not None:
        master_addr = run.ha.leader_address()  # the proxies follow the leader from there
    else:
        run.master = Proc("master", [
            py, "-m", "tepui.cli", "master", "--ip", "127.0.0.1", "--port", str(port),
            "--http-port", str(run.http_port), "--work-dir", str(root / "master"), *master_args(),
            "--insecure"], root / "master.log")  # plain ZeroMQ: the fault proxies read and drop messages by type
    links = [f"agent-{i}" for i in range(args.agents)] + ["framework"]
    for i, (name, listen) in enumerate(zip(links, proxy_ports)):
        run.proxies.append(Proxy(f"proxy-{name}", [
            py, str(PROXY), "--listen", str(listen), "--master", master_addr, "--name", name,
            "--seed", str(args.seed * 1000 + i), "--fault-rate", str(args.fault_rate),
            "--duplicate-rate", str(args.duplicate_rate),
            "--fault-log", str(root / "faults.jsonl")] + (["--follow"] if run.ha is not None else []),
            root / f"proxy-{name}.log", stdin_pipe=True))
    resources = "cpus:4;mem:2048" if args.smoke else "cpus:8;mem:4096"
    for i in range(args.agents):
        run.agents.append(Proc(f"agent-{i}", [
            py, "-m", "tepui.cli", "agent", "--master", f"127.0.0.1:{proxy_ports[i]}",
            "--work-dir", str(root / f"agent-{i}"), "--hostname", f"agent-{i}", "--http-port", "0",
            "--resources", resources, "--containerizers", "mesos", "--update-retry", "1",
            "--log-level", "info", "--insecure"], root / f"agent-{i}.log"))
    launch_window = args.duration * (0.5 if args.smoke else 0.6)
    framework_argv = [
        py, str(FRAMEWORK), "--master", f"127.0.0.1:{proxy_ports[-1]}", "--out", str(root / "framework.jsonl"),
        "--starts", str(root / "starts" / "starts.log"), "--tasks", str(args.tasks),
        "--launch-window", str(launch_window), "--long-share", "0.3" if args.smoke else "0.15",
        "--long-max", str(8.0 if args.smoke else min(20.0, args.duration / 6)),
        "--settle", str(args.settle), "--seed", str(args.seed)]
    if run.ha is None:
        run.framework = Proc("framework", framework_argv, root / "framework.log")
    else:  # two instances, one leading (chaos_framework.py's docstring)
        run.frameworks = [Proc(f"framework-{k}", framework_argv + ["--zk", run.ha.zk_url, "--instance", f"chaos-{k}"],
                               root / f"framework-{k}.log") for k in range(2)]
        run.framework = run.frameworks[0]


def master_args() -> list[str]:
    """Every master's flags but where it listens and keeps its registry."""
    return ["--agent-ping-interval", str(PING_INTERVAL), "--max-agent-ping-timeouts", str(MAX_PING_TIMEOUTS),
            "--heartbeat-interval", str(HEARTBEAT_INTERVAL), "--offer-timeout", "10",
            "--agent-reregister-timeout", "30", "--log-level", "info"]


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, run: Run) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}; logs in {run.root}")


def registered_agents(run: Run) -> int:
    state = run.state()
    return int(state.get("activated_slaves", 0)) if state else 0


# --- chaos actions ----------------------------------------------------------------------------


class Chaos:
    """A timeline of actions (a heap of (time, seq, callable)); faults schedule their own end."""

    KINDS_FULL = ("agent_kill", "agent_kill", "agent_stop", "agent_partition", "agent_partition", "master_kill",
                  "framework_partition")
    KINDS_SMOKE = ("agent_partition", "master_kill", "agent_kill")
    # --masters N: the leader SIGKILLed (twice a round), SIGSTOPped, cut from ZooKeeper; a ZooKeeper
    # server killed; the framework's leading instance killed; and the faults above but master_kill.
    KINDS_HA_FULL = ("agent_kill", "agent_stop", "agent_partition", "framework_partition", "master_kill", "master_kill",
                     "master_stop", "master_partition", "zk_kill", "framework_kill")
    KINDS_HA_SMOKE = ("master_kill", "zk_kill", "master_stop", "framework_kill", "master_partition")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.rng = random.Random(run.args.seed)
        self.timeline: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.kinds: list[str] = []
        self.acted = 0
        ha = run.ha is not None
        self.kinds_full = self.KINDS_HA_FULL if ha else self.KINDS_FULL
        self.kinds_smoke = self.KINDS_HA_SMOKE if ha else self.KINDS_SMOKE

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.timeline, (when, self.seq, action))

    def due(self, now: float) -> None:
        while self.timeline and self.timeline[0][0] <= now:
            _, _, action = heapq.heappop(self.timeline)
            action()

    def next_kind(self) -> str:
        if not self.kinds:
            allowed = self.run.args.faults
            if self.run.args.smoke:
                self.kinds = [k for k in self.kinds_smoke if k in allowed]
            else:
                self.kinds = [k for k in self.kinds_full if k in allowed]
                self.rng.shuffle(self.kinds)
        return self.kinds.pop(0) if self.kinds else ""

    def schedule_next(self, now: float) -> None:
        smoke = self.run.args.smoke
        gap = self.rng.uniform(4.0, 5.0) if smoke else self.rng.uniform(5.0, 10.0)
        when = now + gap
        if when < self.run.t0 + self.run.args.duration - (4.0 if smoke else 2.0):
            self.at(when, self.act)

    def act(self) -> None:
        now = time.monotonic()
        if self.run.args.smoke and not self.kinds and self.acted >= len(self.kinds_smoke):
            return
        kind = self.next_kind()
        if kind and self.run.ha_faults is not None and kind in HA_KINDS:
            if not getattr(self.run.ha_faults, kind)(now):
                # Its target is busy (an earlier fault) or no master leads: again in a second.
                self.kinds.insert(0, kind)
                if now < self.run.t0 + self.run.args.duration - 2.0:
                    self.at(now + 1.0, self.act)
                return
            kind = ""
        self.acted += 1
        if kind:
            getattr(self, kind)(now)
        self.schedule_next(now)

    def note(self, kind: str, target: str, now: float) -> Fault:
        """An HA fault, for the summary's list of chaos actions (chaos_ha.HaFaults)."""
        fault = Fault(kind, target, now)
        self.run.faults.append(fault)
        return fault

    def _free_agent(self) -> int | None:
        free = [i for i in range(len(self.run.agents)) if f"agent-{i}" not in self.run.busy]
        return self.rng.choice(free) if free else None

    def agent_kill(self, now: float) -> None:
        i = self._free_agent()
        if i is None:
            return
        run, agent, down = self.run, self.run.agents[i], round(self.rng.uniform(1.0, 5.0), 1)
        run.busy.add(agent.name)
        registered = run.agent_registered(i)
        pid = agent.pid
        agent.kill()
        fault = Fault("agent SIGKILL", agent.name, now, agent_index=i, registered_at_start=registered)
        run.faults.append(fault)
        run.say(f"chaos: SIGKILL {agent.name} (pid {pid}); restart on its work dir in {down} s")

        def restart() -> None:
            agent.start()
            fault.end = time.monotonic()
            run.busy.discard(agent.name)
            run.say(f"chaos: restarted {agent.name} (pid {agent.pid}) after {fault.end - fault.start:.1f} s down")
        self.at(now + down, restart)

    def agent_stop(self, now: float) -> None:
        i = self._free_agent()
        if i is None:
            return
        run, agent, frozen = self.run, self.run.agents[i], round(self.rng.uniform(4.0, 8.0), 1)
        run.busy.add(agent.name)
        registered = run.agent_registered(i)
        agent.signal(signal.SIGSTOP)
        fault = Fault("agent SIGSTOP", agent.name, now, agent_index=i, registered_at_start=registered)
        run.faults.append(fault)
        run.say(f"chaos: SIGSTOP {agent.name} (pid {agent.pid}) for {frozen} s")

        def resume() -> None:
            agent.signal(signal.SIGCONT)
            fault.end = time.monotonic()
            run.busy.discard(agent.name)
            run.say(f"chaos: SIGCONT {agent.name} after {fault.end - fault.start:.1f} s")
        self.at(now + frozen, resume)

    def agent_partition(self, now: float) -> None:
        i = self._free_agent()
        if i is None:
            return
        run, seconds = self.run, round(self.rng.uniform(4.0, 10.0), 1)
        self._partition(run.proxies[i], f"agent-{i}", seconds, now, i)

    def framework_partition(self, now: float) -> None:
        if "framework" in self.run.busy:
            return
        self._partition(self.run.proxies[-1], "framework", round(self.rng.uniform(2.0, 6.0), 1), now, None)

    def _partition(self, proxy: Proxy, target: str, seconds: float, now: float, index: int | None) -> None:
        run = self.run
        run.busy.add(target)
        registered = run.agent_registered(index) if index is not None else None
        proxy.command(f"partition {seconds}")
        fault = Fault(f"{'agent' if index is not None else 'framework'} partition", target, now, agent_index=index,
                      registered_at_start=registered)
        run.faults.append(fault)
        run.say(f"chaos: partition {target} <-> master for {seconds} s (all messages dropped, TCP kept up)")

        def heal() -> None:
            proxy.command("heal")
            fault.end = time.monotonic()
            run.busy.discard(target)
            run.say(f"chaos: {target} link restored after {fault.end - fault.start:.1f} s")
        self.at(now + seconds, heal)

    def master_kill(self, now: float) -> None:
        run = self.run
        if "master" in run.busy:
            return
        assert run.master is not None
        down = round(self.rng.uniform(1.0, 3.0), 1)
        run.busy.add("master")
        pid = run.master.pid
        run.master.kill()
        fault = Fault("master SIGKILL", "master", now)
        run.faults.append(fault)
        run.read_records()
        info: dict[str, Any] = {"killed": now, "subscribed_before": sum(
            1 for r in run.records if r["event"] == "subscribed")}
        run.master_restarts.append(info)
        run.say(f"chaos: SIGKILL master (pid {pid}); restart on its work dir in {down} s")

        def restart() -> None:
            assert run.master is not None
            run.master.start()
            fault.end = time.monotonic()
            info["restarted"] = fault.end
            run.busy.discard("master")
            run.say(f"chaos: restarted master (pid {run.master.pid}) after {fault.end - fault.start:.1f} s down")
        self.at(now + down, restart)

    def heal_all(self) -> None:
        """The end of the chaos: run every pending end-of-fault action now."""
        pending = sorted(self.timeline)
        self.timeline = []
        for when, _, action in pending:
            if getattr(action, "__name__", "") != "act":
                action()


def watch_master_recovery(run: Run, now: float) -> None:
    """Notes when, after a master restart, the framework re-subscribed and every agent is back."""
    run.read_records()
    for info in run.master_restarts:
        if "restarted" not in info:
            continue
        if "framework_back" not in info:
            subs = [r for r in run.records if r["event"] == "subscribed"]
            if len(subs) > info["subscribed_before"]:
                info["framework_back"] = subs[info["subscribed_before"]]["t"]
                run.say(f"observed: framework re-subscribed {info['framework_back'] - info['killed']:.1f} s "
                        f"after the {info.get('kind', 'master SIGKILL')}")
        if "agents_back" not in info and registered_agents(run) == run.args.agents:
            info["agents_back"] = now
            run.say(f"observed: all {run.args.agents} agents registered with the new master "
                    f"{now - info['killed']:.1f} s after the {info.get('kind', 'SIGKILL')}")


def progress(run: Run) -> None:
    run.read_records()
    launched = relaunched = unreachable = 0
    states: dict[str, str] = {}
    item_of: dict[str, int] = {}
    for r in run.records:
        if r["event"] == "launch":
            launched += 1
            item_of[r["task_id"]] = r["item"]
        elif r["event"] == "relaunch":
            relaunched += 1
        elif r["event"] == "status":
            states[r["task_id"]] = r["state"]
            if r["state"] == "TASK_UNREACHABLE":
                unreachable += 1
    counts = collections.Counter(states.values())
    finished = len({item_of.get(t) for t, state in states.items() if state == "TASK_FINISHED"})
    running = counts.get("TASK_RUNNING", 0) + counts.get("TASK_STARTING", 0)
    run.say(f"progress: task ids launched {launched}, running {running}; items finished {finished}/{run.args.tasks}; "
            f"relaunched {relaunched}, UNREACHABLE reports {unreachable}")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=None, help="work items (default 2000; 60 with --smoke)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of chaos (default 120; 20 with --smoke)")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=None,
                        help="run N seeds in a row from --seed, one table row each, then the total")
    parser.add_argument("--cpu-hog", type=int, default=0, metavar="K",
                        help="K busy-looping processes for the whole run (bench/cpu_hog.py; default 0)")
    parser.add_argument("--fault-rate", type=float, default=0.05,
                        help="share of messages dropped per link and direction (default %(default)s)")
    parser.add_argument("--duplicate-rate", type=float, default=None,
                        help="share of messages duplicated per link and direction (default: --fault-rate)")
    parser.add_argument("--settle", type=float, default=None,
                        help="after the chaos, seconds to wait for every item to finish (default 90; 35 with --smoke)")
    parser.add_argument("--faults", default=None,
                        help=f"which chaos actions to take, comma-separated (default: all of {','.join(FAULT_KINDS)}; "
                             f"with --masters N: {','.join(HA_FAULT_KINDS)}); "
                             "message drops and duplicates are --fault-rate and --duplicate-rate")
    parser.add_argument("--masters", type=int, default=1,
                        help="N > 1: N highly available masters on a ZooKeeper ensemble of their own, and the HA "
                             "faults (see the docstring); needs root for the network namespaces")
    parser.add_argument("--smoke", action="store_true", help="small and short, three faults: for tests")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs) even when all is well")
    args = parser.parse_args(argv)
    if args.duplicate_rate is None:
        args.duplicate_rate = args.fault_rate
    kinds = FAULT_KINDS if args.masters <= 1 else HA_FAULT_KINDS
    if args.faults is None:
        args.faults = ",".join(kinds)
    args.faults = [k.strip() for k in args.faults.split(",") if k.strip()]
    unknown = [k for k in args.faults if k not in kinds]
    if unknown:
        parser.error(f"--faults: unknown {', '.join(unknown)}; choose from {', '.join(kinds)}")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds: at least 1")
    args.tasks = args.tasks if args.tasks is not None else (60 if args.smoke else 2000)
    smoke_duration = 20.0 if args.masters <= 1 else 30.0  # five HA faults, one master fault at a time
    args.duration = args.duration if args.duration is not None else (smoke_duration if args.smoke else 120.0)
    args.settle = args.settle if args.settle is not None else (35.0 if args.smoke else 90.0)
    return args


def make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tepui-chaos-"))
    os.chmod(root, 0o711)  # tasks run as nobody: they must reach their sandboxes and the starts file
    (root / "starts").mkdir()
    os.chmod(root / "starts", 0o1777)
    (root / "starts" / "starts.log").touch()
    os.chmod(root / "starts" / "starts.log", 0o666)
    return root


def run_once(args: argparse.Namespace, root: Path) -> Tally:
    """One chaos run of seed ``args.seed`` in ``root``: builds the cluster, runs the chaos, stops
    everything, prints the summary and returns its counts (the caller keeps or removes ``root``)."""
    run = Run(args, root)
    proxy_stats: list[dict[str, Any]] = []
    ha_problems: list[str] = []
    run.t0 = time.monotonic()
    if args.masters > 1:
        run.ha = HaCluster(root, args.masters, master_args() + ["--insecure"], run.say,
                           random.Random(args.seed * 31))
    try:
        if run.ha is not None:
            run.say(f"HA: {args.masters} masters on a 3-server ZooKeeper ensemble of their own")
            run.ha.start()
            leader = run.ha.wait_leader(60)
            run.say(f"HA: master-{leader.index} leads (epoch {leader.epoch}) "
                    f"{time.monotonic() - run.t0:.1f} s after the start")
        build(run)
        run.say(f"chaos benchmark: {args.tasks} tasks, {args.duration:g} s, {args.agents} agents, seed {args.seed}, "
                f"{args.fault_rate:g} of messages dropped and {args.duplicate_rate:g} duplicated per link and direction, "
                f"faults {','.join(args.faults)}; run dir {root}")
        assert run.framework is not None
        if run.ha is None:
            assert run.master is not None
            run.master.start()
        for proxy in run.proxies:
            proxy.start()
        for proxy in run.proxies:
            proxy.wait_ready()
        if run.ha is not None:
            run.ha.follow_with(run.proxies)
        for agent in run.agents:
            agent.start()
        wait_for("the agents to register", lambda: registered_agents(run) == args.agents, 60, run)
        state = run.state() or {}
        run.agent_ids = {int(s["hostname"].split("-")[1]): s["id"] for s in state.get("slaves", [])}
        leader_text = f"master pid {run.master.pid}" if run.master is not None else \
            "masters " + ", ".join(f"{m.name}={m.pid}" for m in run.ha.masters)  # type: ignore[union-attr]
        run.say(f"cluster up: {leader_text}, agents "
                + ", ".join(f"{a.name}={run.agent_ids.get(i, '?')}" for i, a in enumerate(run.agents)))
        for framework in run.frameworks or [run.framework]:
            framework.start()
        run.t0 = time.monotonic()
        run.say("framework started; chaos begins")
        chaos = Chaos(run)
        if run.ha is not None:
            run.ha_faults = HaFaults(run, run.ha, chaos.at, chaos.note)
        chaos.at(run.t0 + (3.0 if args.smoke else 6.0), chaos.act)
        next_progress = run.t0 + (5.0 if args.smoke else 10.0)
        end = run.t0 + args.duration
        while time.monotonic() < end:
            now = time.monotonic()
            chaos.due(now)
            watch_master_recovery(run, now)
            if run.ha is not None:
                run.ha.supervise(now, chaos.at)
            if now >= next_progress:
                progress(run)
                next_progress += 5.0 if args.smoke else 10.0
            if run.ha is not None:
                if not any(f.alive() for f in run.frameworks) and "framework" not in run.busy:
                    run.say(f"every framework instance exited early; see {root}")
                    break
            elif not run.framework.alive():
                run.say(f"the framework exited early (status {run.framework.popen.returncode}); see {root}")  # type: ignore[union-attr]
                break
            time.sleep(0.1)
        run.say("chaos over: healing every fault, message drops and duplicates included")
        chaos.heal_all()
        for proxy in run.proxies:
            proxy.command("rate 0 0")
        for framework in run.frameworks or [run.framework]:
            framework.signal(signal.SIGUSR1)
        run.say(f"framework told to finish: waits for every item (at most {args.settle:g} s), then reconciles")
        deadline = time.monotonic() + args.settle + 30.0
        next_progress = time.monotonic() + 10.0
        while framework_running(run) and time.monotonic() < deadline:
            now = time.monotonic()
            watch_master_recovery(run, now)
            if run.ha is not None:
                chaos.due(now)  # the HA faults' last observations (a fenced master's exit, a new leader)
                run.ha.supervise(now, chaos.at)
            if now >= next_progress:
                progress(run)
                next_progress += 10.0
            time.sleep(0.2)
        if framework_running(run):
            run.say("the framework did not finish in time; stopping it")
            stop_all(run.frameworks or [run.framework], 5)
        progress(run)
        run.say("stopping agents, master and proxies")
    finally:
        stop_all(run.frameworks or ([run.framework] if run.framework is not None else []), 5)
        stop_all(run.agents, 20)  # each ends its tasks first (grace period 5 s)
        if run.master is not None:
            run.master.stop(10)
        if run.ha is not None:
            ha_problems = run.ha.stop()
        proxy_stats = [p.quit_and_stats() for p in run.proxies]
        leftovers = sweep_task_processes(root)
        if leftovers:
            print(f"note: {leftovers} task processes were still running after the agents stopped; killed by pid")
    tally = analyse(run, proxy_stats)
    if run.ha_faults is not None:
        assert run.ha is not None
        for line in run.ha_faults.summary(proxy_stats):
            print(line)
        for problem in ha_problems:
            print(f"  PROBLEM (teardown): {problem}")
        tally.problems += run.ha_faults.problems + ha_problems
        tally.ha_problems = len(run.ha_faults.problems) + len(ha_problems)
    return tally


def framework_running(run: Run) -> bool:
    """Until the framework's final record (--masters N: its standby instance keeps waiting)."""
    if run.ha is None:
        assert run.framework is not None
        return run.framework.alive()
    run.read_records()
    if any(r["event"] == "final" for r in run.records[-50:]):
        leading = [r["pid"] for r in run.records if r["event"] == "leading"]
        return any(f.alive() and f.pid == leading[-1] for f in run.frameworks) if leading else False
    return any(f.alive() for f in run.frameworks)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.masters > 1:
        # SIGTERM (a test's timeout, a supervisor) unwinds like Ctrl-C, through the cleanup of
        # namespaces, iptables rules, the guard route and the ZooKeeper servers.
        signal.signal(signal.SIGTERM, _interrupt)
    hog = CpuHog.start(args.cpu_hog, hog_seconds(args)) if args.cpu_hog > 0 else None
    if hog is not None:
        print(hog.describe(), flush=True)
    try:
        if args.seeds is not None:
            return run_seeds(args, make_root, run_once, hog)
        root = make_root()
        tally = run_once(args, root)
    finally:
        if hog is not None and hog.stopped is None:  # run_seeds stops it before its last line
            print(hog.stop(), flush=True)
    result = tally.lost_or_duplicated
    if result or tally.ha_problems or args.keep:
        print(f"\nrun directory kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(f"lost_or_duplicated={result}")
    return 0 if result == 0 and not tally.ha_problems else 1


def sweep_task_processes(root: Path) -> int:
    """Kills (by pid) any process whose working directory is under this run's directory: task
    processes an agent left behind. Returns how many."""
    prefix = os.path.realpath(root)
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if cwd.startswith(prefix + os.sep):  # not the root itself: our own children, already stopped
            try:
                os.kill(int(name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


if __name__ == "__main__":
    sys.exit(main())
