"""A local ZooKeeper ensemble of three servers on loopback: what the HA tests, ``scripts/test``
and ``tepui up --ha`` run when no ZooKeeper is given.

One ZooKeeper server cannot test high availability: losing it loses everything. Three on one
machine can — any one may die and the other two still form a quorum — and they behave like a
real ensemble (quorum-leader election, followers dropping their clients while they look for a
new leader, sessions moved between servers), which is what the masters' and frameworks' HA code
must survive. Each server is the Debian ``zookeeperd`` 3.8 jar run directly (``QuorumPeerMain``),
exactly as ``scripts/test`` runs its standalone server, with its own ``zoo.cfg``, ``myid`` and
log4j configuration under ``state_dir/server<N>/``.

**Ports.** Server ``i`` (0-based; its ``myid`` is ``i + 1``) serves clients on ``base_port + i``,
talks to the quorum leader on ``base_port + 10 + i`` and votes on ``base_port + 20 + i``, all on
127.0.0.1: the client ports are contiguous so the connect string is easy to read, and the peer
ports sit in their own ranges so a port number tells what it is for.

**Timing** (``tick_ms`` = ZooKeeper's tickTime, 200 ms by default instead of its 2000):

- ``minSessionTimeout = 2 x tick`` (ZooKeeper's own default), so a client can negotiate a session
  of about 1–2 s — with the default tick the server would clamp it to at least 4 s, and the
  masters' failover target (≤ 3 s) would be out of reach. ``maxSessionTimeout`` is 60 s rather
  than the default 20 ticks (4 s here), so a client asking for a long session gets one.
- ``syncLimit = 10`` ticks (2 s): how long the quorum leader waits for a follower's answer (and a
  follower for the leader) before dropping it. On a busy 2-core machine a JVM can stall for
  hundreds of milliseconds (GC, the scheduler, fsyncs of other processes); at ZooKeeper's usual 5
  ticks a follower would be dropped after 1 s, and re-syncing it costs more than waiting.
  A *killed* server is noticed at once anyway — its TCP connections close — so this only delays
  noticing a hung (SIGSTOPped, partitioned) quorum leader.
- ``initLimit = 50`` ticks (10 s): how long a (re)starting follower may take to connect to the
  leader and sync. That includes its JVM warming up (``-XX:TieredStopAtLevel=1``, small heap)
  and loading a snapshot; a restarted server was back in the quorum 0.9–1.3 s after its start
  here, but on a loaded 2-core machine a JVM start alone can take seconds, and a follower that
  misses the limit starts over. A larger limit costs nothing when nothing is slow.
- ``forceSync=no``: the three servers share one disk and one kernel, so fsync protects only
  against the machine itself crashing — which takes down all three — while a killed ZooKeeper's
  writes are already in the page cache. Without it, a busy disk stalls every write for the
  slowest fsync. ``preAllocSize`` is 4 MB instead of 64 MB per log file, and autopurge keeps
  three snapshots, so a long-lived test ensemble does not fill the disk.

**Measured** (2-core machine shared with other test runs, loopback, tick 200 ms;
``tests/cli/test_ensemble.py`` prints them):

- starting three servers from nothing until all report leader/follower: 1.2–1.5 s on a quiet
  machine, 1.9–2.6 s beside other test runs (1.7 s for ``python -m tepui.cli.ensemble start``
  with its interpreter start-up); a second ``start`` that finds them running: 0.1 s.
- SIGKILL of the quorum leader: a new leader after 0.36–0.66 s; a kazoo client (2 s session,
  given the whole connect string) writing in a loop paused 0.53–1.05 s, then wrote on with the
  same session (SUSPENDED then CONNECTED, never LOST). The followers drop their clients while
  they elect, so every client sees a short SUSPENDED even when its own server survives.

Only processes this class started are ever signalled: each server's pid is recorded in its pid
file, and a pid is signalled only if ``/proc/<pid>/cmdline`` still names ``QuorumPeerMain`` and
that server's ``zoo.cfg`` (a recycled pid belongs to someone else). Servers started by an earlier
process (``scripts/test`` leaves its ensemble running for the next run, like its standalone
ZooKeeper) are reused when they answer ``ruok``; a port held by anything else is an error naming
the port and how to find its owner.

Command line (what ``scripts/test`` runs)::

    python -m tepui.cli.ensemble start|stop|status --dir DIR [--base-port 21811] [--servers 3]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
JAVA_DIR = Path("/usr/share/java")
# The standalone server's classpath in scripts/test: zookeeper.jar's manifest names the rest
# (jute, netty, slf4j-api, metrics, ...); without the two log jars the server logs nothing.
ZK_JARS = (JAVA_DIR / "zookeeper.jar", JAVA_DIR / "slf4j-log4j12.jar", JAVA_DIR / "log4j-1.2.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# A small, quickly started JVM, as for the standalone server: three of them must fit on a test
# machine beside everything else (about 70 MB each).
JVM_FLAGS = ("-Xms32m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Dzookeeper.admin.enableServer=false")
QUORUM_OFFSET = 10
ELECTION_OFFSET = 20
MAX_SERVERS = 9  # the peer ports of server i sit at base+10+i and base+20+i
SYNC_LIMIT_TICKS = 10
INIT_LIMIT_TICKS = 50
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
SERVING_MODES = ("leader", "follower")

Progress = Callable[[str], None]


class EnsembleError(Exception):
    """The ensemble cannot be started or used; the message says what to do."""


def installed() -> bool:
    """Java and the ZooKeeper server jars (Debian's ``zookeeperd``) are present."""
    return shutil.which("java") is not None and all(j.is_file() for j in ZK_JARS)


@dataclass(frozen=True)
class ServerPorts:
    client: int
    quorum: int
    election: int


def server_ports(base_port: int, index: int) -> ServerPorts:
    return ServerPorts(base_port + index, base_port + QUORUM_OFFSET + index,
                       base_port + ELECTION_OFFSET + index)


def zoo_cfg(data_dir: Path, base_port: int, servers: int, index: int, tick_ms: int,
            client_address: str = HOST) -> str:
    """Server ``index``'s configuration (the module docstring says why each value)."""
    lines = [
        f"tickTime={tick_ms}",
        f"initLimit={INIT_LIMIT_TICKS}",
        f"syncLimit={SYNC_LIMIT_TICKS}",
        f"dataDir={data_dir}",
        f"clientPortAddress={client_address}",
        f"clientPort={server_ports(base_port, index).client}",
        f"minSessionTimeout={2 * tick_ms}",
        "maxSessionTimeout=60000",
        "admin.enableServer=false",
        "4lw.commands.whitelist=ruok,srvr,mntr,stat",
        "forceSync=no",
        "preAllocSize=4096",
        "autopurge.snapRetainCount=3",
        "autopurge.purgeInterval=1",
    ]
    for i in range(servers):
        p = server_ports(base_port, i)
        lines.append(f"server.{i + 1}={HOST}:{p.quorum}:{p.election}")
    return "\n".join(lines) + "\n"


def log4j_properties(log_file: Path) -> str:
    return "\n".join([
        "log4j.rootLogger=INFO, FILE",
        "log4j.appender.FILE=org.apache.log4j.RollingFileAppender",
        f"log4j.appender.FILE.File={log_file}",
        "log4j.appender.FILE.MaxFileSize=10MB",
        "log4j.appender.FILE.MaxBackupIndex=3",
        "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n",
    ]) + "\n"


def four_letter(port: int, command: str, timeout: float = 2.0, host: str = HOST) -> str | None:
    """ZooKeeper's answer to a four-letter word on ``host``:``port``, or None if none came."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(command.encode())
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode(errors="replace")


def server_mode(port: int, host: str = HOST) -> str | None:
    """``leader``/``follower`` once the server serves; ``standalone``; None if not serving."""
    answer = four_letter(port, "srvr", host=host)
    for line in (answer or "").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


def port_free(port: int, host: str = HOST) -> bool:
    """Nothing listens on ``host``:``port`` (SO_REUSEADDR, as Java's ServerSocket: a socket in
    TIME_WAIT from an earlier run does not hold the port)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pid_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class LocalEnsemble:
    """``servers`` ZooKeeper servers on 127.0.0.1 sharing ``state_dir``; see the module docstring.

    ``client_address``: the address the servers serve clients on (the quorum and election ports
    stay on 127.0.0.1). bench/chaos.py --masters 3 gives an address in 10.200.0.0/16 that masters
    in their own network namespaces reach through their veths, so a master can be cut off from
    ZooKeeper alone (an iptables DROP in its namespace) while its agents still reach it."""

    def __init__(self, state_dir: Path, base_port: int = 21811, servers: int = 3, tick_ms: int = 200,
                 client_address: str = HOST) -> None:
        if not 1 <= servers <= MAX_SERVERS:
            raise ValueError(f"servers must be 1..{MAX_SERVERS}, not {servers}")
        if not 1024 <= base_port <= 65535 - ELECTION_OFFSET - servers:
            raise ValueError(f"base_port {base_port} leaves no room for the peer ports (base+10.., base+20..)")
        self.state_dir = Path(state_dir)
        self.base_port = base_port
        self.servers = servers
        self.tick_ms = tick_ms
        self.client_address = client_address
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    installed = staticmethod(installed)

    # ------------------------------------------------------------------ addresses
    @property
    def connect_string(self) -> str:
        return ",".join(f"{self.client_address}:{self.ports(i).client}" for i in range(self.servers))

    def zk_url(self, path: str = "/tepui") -> str:
        if not path.startswith("/"):
            raise ValueError(f"a ZooKeeper path starts with '/': {path!r}")
        return f"zk://{self.connect_string}{path}"

    def ports(self, index: int) -> ServerPorts:
        return server_ports(self.base_port, index)

    def server_dir(self, index: int) -> Path:
        return self.state_dir / f"server{index + 1}"

    def _cfg_path(self, index: int) -> Path:
        return self.server_dir(index) / "conf" / "zoo.cfg"

    def _pid_file(self, index: int) -> Path:
        return self.server_dir(index) / "zookeeper.pid"

    def log_files(self, index: int) -> tuple[Path, Path]:
        """(stdout/stderr of the JVM, ZooKeeper's log4j log) of server ``index``."""
        d = self.server_dir(index)
        return d / "zookeeper.out", d / "zookeeper.log"

    # ------------------------------------------------------------------ our processes
    def pid(self, index: int) -> int | None:
        """The pid of server ``index`` if it is running and ours (pid file + cmdline check)."""
        try:
            pid = int(self._pid_file(index).read_text().strip())
        except (OSError, ValueError):
            return None
        child = self._children.get(index)
        if child is not None and child.pid == pid:
            # Our own child: its exit status is exact. (Its /proc cmdline can read empty for a
            # moment after the exec, which made a just-started server look like someone else's.)
            return pid if child.poll() is None else None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if MAIN_CLASS.encode() not in cmdline or str(self._cfg_path(index)).encode() not in cmdline:
            return None  # the pid was recycled: someone else's process
        return pid if _pid_running(pid) else None

    def mode(self, index: int) -> str | None:
        return server_mode(self.ports(index).client, self.client_address)

    def modes(self) -> list[str | None]:
        return [self.mode(i) for i in range(self.servers)]

    def leader_index(self) -> int:
        """Which server is the quorum leader now (its ``srvr`` says ``Mode: leader``)."""
        modes = self.modes()
        if "leader" in modes:
            return modes.index("leader")
        raise EnsembleError(f"no server of {self.connect_string} is the quorum leader (modes: {modes})")

    def serving(self) -> bool:
        """Every server is in the quorum (leader or follower)."""
        return all(m in SERVING_MODES for m in self.modes())

    # ------------------------------------------------------------------ start
    def start(self, progress: Progress | None = None, timeout: float = START_TIMEOUT) -> None:
        """Start the servers not already running (ours, answering ``ruok``), then wait until all
        of them serve in the quorum. Idempotent."""
        say = progress or (lambda _msg: None)
        if not installed():
            raise EnsembleError("java or the ZooKeeper jars are missing "
                                f"({', '.join(map(str, ZK_JARS))}): apt-get install zookeeperd")
        with self._locked():
            for i in range(self.servers):
                self._start_one(i, say)
        self.wait_serving(timeout, say)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One starter or stopper at a time per state directory: two ``scripts/test`` runs
        starting the ensemble together would otherwise both start server 1, and the loser's pid
        file would name a process that failed to bind."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "ensemble.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def start_server(self, index: int, progress: Progress | None = None, timeout: float = START_TIMEOUT) -> None:
        """(Re)start server ``index`` (after :meth:`kill`) and wait until it serves in the quorum."""
        say = progress or (lambda _msg: None)
        with self._locked():
            self._start_one(index, say)
        self._wait(lambda: self.mode(index) in SERVING_MODES, timeout, [index],
                   f"server {index + 1} did not join the quorum")

    def wait_serving(self, timeout: float = START_TIMEOUT, progress: Progress | None = None) -> None:
        """Wait until every server reports leader or follower."""
        t0 = time.monotonic()
        self._wait(self.serving, timeout, list(range(self.servers)), "the quorum did not form")
        if progress:
            progress(f"quorum serving after {time.monotonic() - t0:.1f} s, "
                     f"leader server {self.leader_index() + 1} "
                     f"({self.client_address}:{self.ports(self.leader_index()).client})")

    def _wait(self, done: Callable[[], bool], timeout: float, watched: Sequence[int], what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            for i in watched:
                if self.pid(i) is None:
                    raise EnsembleError(f"{what}: server {i + 1} {self._exit_status(i)}; {self._see_logs(i)}")
            if time.monotonic() > deadline:
                raise EnsembleError(f"{what} within {timeout:.0f} s (modes: {self.modes()}); "
                                    f"{self._see_logs(watched[0])}")
            time.sleep(0.1)

    def _exit_status(self, index: int) -> str:
        child = self._children.get(index)
        code = child.poll() if child is not None else None
        return f"exited with status {code}" if code is not None else "is not running"

    def _see_logs(self, index: int) -> str:
        out, log = self.log_files(index)
        return f"see {log} and {out}"

    def _start_one(self, index: int, say: Progress) -> None:
        ports = self.ports(index)
        name = f"server {index + 1} ({self.client_address}:{ports.client})"
        pid = self.pid(index)
        if pid is not None:
            say(f"{name}: already running, pid {pid}")
            return
        if four_letter(ports.client, "ruok", host=self.client_address) is not None \
                or not port_free(ports.client, self.client_address):
            raise EnsembleError(
                f"port {self.client_address}:{ports.client} (client port of server {index + 1}) is held by a process this ensemble "
                f"did not start (no pid in {self._pid_file(index)}); find it with: "
                f"ss -ltnp 'sport = :{ports.client}' ; free the port or choose another --base-port")
        for what, port in (("quorum", ports.quorum), ("election", ports.election)):
            if not port_free(port):
                raise EnsembleError(
                    f"port {HOST}:{port} ({what} port of server {index + 1}) is in use; find it with: "
                    f"ss -ltnp 'sport = :{port}' ; free the port or choose another --base-port")
        d = self.server_dir(index)
        conf, data = d / "conf", d / "data"
        conf.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        out, log = self.log_files(index)
        self._cfg_path(index).write_text(zoo_cfg(data, self.base_port, self.servers, index, self.tick_ms,
                                                 self.client_address))
        (conf / "log4j.properties").write_text(log4j_properties(log))
        (data / "myid").write_text(f"{index + 1}\n")
        java = shutil.which("java") or "java"
        classpath = ":".join([str(conf), *map(str, ZK_JARS)])
        cmd = [java, *JVM_FLAGS, f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
               "-cp", classpath, MAIN_CLASS, str(self._cfg_path(index))]
        with open(out, "ab") as out_f:
            # Its own session and cwd /, like scripts/test's daemons: a Ctrl-C at the terminal that
            # started it does not reach it, and the shared ensemble outlives the starting process.
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out_f, stderr=subprocess.STDOUT,
                                     cwd="/", start_new_session=True, close_fds=True)
        self._children[index] = child
        self._pid_file(index).write_text(f"{child.pid}\n")
        say(f"{name}: started pid {child.pid}")

    # ------------------------------------------------------------------ stop / kill
    def kill(self, index: int) -> None:
        """SIGKILL server ``index`` (ours only) and wait until it is gone — chaos tests."""
        pid = self.pid(index)
        if pid is None:
            raise EnsembleError(f"server {index + 1} is not running (or not ours)")
        os.kill(pid, signal.SIGKILL)
        self._wait_gone(index, pid, STOP_TIMEOUT)

    def stop(self, progress: Progress | None = None, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every server of ours and wait for them to exit (SIGKILL after ``timeout``)."""
        say = progress or (lambda _msg: None)
        with self._locked():
            self._stop_locked(say, timeout)

    def _stop_locked(self, say: Progress, timeout: float) -> None:
        pids = {i: p for i in range(self.servers) if (p := self.pid(i)) is not None}
        for i, pid in pids.items():
            os.kill(pid, signal.SIGTERM)
        for i, pid in pids.items():
            if not self._wait_gone(i, pid, timeout, escalate=True):
                say(f"server {i + 1}: pid {pid} ignored SIGTERM for {timeout:.0f} s, killed")
            else:
                say(f"server {i + 1}: pid {pid} stopped")
        for i in range(self.servers):
            self._pid_file(i).unlink(missing_ok=True)

    def _wait_gone(self, index: int, pid: int, timeout: float, escalate: bool = False) -> bool:
        """Wait for ``pid`` to exit (reaping it if it is our child); True if it did in time."""
        deadline = time.monotonic() + timeout
        child = self._children.get(index)
        own_child = child is not None and child.pid == pid

        def gone() -> bool:
            return child.poll() is not None if own_child and child else not _pid_running(pid)

        in_time = True
        while not gone():
            if time.monotonic() > deadline:
                if not escalate:
                    raise EnsembleError(f"server {index + 1} (pid {pid}) did not exit within {timeout:.0f} s")
                if in_time:
                    os.kill(pid, signal.SIGKILL)
                    in_time = False
            time.sleep(0.05)
        if own_child:
            self._children.pop(index, None)  # reaped by poll()
        return in_time

    # ------------------------------------------------------------------ report
    def describe(self) -> list[str]:
        """One line per server: its client port, our pid and its mode."""
        lines = []
        for i in range(self.servers):
            pid = self.pid(i)
            lines.append(f"server {i + 1} {self.client_address}:{self.ports(i).client}: "
                         f"{'pid ' + str(pid) if pid else 'not running'}, mode {self.mode(i) or '-'}")
        return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tepui.cli.ensemble",
                                     description="A local ZooKeeper ensemble on 127.0.0.1.")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--dir", required=True, type=Path, help="state directory (configs, data, logs, pids)")
    parser.add_argument("--base-port", type=int, default=21811, help="first client port (default 21811)")
    parser.add_argument("--servers", type=int, default=3, help="number of servers (default 3)")
    parser.add_argument("--tick-ms", type=int, default=200, help="ZooKeeper tickTime in ms (default 200)")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT, help="seconds to wait for the quorum")
    args = parser.parse_args(argv)
    ens = LocalEnsemble(args.dir, args.base_port, args.servers, args.tick_ms)

    def say(msg: str) -> None:
        print(msg, flush=True)

    try:
        if args.action == "start":
            ens.start(say, timeout=args.timeout)
            say(f"ensemble serving: zk://{ens.connect_string}"
                f" (leader server {ens.leader_index() + 1}; state in {ens.state_dir})")
        elif args.action == "stop":
            ens.stop(say)
            say(f"ensemble stopped: {ens.connect_string} (state kept in {ens.state_dir})")
        else:
            for line in ens.describe():
                say(line)
            if not ens.serving():
                say(f"ensemble not serving: zk://{ens.connect_string}")
                return 1
            say(f"ensemble serving: zk://{ens.connect_string} (leader server {ens.leader_index() + 1})")
    except (EnsembleError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
