"""The highly available cluster of ``bench/chaos.py --masters N`` (issue 19, item 6): its own
3-server ZooKeeper ensemble, N masters contending on it (``tepui master --zk``), each in its own
network namespace, the bench following the leader, and the HA faults.

Network (root, so that a master can be cut off from ZooKeeper alone)::

    root namespace                                   namespace tepui-<pid>-m<i> (master i)
    ┌───────────────────────────────────────┐        ┌───────────────────────────────────┐
    │ ZooKeeper ×3 on 10.200.Z.1 (on a veth │  veth  │ tepui master --ip 10.200.X.2       │
    │ pair used as a dummy interface: this  │◄──────►│   --zk zk://10.200.Z.1:...         │
    │ kernel has no dummy driver); proxies, │        │ cut: iptables -A OUTPUT            │
    │ agents, framework → 10.200.X.2:5050   │        │   -d 10.200.Z.1 -j DROP            │
    └───────────────────────────────────────┘        └───────────────────────────────────┘

Z and each X are free /24s of 10.200.0.0/16 picked under tests/chaos/netns.py's lock, whose
protocol this keeps (so a namespace test running meanwhile and this bench never disturb each
other): the guard route ``unreachable 10.200.0.0/16`` goes in first, tagged ``proto 77``
(ENVIRONMENT.md: with a veth down, 10.200.x.x would otherwise leave the machine by the default
route), and is removed by whoever finds no ``tepui-*`` namespace left. Everything set up is
undone in reverse at the end, also on an exception or Ctrl-C (``Netns.cleanup``: namespaces
take their veths and iptables rules with them), and what is still there is reported as a
problem. Without root, ``ip netns`` or iptables the masters run on 127.0.0.1 and the partition
fault is left out (the reason is printed).

The bench follows the serving master itself with ``tepui.sdk.leadership.LeaderFollower`` (the
product's follower) on its own kazoo session, and points every chaos proxy at a new leader as
soon as it publishes (proxy command ``master``): the proxy closes its listening socket, so the
agents and the framework, which are given the proxy's address, see their connection drop and
re-register / re-subscribe exactly as when a single master restarts — while their links keep
dropping and duplicating 5% of the messages. The deposed master's upstream sockets stay open
one generation, so what a resumed old leader sends still reaches the peers, which must drop it
(older epoch).
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_processes import Proc, stop_all

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The namespace protocol shared with the real-process tests (lock, tagged guard route, names).
from tests.chaos.netns import (  # noqa: E402
    GUARD, NS_PREFIX, TEPUI_ROUTE_PROTO, _locked, _subnet_in_use, guard_route, tepui_namespaces, unavailable_reason,
)

MASTER_PORT, MASTER_HTTP_PORT = 5050, 5051
ZK_PATH = "/tepui-chaos"
SESSION_TIMEOUT = 2.0  # the masters' and the framework's (the product default)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=10)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here (None: they can)."""
    if shutil.which("iptables") is None:
        return "iptables is not installed"
    return unavailable_reason()


