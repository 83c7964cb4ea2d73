"""``tepui up --ha``: the local cluster with no single point of failure — three masters on a
ZooKeeper ensemble, agents and frameworks following the leader, two instances of each framework.

What it starts, in order:

1. **ZooKeeper.** ``--zk zk://h1:p1,h2:p2,h3:p3/path`` names an ensemble that runs already; it is
   used and never started or stopped here. Without it, when the ZooKeeper server is installed
   (Debian's ``zookeeperd``: :func:`tepui.cli.ensemble.installed`), a local 3-server ensemble
   under ``<state dir>/zookeeper`` on ports derived from ``--port`` (cli/ha_ports.py) — reused if
   it runs already (an earlier ``tepui up --ha`` killed before it could stop it), stopped on exit.
   Its data stays in the state dir: the masters' registry and the frameworks' stores live there,
   so the next ``tepui up --ha`` finds the agents, apps and jobs again, as the SQLite files do for
   one master.
2. **Three masters** (``tepui master --zk``), one key store and one HTTP token (cli/up_security.py):
   any of them may lead, and a client's configured master key is every master's key.
3. **Agents** given ``--master zk://...``: they register with whichever master serves, and move
   at once when ZooKeeper names another.
4. **The services, batch and cron frameworks, two instances each** (``--zk``): one leads, the
   other answers 307 to it and takes over when it is lost. Two, not three: a standby costs its
   process's memory and nothing else (measured idle, docs below), and one standby already
   survives the loss of any one process; the masters are three because their election must
   outlive a partition, which the frameworks leave to ZooKeeper.

Supervision is ``tepui up``'s (cli/supervision.py): a master or framework instance that exits —
one that lost its leadership exits with status 1, by design (Mesos, Marathon) — is started again
with backoff, and joins the election as a standby; the progress output says so, and says which
master and which instances lead whenever that changes. The client configuration names
``master: zk://...`` and no ``master_http``, so ``tepui apps``/``jobs``/``cron``/``state`` ask
ZooKeeper which master serves rather than trust one that may be a standby now.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import click

from tepui.cli.ensemble import port_free
from tepui.cli.ha_ports import FRAMEWORKS, HaPortPlan
from tepui.cli.up import Cluster

ZK_PATH = "/tepui"
AS_STANDBY = "as a standby (it joins the election again)"
WATCH_INTERVAL = 0.5  # seconds between two looks at who leads, while supervising
ZK_CHECK_TIMEOUT = 10.0  # seconds for a --zk ensemble to answer before `tepui up --ha` gives up


def _json(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
            return body if isinstance(body, dict) else None
    except (OSError, ValueError):  # URLError, a 307 or 503 (HTTPError) and bad JSON alike
        return None


def _port_of(url: str) -> int | None:
    try:
        return urllib.parse.urlsplit(url).port
    except ValueError:
        return None


@dataclass(frozen=True)
class Leaders:
    """Who serves, as ZooKeeper says now: the master and each framework's instance (None: nobody)."""

    master: Any = None  # LeaderInfo | None
    frameworks: dict[str, Any] = field(default_factory=dict)


def _quiet_kazoo() -> None:
    """kazoo logs every lost connection through the root logger's last resort, which ``tepui up``
    does not configure: ensemble hiccups are not the user's to read here (the children log them)."""
    kazoo = logging.getLogger("kazoo")
    if not kazoo.handlers:
        kazoo.addHandler(logging.NullHandler())
        kazoo.propagate = False


class LeaderWatch:
    """Reads who leads from ZooKeeper, on one session for the life of ``tepui up`` (a read is
    two round trips on loopback, a fraction of a millisecond)."""

    def __init__(self, zk_url: str) -> None:
        from tepui.sdk.zookeeper import connect, parse_zk_url

        _quiet_kazoo()
        self.url = parse_zk_url(zk_url)
        self.client = connect(self.url)

    def read(self) -> Leaders:
        from tepui.sdk.leadership import FRAMEWORKS as FRAMEWORKS_PART, MASTERS, serving_leader

        master = serving_leader(self.client, self.url.child(MASTERS))
        return Leaders(master, {name: serving_leader(self.client, self.url.child(FRAMEWORKS_PART, name, "leader"))
                                for name in FRAMEWORKS})

    def close(self) -> None:
        self.client.stop()
        self.client.close()


