"""A network namespace with a veth link to the host, for real-process partition tests.

Usage (root only)::

    with Netns() as ns:                  # ns.host_ip = 10.200.X.1, ns.ns_ip = 10.200.X.2
        agent = ns.run_in([...], stdout=log)   # a process inside the namespace
        ns.cut()                         # silence between the host and the namespace
        ns.restore()
        ns.drop_inbound_from_host()      # one-way: the host's packets no longer arrive
        ns.allow_inbound_from_host()
    # on exit: processes stopped by pid, namespace and veth deleted, guard route removed if due

Layout: the root namespace keeps ``tpvXr`` (10.200.X.1/24), namespace ``tepui-<pid>-X`` holds
its peer ``tpvXn`` (10.200.X.2/24) and ``lo``. The namespace has no default route, so its
processes reach 10.200.X.0/24 and nothing else.

**Guard route (ENVIRONMENT.md, mandatory).** Before any namespace or veth exists,
``unreachable 10.200.0.0/16`` is put in the root namespace's main table: without it, when a veth
is down its connected route vanishes and traffic for 10.200.x.x would leave the machine through
the default route. We add it tagged ``proto 77`` (``TEPUI_ROUTE_PROTO``) so that a guard route an
operator installed by hand (another proto) is never removed by us. On exit the guard route is
deleted only if it carries our tag — i.e. this helper (in this or a concurrent test process)
added it — and no ``tepui-*`` namespace is left, so a concurrent test keeps its guard until the
last one ends. Set-up and tear-down hold an flock (``LOCK_PATH``) so that two test processes
never pick the same subnet or race on the guard route.

**Subnet choice.** X starts from the pid (``pid % 250 + 1``) and moves on while 10.200.X.0/24 is
in use in the root namespace (an address, a route or our veth name), under the lock.

Everything here shells out to ``ip`` (iproute2) and, for the one-way cut, ``iptables`` run inside
the namespace (its own netfilter tables: the host's rules are untouched).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any

GUARD = "10.200.0.0/16"
TEPUI_ROUTE_PROTO = "77"
NS_PREFIX = "tepui-"
LOCK_PATH = "/run/lock/tepui-netns.lock" if os.path.isdir("/run/lock") else "/tmp/tepui-netns.lock"


class NetnsUnavailable(RuntimeError):
    """This machine cannot run namespace tests (not root, no iproute2, no netns support)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    try:
        probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"'ip netns list' failed: {exc}"
    if probe.returncode != 0:
        return f"'ip netns' is unavailable: {probe.stderr.strip()}"
    return None


def tepui_namespaces() -> list[str]:
    """Names of the namespaces this helper creates (``tepui-*``), from ``ip netns list``."""
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NS_PREFIX)]