class Netns:
    """The namespaces, veths, ZooKeeper's address and the guard route (see the module).

    It keeps the protocol of tests/chaos/netns.py, so that a namespace test running meanwhile
    and this bench never disturb each other: set-up and tear-down under the same flock, the
    guard route tagged ``proto 77`` and removed only by whoever finds no ``tepui-*`` namespace
    left, namespaces named ``tepui-<pid>-…``, and each /24 taken only if nothing uses it."""

    def __init__(self, masters: int) -> None:
        self.tag = f"{NS_PREFIX}{os.getpid()}-"
        self.short = f"tc{os.getpid() % 100000}"  # interface names: at most 15 characters
        self.masters = masters
        self.subnets: list[int] = []  # the third octet of master i's /24
        self.zk_addr = ""
        self.undo: list[list[str]] = []  # ip commands, run in reverse by cleanup()
        self.cut_rules: set[int] = set()

    def ns(self, i: int) -> str:
        return f"{self.tag}m{i}"

    def master_ip(self, i: int) -> str:
        return f"10.200.{self.subnets[i]}.2"

    def prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)]

    def setup(self) -> None:
        with _locked():
            try:
                self._setup()
            except BaseException:
                self._cleanup()
                raise

    def _setup(self) -> None:
        if guard_route() is None:  # first, before any veth: 10.200.x.x never leaves the machine
            _ip("route", "add", "unreachable", GUARD, "proto", TEPUI_ROUTE_PROTO)
        free = [x for x in range(250, 150, -1) if not _subnet_in_use(x)][:self.masters + 1]
        if len(free) < self.masters + 1:
            raise RuntimeError("no free 10.200.X.0/24 subnets")
        zk_x, self.subnets = free[0], free[1:]
        self.zk_addr = f"10.200.{zk_x}.1"
        zk, zk_peer = f"{self.short}z0", f"{self.short}z1"
        _ip("link", "add", zk, "type", "veth", "peer", "name", zk_peer)
        self.undo.append(["link", "del", zk])
        _ip("addr", "add", f"{self.zk_addr}/24", "dev", zk)
        _ip("link", "set", zk, "up")
        _ip("link", "set", zk_peer, "up")
        for i, x in enumerate(self.subnets):
            ns, veth, peer = self.ns(i), f"{self.short}v{i}", f"{self.short}p{i}"
            _ip("netns", "add", ns)
            self.undo.append(["netns", "del", ns])
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            self.undo.append(["link", "del", veth])
            _ip("link", "set", peer, "netns", ns)
            _ip("addr", "add", f"10.200.{x}.1/24", "dev", veth)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "addr", "add", f"{self.master_ip(i)}/24", "dev", peer)
            _ip("-n", ns, "link", "set", peer, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", f"{self.zk_addr}/32", "via", f"10.200.{x}.1")

    def _iptables(self, i: int, action: str) -> None:
        subprocess.run(self.prefix(i) + ["iptables", action, "OUTPUT", "-d", self.zk_addr, "-j", "DROP"],
                       check=True, capture_output=True, timeout=10)

    def cut(self, i: int) -> None:
        """Master i can no longer reach ZooKeeper (its agents and framework still reach it)."""
        self._iptables(i, "-A")
        self.cut_rules.add(i)

    def heal(self, i: int) -> None:
        if i in self.cut_rules:
            self._iptables(i, "-D")
            self.cut_rules.discard(i)

    def cleanup(self) -> list[str]:
        """Undoes everything, in reverse; returns what could not be undone or is still there."""
        problems = []
        for i in sorted(self.cut_rules):
            try:
                self.heal(i)
            except (subprocess.SubprocessError, OSError) as exc:
                problems.append(f"iptables rule in {self.ns(i)}: {exc}")
        with _locked():
            problems += self._cleanup()
        return problems

    def _cleanup(self) -> list[str]:
        problems = []
        while self.undo:
            args = self.undo.pop()
            result = _ip(*args, check=False)
            if result.returncode != 0 and "Cannot find device" not in result.stderr:
                problems.append(f"ip {' '.join(args)}: {result.stderr.strip()}")
        route = guard_route()
        if route is not None and f"proto {TEPUI_ROUTE_PROTO}" in route and not tepui_namespaces():
            _ip("route", "del", "unreachable", GUARD, check=False)
        left = [n for n in tepui_namespaces() if n.startswith(self.tag)]
        left += [line.split(":")[1].strip() for line in _ip("-o", "link").stdout.splitlines()
                 if f" {self.short}" in line]
        if left:
            problems.append(f"left behind: {', '.join(left)}")
        return problems


class _CallNow:
    """A 'reactor' for LeaderFollower in a program without one: calls on the caller's thread."""

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802 - Twisted's name
        f(*args)


@dataclass
class LeaderChange:
    t: float
    id: str
    epoch: int
    index: int | None  # which of our masters (None: unknown address)


@dataclass
class HaCluster:
    """The masters, the ensemble and the leader as the bench sees it."""

    root: Path
    masters_count: int
    master_args: list[str]
    say: Callable[[str], None]
    rng: random.Random
    netns: Netns | None = None
    netns_why_not: str | None = None
    ensemble: Any = None
    masters: list[Proc] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)  # ZeroMQ HOST:PORT of master i
    http: list[str] = field(default_factory=list)
    changes: list[LeaderChange] = field(default_factory=list)
    proxies: list[Any] = field(default_factory=list)
    exits: list[tuple[float, int, int]] = field(default_factory=list)  # (t, master index, status)
    pending_restart: set[int] = field(default_factory=set)
    frozen: set[int] = field(default_factory=set)
    follower: Any = None
    client: Any = None
    zk_url: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)

    # --- start / stop ----------------------------------------------------------------------------

    def start(self) -> None:
        import logging

        from tepui.cli.ensemble import LocalEnsemble

        logging.getLogger("kazoo").setLevel(logging.CRITICAL)  # the observer's reconnections are not news
        self.netns_why_not = netns_unavailable()
        if self.netns_why_not is None:
            self.netns = Netns(self.masters_count)
            self.netns.setup()
            zk_host = self.netns.zk_addr
        else:
            self.say(f"network namespaces not used ({self.netns_why_not}): masters on 127.0.0.1, "
                     "no ZooKeeper partition")
            zk_host = "127.0.0.1"
        t0 = time.monotonic()
        self.ensemble = self._start_ensemble(LocalEnsemble, zk_host)
        self.zk_url = self.ensemble.zk_url(ZK_PATH)
        self.say(f"ZooKeeper ensemble serving in {time.monotonic() - t0:.1f} s: {self.zk_url} "
                 f"(quorum leader: server {self.ensemble.leader_index() + 1})")
        py = sys.executable
        for i in range(self.masters_count):
            if self.netns is not None:
                ip, port, http, prefix = self.netns.master_ip(i), MASTER_PORT, MASTER_HTTP_PORT, self.netns.prefix(i)
            else:
                from chaos_processes import free_ports
                ip, prefix = "127.0.0.1", []
                port, http = free_ports(2)
            self.addresses.append(f"{ip}:{port}")
            self.http.append(f"http://{ip}:{http}")
            self.masters.append(Proc(f"master-{i}", prefix + [
                py, "-m", "tepui.cli", "master", "--ip", ip, "--port", str(port), "--http-port", str(http),
                "--zk", self.zk_url, "--zk-session-timeout", str(SESSION_TIMEOUT), *self.master_args],
                self.root / f"master-{i}.log"))
        for master in self.masters:
            master.start()
        from tepui.sdk.leadership import MASTERS, LeaderFollower
        from tepui.sdk.zookeeper import connect

        self.client = connect(self.zk_url, session_timeout=10.0)  # the observer's: long, it must not matter
        self.follower = LeaderFollower(_CallNow(), self.client, f"{ZK_PATH}/{MASTERS}", self._leader_changed)
        self.follower.start()

    def _start_ensemble(self, cls: Any, host: str) -> Any:
        from tepui.cli.ensemble import EnsembleError, port_free

        for _attempt in range(20):
            base = random.randrange(30000, 60000)
            ports = [base + off + i for off in (0, 10, 20) for i in range(3)]
            if not all(port_free(p) for p in ports) or not all(port_free(base + i, host) for i in range(3)):
                continue
            ensemble = cls(self.root / "zk", base_port=base, client_address=host)
            try:
                ensemble.start()
            except EnsembleError as exc:
                ensemble.stop()
                if "in use" in str(exc) or "held by" in str(exc):
                    continue
                raise
            return ensemble
        raise RuntimeError("no free port range for the ZooKeeper ensemble")

    def stop(self) -> list[str]:
        """Stops the masters, the follower, the ensemble; undoes the network. Returns problems."""
        problems: list[str] = []
        for i in list(self.frozen):
            self.masters[i].signal(signal.SIGCONT)  # a frozen master cannot stop
        stop_all(self.masters, 10)
        if self.follower is not None:
            self.follower.close()
        if self.client is not None:
            try:
                self.client.stop()
                self.client.close()
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                problems.append(f"kazoo: {exc!r}")
        if self.ensemble is not None:
            try:
                self.ensemble.stop()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"ensemble stop: {exc!r}")
        if self.netns is not None:
            problems += self.netns.cleanup()
        return problems

    # --- the leader --------------------------------------------------------------------------------

    def _leader_changed(self, info: Any) -> None:
        """On a kazoo thread: a new serving master. The proxies follow it at once."""
        now = time.monotonic()
        index = self.addresses.index(info.address) if info.address in self.addresses else None
        with self.lock:
            self.changes.append(LeaderChange(now, info.id, info.epoch, index))
            for proxy in self.proxies:
                proxy.command(f"master {info.address}")
        self.say(f"leader: master-{index} (id {info.id}, epoch {info.epoch})")

    @property
    def leader(self) -> LeaderChange | None:
        with self.lock:
            return self.changes[-1] if self.changes else None

    def leader_http(self) -> str | None:
        leader = self.leader
        return self.http[leader.index] if leader is not None and leader.index is not None else None

    def leader_pid(self) -> int | None:
        leader = self.leader
        return self.masters[leader.index].pid if leader is not None and leader.index is not None else None

    def leader_address(self) -> str:
        leader = self.leader
        assert leader is not None and leader.index is not None
        return self.addresses[leader.index]

    def wait_leader(self, timeout: float) -> LeaderChange:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader
            if leader is not None and leader.index is not None:
                return leader
            for i, master in enumerate(self.masters):
                if not master.alive():
                    raise RuntimeError(f"master-{i} exited ({master.popen and master.popen.returncode}) before any led; "
                                       f"see {master.log}")
            time.sleep(0.1)
        raise RuntimeError(f"no master published its leadership within {timeout:g} s; see {self.root}/master-*.log")

    def changed_since(self, t: float) -> LeaderChange | None:
        """The first leader change after ``t``."""
        with self.lock:
            return next((c for c in self.changes if c.t > t), None)

    # --- supervision: a master that exited comes back as a standby (tepui up --ha does the same) ---

    def supervise(self, now: float, at: Callable[[float, Callable[[], None]], None]) -> None:
        for i, master in enumerate(self.masters):
            if i in self.pending_restart or i in self.frozen or master.popen is None or master.alive():
                continue
            if self.netns is not None and i in self.netns.cut_rules:
                continue  # it could not reach ZooKeeper: restarted once the cut heals
            code = master.popen.returncode
            self.exits.append((now, i, code))
            self.pending_restart.add(i)
            delay = round(self.rng.uniform(1.0, 3.0), 1)
            self.say(f"master-{i} exited with status {code}; restarted as a standby in {delay} s")
            at(now + delay, functools.partial(self.restart, i))

    def restart(self, i: int) -> None:
        self.pending_restart.discard(i)
        if not self.masters[i].alive():
            self.masters[i].start()
            self.say(f"master-{i} restarted (pid {self.masters[i].pid})")