def missing_zookeeper_message(state_dir: str) -> str:
    return ("`tepui up --ha` needs a ZooKeeper ensemble, and none was given nor can be started here: the ZooKeeper "
            "server is not installed (java and /usr/share/java/zookeeper.jar). Either install it — as root, "
            "`apt-get install zookeeperd` (Debian, Ubuntu; `scripts/test` does too) — and run `tepui up --ha` again: "
            f"it then starts a local 3-server ensemble in {state_dir}/zookeeper and stops it on exit; or give an "
            "ensemble that runs: `tepui up --ha --zk zk://HOST1:PORT1,HOST2:PORT2,HOST3:PORT3/tepui`.")


class HaCluster(Cluster):
    """Three masters, agents and two instances of each framework on ZooKeeper (module docstring).
    ``ensemble``: the local ensemble this ``tepui up`` runs (None with ``--zk``)."""

    def __init__(self, state_dir: str, agents: int, plan: HaPortPlan, zk_url: str, ensemble: Any, console: Any,
                 **kwargs: Any) -> None:
        super().__init__(state_dir, agents, plan.masters[0].port, plan.masters[0].http_port, console, **kwargs)
        self.plan, self.zk_url, self.ensemble = plan, zk_url, ensemble
        self.watcher: LeaderWatch | None = None
        self.seen: dict[str, tuple[str, int] | None] = {}  # role -> (leader id, epoch) as last reported
        self._next_watch = 0.0

    # --- starting --------------------------------------------------------------------------------

    def start(self, agent_resources: str | None, agent_args: tuple[str, ...] = ()) -> None:
        from tepui.cli.up import agent_ports

        allow = [arg for i in self.plan.instances for arg in ("--proxy-allow", f"127.0.0.1:{i.http_port}")]
        security = self.security.master_args if self.security else ["--insecure"]
        for m in self.plan.masters:
            self._spawn(m.name, ["master", "--ip", "127.0.0.1", "--port", str(m.port), "--http-port", str(m.http_port),
                                 "--zk", self.zk_url, "--acls", self._local_acls(), *allow, *security],
                        "", AS_STANDBY)
        for i in range(1, self.agent_count + 1):
            resources = agent_resources or ""
            if "ports" not in resources:
                resources = ";".join(filter(None, [resources, agent_ports(i, self.agent_count)]))
            args = ["agent", "--master", self.zk_url, "--work-dir", os.path.join(self.state_dir, f"agent-{i}"),
                    "--hostname", f"agent-{i}", "--http-port", "0", "--resources", resources]
            args += self.security.agent_args(i) if self.security else ["--insecure"]
            self._spawn(f"agent-{i}", [*args, *agent_args], "its work dir")

    def _start_framework(self, framework: str, command: list[str], extra: list[str]) -> None:
        token = ["--http-token-file", self.security.token_file] if self.security is not None else ["--insecure"]
        for instance in self.plan.instances_of(framework):
            self._spawn(instance.name, [*command, "--master", self.zk_url, "--zk", self.zk_url,
                                        "--http-port", str(instance.http_port), *token, *extra], "", AS_STANDBY)

    def start_services(self) -> None:
        self._start_framework("services", ["services"], [])

    def start_batch(self) -> None:
        self._start_framework("batch", ["batch"], [])

    def start_cron(self) -> None:
        # The batch framework through the first master's proxy: a standby answers 307 to the
        # leader's, which the cron framework follows (frameworks/cron/batch_link.py), and while
        # that master restarts a fire waits and is retried under its id, as for any unreachable
        # batch API. (Without --batch it would look the leader up once, when elected, and keep
        # that master's URL after a failover.)
        self._start_framework("cron", ["cron", "serve"],
                              ["--batch", f"{self.plan.masters[0].http}/frameworks/batch/v1"])

    # --- who leads -----------------------------------------------------------------------------

    def name_of(self, info: Any) -> str:
        """The child a published LeaderInfo is (by its HTTP port), else its id."""
        port = _port_of(info.http or "")
        for m in self.plan.masters:
            if m.http_port == port:
                return m.name
        for i in self.plan.instances:
            if i.http_port == port:
                return i.name
        return str(info.id)

    def leaders(self) -> Leaders:
        try:
            if self.watcher is None:
                self.watcher = LeaderWatch(self.zk_url)
            return self.watcher.read()
        except Exception:  # noqa: BLE001  # ZooKeeper busy or reconnecting: nobody known this round
            return Leaders()

    def watch(self) -> None:
        """Reports every change of leader, at most every WATCH_INTERVAL."""
        now = time.monotonic()
        if now < self._next_watch:
            return
        self._next_watch = now + WATCH_INTERVAL
        for line in self.changes(self.leaders()):
            self._say(line)

    def changes(self, leaders: Leaders) -> list[str]:
        """The lines that say what changed since the last call (the first call sets the baseline)."""
        lines = []
        for role, info in (("master", leaders.master), *leaders.frameworks.items()):
            now = None if info is None else (info.id, info.epoch)
            before = self.seen.get(role, now)
            self.seen[role] = now
            if now == before or now is None:
                continue  # no change, or nobody serves for a moment (an election): said once someone does
            what = "the leading master" if role == "master" else f"the {role} framework's leader"
            lines.append(f"{self.name_of(info)} is {what} now ({info.http}, epoch {info.epoch})")
        return lines

    # --- readiness -----------------------------------------------------------------------------

    def wait_ready(self, timeout: float, stop_requested: Callable[[], bool] = lambda: False) -> None:
        instances_total = len(self.plan.instances)
        with self.progress() as progress:
            masters_task = progress.add_task("masters answering", total=len(self.plan.masters))
            leader_task = progress.add_task("a master leading", total=1)
            agents_task = progress.add_task("agents registered", total=self.agent_count)
            instances_task = progress.add_task("framework instances answering", total=instances_total)
            frameworks_task = progress.add_task("frameworks subscribed (services, batch, cron)", total=len(FRAMEWORKS))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not stop_requested():
                self.fail_if_one_died()
                answering = sum(_json(f"{m.http}/health") is not None for m in self.plan.masters)
                progress.update(masters_task, completed=answering)
                # /v1/health: a leader's API is under /v1; a standby answers there too
                instances = sum(_json(f"{i.http}/v1/health") is not None for i in self.plan.instances)
                progress.update(instances_task, completed=instances)
                leaders = self.leaders()
                state = _json(f"{leaders.master.http}/state") if leaders.master is not None else None
                progress.update(leader_task, completed=int(state is not None))
                if state is not None:
                    progress.update(agents_task, completed=state["activated_slaves"])
                    connected = {f.get("name") for f in state.get("frameworks", []) if f.get("connected")}
                    subscribed = [name for name in FRAMEWORKS
                                  if name in connected and leaders.frameworks.get(name) is not None]
                    progress.update(frameworks_task, completed=len(subscribed))
                    if (state["activated_slaves"] >= self.agent_count and len(subscribed) == len(FRAMEWORKS)
                            and answering == len(self.plan.masters) and instances == instances_total):
                        self.changes(leaders)  # the baseline: later changes are reported
                        return
                time.sleep(0.1)
        if not stop_requested():
            raise click.ClickException(
                f"the cluster was not ready within {timeout:g} s; see the logs in {self.state_dir}")

    # --- what the user is told -----------------------------------------------------------------

    def summary(self) -> list[str]:
        """The lines after "Tepui is up": who leads, the standbys, the ensemble."""
        leaders = self.leaders()
        lines = []
        master = leaders.master
        if master is not None:
            standbys = [f"{m.name} ({m.http})" for m in self.plan.masters if m.name != self.name_of(master)]
            lines.append(f"  leading master: {self.name_of(master)} (id {master.id}, {master.http}, epoch {master.epoch}); "
                         f"standbys: {', '.join(standbys)} (they answer 307 to the leader)")
        for name in FRAMEWORKS:
            leader = leaders.frameworks.get(name)
            lead = self.name_of(leader) if leader is not None else "none yet"
            others = [f"{i.name} (:{i.http_port})" for i in self.plan.instances_of(name) if i.name != lead]
            lines.append(f"  {name}: leader {lead}{' (' + leader.http + ')' if leader is not None else ''}, "
                         f"standby {', '.join(others)}")
        where = (f"a local ensemble, state in {self.ensemble.state_dir}, stopped on exit" if self.ensemble is not None
                 else "given with --zk: neither started nor stopped here")
        lines.append(f"  ZooKeeper: {self.zk_url} ({where})")
        return lines

    def announce(self, agents: int) -> None:
        """What ``tepui up --ha`` prints once the cluster is up."""
        from tepui.cli.up import print_try

        say, masters = self.console.print, self.plan.masters
        say(f"[bold green]Tepui is up[/bold green], highly available: {len(masters)} masters (ZeroMQ "
            f"127.0.0.1:{masters[0].port}-{masters[-1].port}, HTTP {masters[0].http_port}-{masters[-1].http_port}), "
            f"{agents} agent(s), {len(self.plan.instances_of(FRAMEWORKS[0]))} instances of each framework; logs in {self.state_dir}", soft_wrap=True)
        for line in self.summary():
            say(line, markup=False, highlight=False, soft_wrap=True)
        print_try(self.console, self.http_base())
        say(f"  clients follow the leader: the client configuration ({self.security.config_path}) names "
            f"master: {self.zk_url}; `tepui state` shows which master leads", soft_wrap=True)
        say("  stop: Ctrl-C     (a master or framework instance that exits, e.g. after losing its leadership, "
            "is restarted as a standby; docs/operations.md, \"High availability\")", soft_wrap=True)

    def http_base(self) -> str:
        master = self.leaders().master
        return str(master.http) if master is not None else self.plan.masters[0].http

    # --- stopping ------------------------------------------------------------------------------

    def stop(self) -> None:
        """The standbys first (masters and framework instances whose leader is known and is
        another): stopped after their leader, each would be elected and start taking over (claim
        an epoch, recover, subscribe) only to be stopped. Then what ``Cluster.stop`` stops, in its
        order (the leading master last), then the ZooKeeper session, then the local ensemble (last:
        the masters and frameworks leave their elections through it)."""
        try:
            leaders = self.leaders()
            leading = {role: self.name_of(info) for role, info in (("master", leaders.master),
                                                                   *leaders.frameworks.items()) if info is not None}
            self.stop_group([c for c in self.children if c.kind in leading and c.name != leading[c.kind]],
                            5.0, signal.SIGTERM)
            super().stop()
        finally:
            if self.watcher is not None:
                self.watcher.close()
                self.watcher = None
            if self.ensemble is not None:
                self.ensemble.stop(lambda line: self.console.print(f"  zookeeper {line}", markup=False,
                                                                   highlight=False))


