"""The network of ``bench/chaos.py --masters N``: each master in its own namespace, ZooKeeper
reachable from all of them, and a master cut from ZooKeeper alone on demand.

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
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The namespace protocol shared with the real-process tests (lock, tagged guard route, names).
from tests.chaos.netns import (  # noqa: E402
    GUARD, NS_PREFIX, TEPUI_ROUTE_PROTO, _locked, _subnet_in_use, guard_route, tepui_namespaces, unavailable_reason,
)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=10)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here (None: they can)."""
    if os.environ.get("TEPUI_CHAOS_NO_NETNS"):
        return "TEPUI_CHAOS_NO_NETNS is set"
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