# --- the HA faults -------------------------------------------------------------------------------

# What a resumed old leader logs when it finds out (master/leadership/ha.py, master/shell.py).
FENCED_EVENTS = ("event=registry_failed", "event=leadership_lost", "event=master_superseded")
HA_KINDS = ("master_kill", "master_stop", "master_partition", "zk_kill", "framework_kill")


@dataclass
class HaFault:
    """One HA fault and what was seen after it (times in seconds from its start)."""

    kind: str
    start: float
    target: str
    info: dict[str, Any] = field(default_factory=dict)


class HaFaults:
    """The HA chaos actions. Each returns False when it cannot act now (its target is busy, or
    no master leads); the bench then tries again a second later. ``at(when, action)`` schedules
    on the bench's timeline; ``note(kind, target, now)`` records a chaos action for the summary
    (the bench's own ``Fault``), returning it so that its end can be set."""

    def __init__(self, run: Any, ha: HaCluster, at: Callable[[float, Callable[[], None]], None],
                 note: Callable[[str, str, float], Any]) -> None:
        self.run, self.ha, self.at, self.note = run, ha, at, note
        self.rng = random.Random(run.args.seed * 7919)
        self.faults: list[HaFault] = []
        self.problems: list[str] = []

    def _leader(self) -> LeaderChange | None:
        leader = self.ha.leader
        if leader is None or leader.index is None or not self.ha.masters[leader.index].alive():
            return None
        return leader

    def _master_free(self) -> bool:
        return "master" not in self.run.busy and not self.ha.pending_restart and not self.ha.frozen

    def _track_recovery(self, fault: HaFault, leader: LeaderChange) -> dict[str, Any]:
        """The bench's master-recovery watch (framework re-subscribed, agents back) for this fault,
        counted from ``fault.start``; 'restarted' is set once a new leader serves."""
        self.run.read_records()
        info: dict[str, Any] = {"killed": fault.start, "kind": fault.kind, "subscribed_before": sum(
            1 for r in self.run.records if r["event"] == "subscribed")}
        self.run.master_restarts.append(info)
        fault.info["recovery"] = info
        fault.info["old_epoch"] = leader.epoch

        def new_leader() -> None:
            change = self.ha.changed_since(fault.start)
            if change is not None and change.id != leader.id:
                fault.info["new_leader_s"] = change.t - fault.start
                fault.info["new_leader"] = f"master-{change.index} epoch {change.epoch}"
                info["restarted"] = change.t
                self.run.say(f"observed: new leader master-{change.index} (epoch {change.epoch}) "
                             f"{change.t - fault.start:.2f} s after the {fault.kind}")
                return
            if time.monotonic() - fault.start < 60:
                self.at(time.monotonic() + 0.1, new_leader)
        self.at(time.monotonic() + 0.1, new_leader)
        return info

    # --- the leader SIGKILLed, restarted 1-3 s later as a standby ---------------------------------

    def _strike_leader(self, kind: str, now: float, strike: Callable[[int, Proc], None]
                       ) -> tuple[int, Proc, LeaderChange, HaFault, Any] | None:
        """``strike(i, master)`` the serving leader, if one serves and no master fault is under
        way: (its index, its process, the leader as it was, the fault, the bench's note)."""
        leader = self._leader()
        if leader is None or not self._master_free():
            return None
        assert leader.index is not None
        i, master = leader.index, self.ha.masters[leader.index]
        self.run.busy.add("master")
        strike(i, master)
        fault = HaFault(kind, now, f"master-{i}")
        self.faults.append(fault)
        note = self.note(kind, f"master-{i}", now)
        self._track_recovery(fault, leader)
        return i, master, leader, fault, note

    def master_kill(self, now: float) -> bool:
        pid = self.ha.leader_pid()

        def kill(i: int, master: Proc) -> None:
            self.ha.pending_restart.add(i)
            master.kill()
        struck = self._strike_leader("leader SIGKILL", now, kill)
        if struck is None:
            return False
        i, _master, leader, _fault, note = struck
        down = round(self.rng.uniform(1.0, 3.0), 1)
        self.run.say(f"chaos: SIGKILL the leading master-{i} (pid {pid}, epoch {leader.epoch}); "
                     f"restarted as a standby in {down} s")

        def restart() -> None:
            self.ha.restart(i)
            note.end = time.monotonic()
            self.run.busy.discard("master")
        self.at(now + down, restart)
        return True

    # --- the leader SIGSTOPped until another leads, then SIGCONT: it must be fenced ---------------

    def master_stop(self, now: float) -> bool:
        def stop(i: int, master: Proc) -> None:
            self.ha.frozen.add(i)
            master.signal(signal.SIGSTOP)
        struck = self._strike_leader("leader SIGSTOP", now, stop)
        if struck is None:
            return False
        i, master, leader, fault, note = struck
        self.run.say(f"chaos: SIGSTOP the leading master-{i} (pid {master.pid}, epoch {leader.epoch}) "
                     "until another master leads")

        def resume_when_replaced() -> None:
            change = self.ha.changed_since(now)
            waited = time.monotonic() - now
            if (change is None or change.id == leader.id) and waited < 30:
                self.at(time.monotonic() + 0.1, resume_when_replaced)
                return
            # Let the new leader act a little (offers, registrations) before the old one wakes.
            self.at(time.monotonic() + 1.0, resume)

        def resume() -> None:
            fault.info["log_offset"] = master.log.stat().st_size
            master.signal(signal.SIGCONT)
            self.ha.frozen.discard(i)
            resumed = fault.info["resumed"] = time.monotonic()
            note.end = resumed
            self.run.say(f"chaos: SIGCONT master-{i} after {resumed - now:.1f} s (a new leader serves)")
            self.at(resumed + 0.1, lambda: self._judge_fencing(fault, i, resumed))
        self.at(now + 0.1, resume_when_replaced)
        return True

    def _judge_fencing(self, fault: HaFault, i: int, resumed: float) -> None:
        exit_ = next(((t, code) for t, j, code in self.ha.exits if j == i and t >= resumed), None)
        master = self.ha.masters[i]
        if exit_ is None and time.monotonic() - resumed < 15:
            self.at(time.monotonic() + 0.1, lambda: self._judge_fencing(fault, i, resumed))
            return
        self.run.busy.discard("master")
        text = master.log.read_text(errors="replace")[fault.info.get("log_offset", 0):]
        reasons = [line.split(" event=", 1)[1].strip() for line in text.splitlines()
                   if " event=" in line and any(e in line for e in FENCED_EVENTS)]
        fault.info["old_log"] = reasons[0][:160] if reasons else ""
        if exit_ is None:
            fault.info["fenced"] = "NOT FENCED: still running 15 s after SIGCONT"
            self.problems.append(f"leader SIGSTOP master-{i}: still running 15 s after SIGCONT (not fenced)")
        elif exit_[1] == 0:
            fault.info["fenced"] = f"exited 0 (expected non-zero) {exit_[0] - resumed:.2f} s after SIGCONT"
            self.problems.append(f"leader SIGSTOP master-{i}: exited 0 after SIGCONT, not 1")
        else:
            fault.info["fenced"] = f"exited {exit_[1]} {exit_[0] - resumed:.2f} s after SIGCONT"
        self.run.say(f"observed: the resumed old leader master-{i} {fault.info['fenced']}"
                     + (f" ({fault.info['old_log']})" if fault.info["old_log"] else ""))

    # --- the leader cut off from ZooKeeper (iptables DROP in its namespace) for 4-10 s ------------

    def master_partition(self, now: float) -> bool:
        netns = self.ha.netns
        if netns is None:
            return True  # not possible here (said at the start): skipped
        def cut(i: int, _master: Proc) -> None:
            netns.cut(i)
        struck = self._strike_leader("leader cut from ZooKeeper", now, cut)
        if struck is None:
            return False
        i, master, leader, fault, note = struck
        seconds = round(self.rng.uniform(4.0, 10.0), 1)
        self.run.say(f"chaos: master-{i} (the leader, epoch {leader.epoch}) cut from ZooKeeper for {seconds} s "
                     f"(iptables DROP to {netns.zk_addr} in {netns.ns(i)}; agents and framework still reach it)")

        def watch_exit() -> None:  # while cut, the supervisor leaves it be: its exit is timed here
            if i in netns.cut_rules:
                if master.popen is not None and master.popen.poll() is not None:
                    fault.info["exit"] = (time.monotonic(), master.popen.returncode)
                else:
                    self.at(time.monotonic() + 0.05, watch_exit)
        self.at(now + 0.05, watch_exit)

        def heal() -> None:
            netns.heal(i)
            healed = note.end = time.monotonic()
            self.run.busy.discard("master")
            exit_ = fault.info.get("exit")
            if exit_ is None and not master.alive() and master.popen is not None:
                exit_ = (healed, master.popen.returncode)
            if exit_ is not None:
                fault.info["outcome"] = f"paused, then exited {exit_[1]} {exit_[0] - now:.2f} s after the cut"
            else:
                same = self.ha.leader is not None and self.ha.leader.id == leader.id
                fault.info["outcome"] = ("resumed leading (healed within its session)" if same
                                         else "still running as a deposed leader")
                if not same:
                    self.problems.append(f"leader cut from ZooKeeper master-{i}: deposed but still running at heal")
            self.run.say(f"chaos: master-{i} reaches ZooKeeper again after {healed - now:.1f} s; "
                         f"it {fault.info['outcome']}")
        self.at(now + seconds, heal)
        return True

    # --- one of the three ZooKeeper servers SIGKILLed (the quorum leader every other time) --------

    def zk_kill(self, now: float) -> bool:
        if "zk" in self.run.busy:
            return False
        ensemble = self.ha.ensemble
        try:
            quorum_leader = ensemble.leader_index()
        except Exception:  # noqa: BLE001 - no quorum leader right now: try later
            return False
        prefer_leader = sum(1 for f in self.faults if f.kind.startswith("ZooKeeper")) % 2 == 0
        index = quorum_leader if prefer_leader else self.rng.choice([k for k in range(3) if k != quorum_leader])
        down = round(self.rng.uniform(2.0, 5.0), 1)
        self.run.busy.add("zk")
        leader = self.ha.leader
        ensemble.kill(index)
        what = "quorum leader" if index == quorum_leader else "follower"
        fault = HaFault(f"ZooKeeper {what} SIGKILL", now, f"zk-{index + 1}")
        self.faults.append(fault)
        note = self.note(f"ZooKeeper {what} SIGKILL", f"zk-{index + 1}", now)
        self.run.say(f"chaos: SIGKILL ZooKeeper server {index + 1} (the {what}); restarted in {down} s")

        def restart() -> None:
            started = time.monotonic()

            def start_server() -> None:
                try:
                    ensemble.start_server(index)
                    fault.info["rejoined_s"] = time.monotonic() - started
                except Exception as exc:  # noqa: BLE001 - said in the summary
                    fault.info["rejoin_error"] = repr(exc)
                    self.problems.append(f"ZooKeeper server {index + 1} did not rejoin: {exc}")
                note.end = time.monotonic()
                self.run.busy.discard("zk")
            threading.Thread(target=start_server, daemon=True, name="zk-restart").start()
            changed = self.ha.changed_since(now)
            fault.info["masters"] = ("leader kept (no master failover)" if changed is None or leader is None
                                     else f"master failover (to master-{changed.index} after "
                                          f"{changed.t - now:.2f} s)")
            self.run.say(f"chaos: restarting ZooKeeper server {index + 1}; masters: {fault.info['masters']}")
        self.at(now + down, restart)
        return True

    # --- the leading framework instance SIGKILLed; the standby takes over -------------------------

    def framework_kill(self, now: float) -> bool:
        if "framework" in self.run.busy:
            return False
        self.run.read_records()
        leading = [r for r in self.run.records if r["event"] == "leading"]
        if not leading:
            return False
        pid = leading[-1]["pid"]
        instance = next((f for f in self.run.frameworks if f.alive() and f.pid == pid), None)
        if instance is None:
            return False
        down = round(self.rng.uniform(1.0, 3.0), 1)
        self.run.busy.add("framework")
        instance.kill()
        fault = HaFault("framework leader SIGKILL", now, instance.name)
        fault.info["leading_before"] = len(leading)
        self.faults.append(fault)
        note = self.note("framework leader SIGKILL", instance.name, now)
        self.run.say(f"chaos: SIGKILL the leading framework instance {instance.name} (pid {pid}); "
                     f"restarted as a standby in {down} s")

        def restart() -> None:
            instance.start()
            note.end = time.monotonic()
            self.run.busy.discard("framework")
            self.run.say(f"chaos: restarted {instance.name} (pid {instance.pid}) as a standby")
        self.at(now + down, restart)
        return True

    # --- the summary ---------------------------------------------------------------------------------

    def summary(self, proxy_stats: list[dict[str, Any]]) -> list[str]:
        """The HA section of the summary: per fault what was seen, then the spreads."""
        records = self.run.records
        lines = [f"\n== HA ({len(self.ha.masters)} masters on {self.ha.zk_url}"
                 + (f", each in its own network namespace" if self.ha.netns is not None
                    else f"; no namespaces: {self.ha.netns_why_not}") + ") =="]
        spreads: dict[str, list[float]] = {}

        def add(key: str, value: float | None) -> str:
            if value is None:
                return "-"
            spreads.setdefault(key, []).append(value)
            return f"{value:.2f} s"

        for f in self.faults:
            at = f"{f.kind} {f.target} at {f.start - self.run.t0:5.1f} s"
            rec = f.info.get("recovery", {})
            if f.kind.startswith("leader"):
                line = (f"{at}: → new leader {add(f.kind + ' → new leader', f.info.get('new_leader_s'))}"
                        f", → framework re-subscribed "
                        f"{add(f.kind + ' → framework re-subscribed', rec['framework_back'] - f.start if 'framework_back' in rec else None)}"
                        f", → all agents registered "
                        f"{add(f.kind + ' → agents registered', rec['agents_back'] - f.start if 'agents_back' in rec else None)}")
                if "fenced" in f.info:
                    line += f"; old leader {f.info['fenced']}" + (f" [{f.info['old_log']}]" if f.info["old_log"] else "")
                if "outcome" in f.info:
                    line += f"; old leader {f.info['outcome']}"
            elif f.kind.startswith("ZooKeeper"):
                line = (f"{at}: {f.info.get('masters', '?')}; server rejoined "
                        f"{add('ZooKeeper server rejoined after its restart', f.info.get('rejoined_s'))} after its restart")
            else:
                before = f.info["leading_before"]
                leading = [r for r in records if r["event"] == "leading"]
                took = leading[before] if len(leading) > before else None
                subs = [r for r in records if r["event"] == "subscribed" and took is not None and r["t"] >= took["t"]]
                line = (f"{at}: → standby elected and restored "
                        f"{add('framework kill → standby leading', took['t'] - f.start if took else None)}"
                        f" ({took['records'] if took else '?'} records replayed in {took['restore_s'] if took else '?'} s)"
                        f", → re-subscribed with the same id "
                        f"{add('framework kill → re-subscribed', subs[0]['t'] - f.start if subs else None)}")
                if took is not None and subs and subs[0]["framework_id"] != took["framework_id"]:
                    self.problems.append(f"{at}: re-subscribed as {subs[0]['framework_id']}, not {took['framework_id']}")
            lines.append("  " + line)
        if spreads:
            lines.append("")
            width = max(len(k) for k in spreads)
            for key, values in spreads.items():
                values = sorted(values)
                lines.append(f"  {key:<{width}}  n={len(values)}, min {values[0]:.2f} s, "
                             f"median {values[len(values) // 2]:.2f} s, max {values[-1]:.2f} s")
        old = sum(int(s.get("down_from_old_master", 0)) for s in proxy_stats)
        stale = _count_in_logs(self.run.root, ("agent-", "framework"), ("stale_master_message", "stale_epoch_dropped"))
        lines.append(f"  messages from deposed masters delivered to peers: {old}; dropped by them as stale epochs: "
                     f"{stale}")
        exits = ", ".join(f"master-{i} {code}" for _t, i, code in self.ha.exits) or "none"
        lines.append(f"  master exits seen (restarted as standbys): {exits}")
        for problem in self.problems:
            lines.append(f"  PROBLEM: {problem}")
        return lines


def _count_in_logs(root: Path, prefixes: tuple[str, ...], needles: tuple[str, ...]) -> int:
    count = 0
    for path in root.glob("*.log"):
        if path.name.startswith(prefixes):
            text = path.read_text(errors="replace")
            count += sum(text.count(n) for n in needles)
    return count
