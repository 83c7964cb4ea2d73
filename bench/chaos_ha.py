"""The highly available cluster of ``bench/chaos.py --masters N`` (issue 19, item 6): its own
3-server ZooKeeper ensemble, N masters contending on it (``tepui master --zk``), each in its own
network namespace, the bench following the leader, and the HA faults.

The network (namespaces, veths, the guard route) is bench/chaos_netns.py's; the HA faults and
their summary are bench/chaos_ha_faults.py's.

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
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_netns import Netns, netns_unavailable
from chaos_processes import Proc, stop_all

MASTER_PORT, MASTER_HTTP_PORT = 5050, 5051
ZK_PATH = "/tepui-chaos"
SESSION_TIMEOUT = 2.0  # the masters' and the framework's (the product default)


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

    def follow_with(self, proxies: list[Any]) -> None:
        """From now on ``proxies`` follow the leader; each is moved now if it was started
        towards another master (the leader changed while they started)."""
        with self.lock:
            self.proxies = proxies
            address = self.leader_address()
            for proxy in proxies:
                if proxy.argv[proxy.argv.index("--master") + 1] != address:
                    proxy.command(f"master {address}")

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