def check_ports(plan: HaPortPlan) -> None:
    """Every port a master or framework instance will bind is free (the ensemble checks its own)."""
    for number, what in plan.process_ports():
        if not port_free(number):
            raise click.ClickException(
                f"port {number} ({what}) is already in use. Is another `tepui up` running? Stop it, or "
                "choose other ports with --port and --http-port (docs/operations.md, \"High availability\").")


def choose_ensemble(zk: str | None, state_dir: str, plan: HaPortPlan, say: Any) -> tuple[str, Any]:
    """(the zk:// URL to use, the LocalEnsemble started here or None): see the module docstring."""
    from tepui.cli.ensemble import EnsembleError, LocalEnsemble, installed

    if zk:
        from tepui.sdk.zookeeper import ZkUnavailable, connect, parse_zk_url

        try:
            url = str(parse_zk_url(zk))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--zk") from None
        try:
            _quiet_kazoo()
            client = connect(url, connect_timeout=ZK_CHECK_TIMEOUT)
        except ZkUnavailable as exc:
            raise click.ClickException(f"--zk {zk}: {exc}") from None
        client.stop()
        client.close()
        return url, None
    if not installed():
        raise click.ClickException(missing_zookeeper_message(state_dir))
    ensemble = LocalEnsemble(Path(state_dir) / "zookeeper", plan.ensemble_base)
    try:
        ensemble.start(lambda line: say(f"  zookeeper {line}"))
    except EnsembleError as exc:
        ensemble.stop()  # the servers that did start
        raise click.ClickException(f"cannot start the local ZooKeeper ensemble: {exc}") from None
    return ensemble.zk_url(ZK_PATH), ensemble