def guard_route() -> str | None:
    """The root namespace's ``unreachable 10.200.0.0/16`` route as ``ip`` prints it, or None."""
    for line in _ip("route", "show", "exact", GUARD).stdout.splitlines():
        if line.startswith("unreachable"):
            return line.strip()
    return None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with open(LOCK_PATH, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _subnet_in_use(x: int) -> bool:
    net = ipaddress.ip_network(f"10.200.{x}.0/24")
    if _ip("link", "show", f"tpv{x}r", check=False).returncode == 0:
        return True
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            address = ipaddress.ip_interface(fields[fields.index("inet") + 1])
            if address.ip in net:
                return True
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        words = line.split()
        if words and words[0] in ("unreachable", "local", "broadcast", "blackhole", "prohibit", "throw"):
            words = words[1:]  # the route type comes before the destination
        if not words or words[0] == "default":
            continue
        try:
            route = ipaddress.ip_network(words[0], strict=False)
        except ValueError:
            continue
        if route.prefixlen >= 24 and route.overlaps(net):  # the /16 guard route does not count
            return True
    return False


class Netns:
    """One namespace ``tepui-<pid>-X`` linked to the host by a veth pair (see the module doc)."""

    def __init__(self, stop_grace: float = 10.0) -> None:
        self.stop_grace = stop_grace
        self.x: int | None = None
        self.name = ""
        self.host_if = self.ns_if = ""
        self.host_ip = self.ns_ip = ""
        self.processes: list[subprocess.Popen[Any]] = []
        self.leftovers: list[str] = []  # processes found in the namespace at the end (then killed)
        self.cleanup_errors: list[str] = []
        self._created_ns = False
        self._created_link = False
        self._inbound_rule: list[str] | None = None

    # --- set-up and tear-down ---------------------------------------------------------------

    def __enter__(self) -> Netns:
        reason = unavailable_reason()
        if reason:
            raise NetnsUnavailable(reason)
        with _locked():
            try:
                self._create()
            except BaseException:
                self._destroy()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        # 1. The guard route first: nothing 10.200.x.x may ever leave through the default route.
        if guard_route() is None:
            _ip("route", "add", "unreachable", GUARD, "proto", TEPUI_ROUTE_PROTO)
        # 2. A free /24, then the namespace and the veth pair.
        start = os.getpid() % 250 + 1
        for step in range(250):
            x = (start - 1 + step) % 250 + 1
            if not _subnet_in_use(x) and f"{NS_PREFIX}{os.getpid()}-{x}" not in tepui_namespaces():
                break
        else:
            raise RuntimeError("no free 10.200.X.0/24 subnet")
        self.x = x
        self.name = f"{NS_PREFIX}{os.getpid()}-{x}"
        self.host_if, self.ns_if = f"tpv{x}r", f"tpv{x}n"
        self.host_ip, self.ns_ip = f"10.200.{x}.1", f"10.200.{x}.2"
        _ip("netns", "add", self.name)
        self._created_ns = True
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._created_link = True
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_if)
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        self._wait_reachable()

    def _wait_reachable(self, timeout: float = 5.0) -> None:
        """veth links come up asynchronously (carrier, DAD is off for IPv4): wait until the
        namespace side has its connected route, so the first connect does not fail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            routes = _ip("-n", self.name, "route", "show", f"10.200.{self.x}.0/24").stdout
            link = _ip("link", "show", self.host_if).stdout
            if routes.strip() and "LOWER_UP" in link:
                return
            time.sleep(0.05)
        raise RuntimeError(f"veth {self.host_if}<->{self.ns_if} did not come up within {timeout} s")

    def close(self) -> None:
        """Stops our processes (by pid), then deletes the namespace, the veth and, if due, the
        guard route. Safe to call twice; problems are collected in ``cleanup_errors``."""
        self.stop_all()
        with _locked():
            self._destroy()

    def _destroy(self) -> None:
        if self._created_ns:
            self._kill_leftovers()
            result = _ip("netns", "del", self.name, check=False)
            if result.returncode != 0:
                self.cleanup_errors.append(f"ip netns del {self.name}: {result.stderr.strip()}")
            self._created_ns = False
        if self._created_link:
            # Deleting the namespace destroys tpvXn and with it its peer; this is a fallback.
            if _ip("link", "show", self.host_if, check=False).returncode == 0:
                _ip("link", "del", self.host_if, check=False)
            self._created_link = False
        route = guard_route()
        if route is not None and f"proto {TEPUI_ROUTE_PROTO}" in route and not tepui_namespaces():
            result = _ip("route", "del", "unreachable", GUARD, check=False)
            if result.returncode != 0:
                self.cleanup_errors.append(f"ip route del unreachable {GUARD}: {result.stderr.strip()}")

    def _kill_leftovers(self) -> None:
        """Anything still inside our namespace was started by us (directly or as a task of a
        process we started): record it, then SIGKILL it by pid before deleting the namespace."""
        for _ in range(20):
            out = _ip("netns", "pids", self.name, check=False).stdout.split()
            pids = [int(p) for p in out if p.isdigit() and _alive(int(p))]
            if not pids:
                return
            for pid in pids:
                self.leftovers.append(f"{pid} ({_cmdline(pid)})")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    # --- processes --------------------------------------------------------------------------

    def run_in(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Starts ``argv`` inside the namespace (``ip netns exec`` execs it: the Popen's pid is
        the process itself). It is stopped by pid when the namespace closes."""
        process = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **popen_kwargs)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any]) -> None:
        """SIGTERM, ``stop_grace`` seconds, then SIGKILL (SIGCONT first, in case it is stopped)."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            self.stop(process)

    # --- faults -----------------------------------------------------------------------------

    def cut(self) -> None:
        """A two-way partition that the host side experiences as pure silence.

        We take the *namespace-side* veth down. The host keeps its interface (admin up, now
        NO-CARRIER) and its connected route, so the master's kernel still routes to 10.200.X.2
        and its segments simply vanish at the veth: no RST, no ICMP, no local error — exactly
        what a dead switch port or a pulled cable on the far side looks like, and the master
        can only find out through its own application pings. Taking the *host-side* veth down
        instead would delete the host's route, so the guard route would answer the master's
        sends with an immediate local EHOSTUNREACH; that is the host's kernel talking, not
        silence. (Inside the namespace the route does vanish: the agent's own sends fail at
        once, which it cannot tell apart from a dead master anyway: it waits for pings too.)
        Connections stay open across the cut (until ZMTP's 15 s heartbeat timeout), as they
        would in a real partition."""
        _ip("-n", self.name, "link", "set", self.ns_if, "down")

    def restore(self) -> None:
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        self._wait_reachable()

    def drop_inbound_from_host(self) -> None:
        """A one-way cut host → namespace: iptables inside the namespace drops every packet
        from the host's address (its own tables; the host's rules are untouched). Packets from
        the namespace still reach the host, but note what TCP makes of it: the host's ACKs are
        dropped too, so after its first unacknowledged segment the sender in the namespace
        retransmits only that one until the cut ends."""
        rule = ["INPUT", "-s", self.host_ip, "-j", "DROP"]
        self._iptables("-A", *rule)
        self._inbound_rule = rule

    def allow_inbound_from_host(self) -> None:
        if self._inbound_rule is not None:
            self._iptables("-D", *self._inbound_rule)
            self._inbound_rule = None

    def _iptables(self, *args: str) -> None:
        result = subprocess.run(["ip", "netns", "exec", self.name, "iptables", "-w", "5", *args],
                                capture_output=True, text=True, timeout=15, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)} in {self.name} failed: {result.stderr.strip()}")


def iptables_reason() -> str | None:
    """Why iptables cannot be used inside a namespace here, or None."""
    if shutil.which("iptables") is None:
        return "iptables is not installed"
    return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
