"""``tepui up``: a whole local cluster — a master and N agents — as child processes.

A supervisor, deliberately without Twisted: start the children, wait (with progress) until
every agent has registered, then keep them running until Ctrl-C or SIGTERM. A child that fails
while the cluster runs is restarted on its own state, as systemd's ``Restart=on-failure`` would
(the policy, pure, is ``cli/supervision.py``): an agent on its work dir, so it recovers its
checkpointed tasks and re-registers under its id; the services framework on its store, so it
fails over to its framework id and launches no duplicate; the master on its registry (what a
supervised master gets: agents and frameworks re-register with it). Only a crash loop stops the
cluster. Before the cluster is up, an exit is a configuration error and stops it at once:
restarting would only delay the message by the whole backoff.

Stopping is ordered: agents first (SIGUSR1: each ends its tasks and unregisters — SIGTERM would
leave the tasks running for the agent's next start), then the master. Children get
``PR_SET_PDEATHSIG`` (SIGUSR1 for agents) so that even a SIGKILLed ``tepui up`` leaves no orphan
processes behind.

With ``--ha`` the cluster is three masters on ZooKeeper with two instances of each framework
(``cli/up_ha.py``; its ports: ``cli/ha_ports.py``), under the same supervision.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tepui.cli.ensemble import port_free
from tepui.cli.supervision import GiveUp, History, Restart, RestartPolicy, describe_exit

PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Runs in the child before exec: signal us when the supervisor dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)
    except OSError:
        pass
    os.setpgid(0, 0)  # Ctrl-C in the terminal reaches the supervisor only; it stops us in order


def _agent_dies_with_parent() -> None:
    _die_with_parent(signal.SIGUSR1)  # an agent's "stop your tasks too"


def _state(http_port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/state", timeout=1) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Child:
    """One supervised process: how to start it again, and where it stands."""

    name: str
    argv: list[str]
    log_path: str
    resumes_from: str  # what a restart reuses, in words ("its work dir"); "" for none
    preexec: Callable[[], None]
    process: subprocess.Popen[bytes]
    history: History
    pending: Restart | None = None  # a restart waiting for its time
    stopped: bool = False  # exited cleanly, and left so
    # How a restart brings it back, when not "on <resumes_from>": an HA master or framework
    # instance comes back "as a standby (it joins the election again)".
    restarts_as: str = ""

    @property
    def kind(self) -> str:
        """``master``, ``agent``, ``services``, ...: the name without its instance number."""
        base, _, number = self.name.rpartition("-")
        return base if base and number.isdigit() else self.name

    def restart_phrase(self) -> str:
        return self.restarts_as or (f"on {self.resumes_from}" if self.resumes_from else "")


@dataclass(frozen=True)
class Ending:
    """Why supervision ended before the user asked: what to print, and whether it is a failure."""

    message: str
    failed: bool


def _popen(argv: list[str], log_path: str, preexec: Callable[[], None]) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                close_fds=True, preexec_fn=preexec)


class Cluster:
    def __init__(self, state_dir: str, agents: int, port: int, http_port: int, console: Console,
                 policy: RestartPolicy = RestartPolicy(), clock: Callable[[], float] = time.monotonic) -> None:
        self.state_dir, self.agent_count, self.port, self.http_port = state_dir, agents, port, http_port
        self.console, self.policy, self.clock = console, policy, clock
        self.children: list[Child] = []
        self.security: Any = None  # cli/up_security.LocalSecurity: keys, token, client config

    def _spawn(self, name: str, args: list[str], resumes_from: str, restarts_as: str = "") -> None:
        preexec = _agent_dies_with_parent if name.startswith("agent") else _die_with_parent
        self.add(name, [sys.executable, "-m", "tepui.cli", *args], resumes_from, preexec, restarts_as)

    def add(self, name: str, argv: list[str], resumes_from: str = "",
            preexec: Callable[[], None] = _die_with_parent, restarts_as: str = "") -> Child:
        """Starts ``argv`` as the supervised child ``name``, its output in ``<state dir>/<name>.log``."""
        log_path = os.path.join(self.state_dir, f"{name}.log")
        child = Child(name, argv, log_path, resumes_from, preexec, _popen(argv, log_path, preexec),
                      History(self.clock()), restarts_as=restarts_as)
        self.children.append(child)
        return child

    def services_port(self) -> int:
        return self.http_port + 10

    def batch_port(self) -> int:
        return self.http_port + 11

    def cron_port(self) -> int:
        return self.http_port + 12

    def start(self, agent_resources: str | None, agent_args: tuple[str, ...] = ()) -> None:
        """``agent_args`` go last on every agent's command line: a way to pass any agent flag
        (``--no-strict`` to recover from a damaged checkpoint), and for a flag given once the
        last one counts, so they override what is set here too."""
        self._spawn("master", ["master", "--ip", "127.0.0.1", "--port", str(self.port),
                               "--http-port", str(self.http_port),
                               "--work-dir", os.path.join(self.state_dir, "master"),
                               "--acls", self._local_acls(),
                               # the services framework's API is on loopback, which the proxy
                               # relays to only where allowed (issue 15: relay loops)
                               "--proxy-allow", f"127.0.0.1:{self.services_port()}",
                               "--proxy-allow", f"127.0.0.1:{self.batch_port()}",
                               "--proxy-allow", f"127.0.0.1:{self.cron_port()}",
                               *(self.security.master_args if self.security else ["--insecure"])],
                    "its registry")
        for i in range(1, self.agent_count + 1):
            args = ["agent", "--master", f"127.0.0.1:{self.port}",
                    "--work-dir", os.path.join(self.state_dir, f"agent-{i}"), "--hostname", f"agent-{i}"]
            resources = agent_resources or ""
            if "ports" not in resources:
                # The agents share this machine: disjoint port ranges, or two tasks on two
                # "different" agents would be given the same host port.
                resources = ";".join(filter(None, [resources, agent_ports(i, self.agent_count)]))
            args += ["--resources", resources]
            args += self.security.agent_args(i) if self.security else ["--insecure"]
            self._spawn(f"agent-{i}", [*args, *agent_args], "its work dir")

    def start_services(self) -> None:
        """The services framework (`tepui apps ...`), with its store in the state dir so that a
        restarted `tepui up` finds its apps again; the master proxies its API."""
        args = ["services", "--master", f"127.0.0.1:{self.port}", "--http-port", str(self.services_port()),
                "--store", os.path.join(self.state_dir, "services.sqlite")]
        if self.security is not None:
            args += ["--http-token-file", self.security.token_file]
        else:
            args += ["--insecure"]
        self._spawn("services", args, "its store")

    def start_batch(self) -> None:
        """The batch framework (`tepui jobs ...`), its store in the state dir like the services
        framework's, so a restarted `tepui up` resumes every job."""
        args = ["batch", "--master", f"127.0.0.1:{self.port}", "--http-port", str(self.batch_port()),
                "--store", os.path.join(self.state_dir, "batch.sqlite")]
        if self.security is not None:
            args += ["--http-token-file", self.security.token_file]
        else:
            args += ["--insecure"]
        self._spawn("batch", args, "its store")

    def start_cron(self) -> None:
        """The cron framework (`tepui cron ...`), its store in the state dir; it submits each
        fire to the batch framework through the master's proxy, with the cluster token."""
        args = ["cron", "serve", "--master", f"127.0.0.1:{self.port}", "--http-port", str(self.cron_port()),
                "--store", os.path.join(self.state_dir, "cron.sqlite"),
                "--batch", f"http://127.0.0.1:{self.http_port}/frameworks/batch/v1"]
        if self.security is not None:
            args += ["--http-token-file", self.security.token_file]
        else:
            args += ["--insecure"]
        self._spawn("cron", args, "its store")

    def _local_acls(self) -> str:
        """The local cluster's ACL file, written once so that an operator's edits survive
        restarts: every local client may do everything except run tasks as root."""
        from tepui.master.admission.acls_file import LOCAL_CLUSTER_ACLS

        path = os.path.join(self.state_dir, "acls.yaml")
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as f:
                f.write(LOCAL_CLUSTER_ACLS)
        return path

    def dead_child(self) -> tuple[str, int, str] | None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                return child.name, code, child.log_path
        return None

    def wait_ready(self, timeout: float, stop_requested: Callable[[], bool] = lambda: False) -> None:
        """Until every part is up (with progress bars); returns early when ``stop_requested()``."""
        with self.progress() as progress:
            master_task = progress.add_task("master answering", total=1)
            agents_task = progress.add_task("agents registered", total=self.agent_count)
            services_task = progress.add_task("services framework subscribed", total=1)
            batch_task = progress.add_task("batch framework subscribed", total=1)
            cron_task = progress.add_task("cron framework subscribed", total=1)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not stop_requested():
                self.fail_if_one_died()
                state = _state(self.http_port)
                if state is not None:
                    progress.update(master_task, completed=1)
                    progress.update(agents_task, completed=state["activated_slaves"])
                    connected = {f.get("name") for f in state.get("frameworks", []) if f.get("connected")}
                    services, batch, cron = ("services" in connected, "batch" in connected, "cron" in connected)
                    progress.update(services_task, completed=int(services))
                    progress.update(batch_task, completed=int(batch))
                    progress.update(cron_task, completed=int(cron))
                    if state["activated_slaves"] >= self.agent_count and services and batch and cron:
                        return
                time.sleep(0.1)
        if not stop_requested():
            raise click.ClickException(
                f"the cluster was not ready within {timeout:g} s; see the logs in {self.state_dir}")

    def progress(self) -> Progress:
        """The progress bars of ``wait_ready`` (gone once the cluster is up)."""
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
        return Progress(*columns, console=self.console, transient=True)

    def fail_if_one_died(self) -> None:
        """While starting, an exit is a configuration error: say which child and why (its log)."""
        dead = self.dead_child()
        if dead:
            name, code, log_path = dead
            raise click.ClickException(f"{name} exited with {describe_exit(code)} while starting. "
                                       f"Last lines of {log_path}:\n{_tail(log_path)}")

    # --- supervision (the decisions are cli/supervision.py's) ---------------------------------

    def supervise(self, stop_requested: Callable[[], bool], poll: float = 0.2) -> Ending | None:
        """Keeps the children running until ``stop_requested()`` (then None), or until the
        cluster must stop: a child in a crash loop, or the master stopped cleanly (an Ending)."""
        while not stop_requested():
            for child in self.children:
                ending = self._tend(child, self.clock())
                if ending is not None:
                    return ending
            self.watch()
            time.sleep(poll)
        return None

    def watch(self) -> None:
        """Called on every supervision round: what else to keep an eye on (an HA cluster reports
        a change of leader); nothing for one master."""

    def _tend(self, child: Child, now: float) -> Ending | None:
        if child.pending is not None:
            if now >= child.pending.at:
                self._restart(child)
            return None
        code = None if child.stopped else child.process.poll()
        if code is None:
            return None
        decision = self.policy.decide(child.history, code, now)
        if isinstance(decision, Restart):
            child.pending = decision
            self._say(self.policy.restart_line(child.name, code, decision, child.restart_phrase()))
            return None
        if isinstance(decision, GiveUp):
            again = f", which starts {child.name} on {child.resumes_from} again" if child.resumes_from else ""
            tasks = " (its tasks keep running until then, and it recovers them)" if child.name.startswith("agent") else ""
            return Ending(f"{self.policy.give_up_line(child.name, code, decision)} and stopping the cluster. Its log "
                          f"says why: fix that, then start `tepui up` again{again}{tasks}. "
                          f"Last lines of {child.log_path}:\n{_tail(child.log_path)}", failed=True)
        child.stopped = True
        if child.name == "master":
            return Ending(f"the master exited with {describe_exit(code)}: someone stopped it, so the cluster "
                          "stops too", failed=False)
        self._say(f"{child.name} exited with {describe_exit(code)}: a clean stop, not a failure, so it is not "
                  "restarted; the cluster runs on without it (the next `tepui up` starts it again)")
        return None

    def _restart(self, child: Child) -> None:
        assert child.pending is not None
        with open(child.log_path, "ab") as log_file:
            now = time.time()
            stamp = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))},{int(now * 1000) % 1000:03d}"
            log_file.write(f"--- tepui up: restart {child.pending.count} of {child.name} at {stamp} ---\n".encode())
        child.process = _popen(child.argv, child.log_path, child.preexec)
        child.history, child.pending = child.pending.history, None
        self._say(f"{child.name} restarted (pid {child.process.pid}){' ' + child.restarts_as if child.restarts_as else ''}")

    def _say(self, line: str) -> None:
        self.console.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        """The frameworks (they fail over: their tasks stay), then agents (SIGUSR1: they end
        their tasks), then the master; SIGKILL after a deadline. A child waiting for its restart
        stays down."""
        services = [c for c in self.children if c.kind in ("services", "batch", "cron")]
        agents = [c for c in self.children if c.kind == "agent"]
        others = [c for c in self.children if c not in services and c not in agents]  # the master(s), last
        for group, grace, sig in ((services, 5.0, signal.SIGTERM), (agents, 12.0, signal.SIGUSR1),
                                  (others, 5.0, signal.SIGTERM)):
            self.stop_group(group, grace, sig)

    def stop_group(self, group: list[Child], grace: float, sig: int) -> None:
        """``sig`` to every child of ``group`` still running, SIGKILL to those still there after ``grace``."""
        for child in group:
            if child.process.poll() is None:
                child.process.send_signal(sig)
        deadline = time.monotonic() + grace
        for child in group:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.console.print(f"[yellow]{child.name} did not stop in {grace:g} s; killing it[/yellow]")
                child.process.kill()
                child.process.wait()


def agent_ports(index: int, count: int, first: int = 31000, last: int = 32000) -> str:
    """Agent ``index`` (1-based) of ``count``'s share of the port range, as a resource."""
    span = (last - first + 1) // count
    low = first + (index - 1) * span
    high = last if index == count else low + span - 1
    return f"ports:[{low}-{high}]"


def default_state_dir(port: int, ha: bool = False) -> str:
    """As root, tasks run as `nobody`, who must be able to reach the sandboxes: /root is 0700.
    An HA cluster has its own (``tepui-ha``): its registry and stores are in ZooKeeper, and agents
    checkpointed under a single master's SQLite registry would re-register with ids it never knew."""
    base = "/var/lib" if os.geteuid() == 0 else os.environ.get("XDG_STATE_HOME", os.path.expanduser("~/.local/state"))
    name = "tepui-ha" if ha else "tepui"
    return os.path.join(base, name if port == 5050 else f"{name}-{port}")


def _print_single(console: Console, cluster: Cluster, port: int, http_port: int, agents: int, state_dir: str) -> None:
    console.print(f"[bold green]Tepui is up[/bold green]: master 127.0.0.1:{port}, "
                  f"HTTP http://127.0.0.1:{http_port}/state, {agents} agent(s); logs in {state_dir}", soft_wrap=True)
    print_try(console, f"http://127.0.0.1:{http_port}")
    console.print(f"  encrypted (CurveZMQ); keys in {cluster.security.keys_dir}, client configuration in "
                  f"{cluster.security.config_path}", soft_wrap=True)
    console.print("  stop: Ctrl-C     (a part that fails is restarted on its own state; see docs/operations.md)",
                  soft_wrap=True)


def print_try(console: Console, http: str) -> None:
    # Clients find this cluster (address, keys, token) in the client configuration: no flags.
    console.print("  try:  tepui run -- echo hello     tepui state     "
                  "python examples/hello_framework.py --tasks 10", soft_wrap=True)
    console.print(f"        tepui apps deploy examples/services/hello.yaml     tepui apps list   "
                  f"(services API: {http}/frameworks/services/v1/apps)", soft_wrap=True)
    console.print(f"        tepui jobs submit --wait examples/batch/wordcount.yaml     tepui jobs list   "
                  f"(batch API: {http}/frameworks/batch/v1/jobs)", soft_wrap=True)
    console.print(f"        tepui cron create examples/cron/health-probe.yaml     tepui cron list   "
                  f"(cron API: {http}/frameworks/cron/v1/schedules)", soft_wrap=True)


def _check_single_ports(port: int, http_port: int) -> None:
    for what, number in (("--port", port), ("--http-port", http_port),
                         ("--http-port + 10, the services framework's API", http_port + 10),
                         ("--http-port + 11, the batch framework's API", http_port + 11),
                         ("--http-port + 12, the cron framework's API", http_port + 12)):
        if not port_free(number):
            raise click.ClickException(
                f"port {number} ({what}) is already in use. Is another `tepui up` running? "
                f"Stop it, or choose another with {what}.")


@click.command("up")
@click.option("--agents", default=2, show_default=True, help="How many agents to start.")
@click.option("--state-dir", default=None,
              show_default="~/.local/state/tepui, /var/lib/tepui as root (tepui-PORT for another --port; "
                           "tepui-ha, tepui-ha-PORT with --ha)",
              help="Logs and agent work dirs.")
@click.option("--port", default=5050, show_default=True, help="Master ZeroMQ port (with --ha: PORT, PORT+1, PORT+2).")
@click.option("--http-port", default=5080, show_default=True,
              help="Master HTTP port (with --ha: HTTP-PORT, +1, +2).")
@click.option("--ha", is_flag=True,
              help="High availability: three masters on a ZooKeeper ensemble (--zk, else a local 3-server one it "
                   "starts and stops), agents and clients following the leader, two instances of each framework.")
@click.option("--zk", default=None, metavar="zk://HOST:PORT,.../PATH",
              help="With --ha: the ZooKeeper ensemble to use, running already (default: a local one under the "
                   "state dir, when the ZooKeeper server is installed).")
@click.option("--agent-resources", default=None, help="Resources each agent offers (default: detected).")
@click.option("--agent-arg", "agent_args", multiple=True, metavar="ARG",
              help="Extra argument for every `tepui agent` (repeatable; after the others, so it overrides them), "
                   "e.g. --agent-arg=--no-strict to recover from a damaged checkpoint.")
@click.option("--fetcher-allowed-dir", "fetcher_allowed_dirs", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, exists=True),
              help="A directory tasks may fetch local files (file:// URIs) from, passed to every agent "
                   "(repeatable; default: none, as for `tepui agent`).")
@click.option("--timeout", default=None, type=float, show_default="30, 60 with --ha",
              help="Seconds to wait for the cluster to come up.")
def up_command(agents: int, state_dir: str | None, port: int, http_port: int, agent_resources: str | None,
               agent_args: tuple[str, ...], timeout: float | None, fetcher_allowed_dirs: tuple[str, ...] = (),
               ha: bool = False, zk: str | None = None) -> None:
    """Start a local cluster (a master and agents) and keep it running until Ctrl-C.

    Each agent offers the whole machine unless --agent-resources says otherwise, so a local
    cluster of N agents advertises N times this machine (fine for trying things out).
    With --ha: three masters on ZooKeeper, any of which may die (docs/operations.md, "High availability").
    """
    console = Console()
    if zk and not ha:
        raise click.BadParameter("names the ZooKeeper of `tepui up --ha`: add --ha", param_hint="--zk")
    if state_dir is None:
        state_dir = default_state_dir(port, ha)
    if agents < 1:
        raise click.BadParameter("a cluster needs at least one agent", param_hint="--agents")
    timeout = timeout if timeout is not None else (60.0 if ha else 30.0)
    plan = None
    if ha:
        from tepui.cli import ha_ports, up_ha

        plan = ha_ports.plan(port, http_port)
        problems = ha_ports.collisions(plan, with_ensemble=zk is None)
        if problems:
            raise click.ClickException(f"the ports of `tepui up --ha` collide: {'; '.join(problems)}. Choose other "
                                       "ports with --port and --http-port.")
        up_ha.check_ports(plan)
    else:
        _check_single_ports(port, http_port)
    os.makedirs(state_dir, exist_ok=True)
    os.chmod(state_dir, 0o755)
    stopping = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["signal"] = signum  # type: ignore[assignment]

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cluster: Cluster
    ha_cluster: Any = None  # the same, as an up_ha.HaCluster
    master_address = None
    if plan is not None:
        console.print(f"ZooKeeper: {'checking ' + zk if zk else 'starting a local 3-server ensemble'} ...")
        zk_url, ensemble = up_ha.choose_ensemble(zk, state_dir, plan, console.print)
        cluster = ha_cluster = up_ha.HaCluster(state_dir, agents, plan, zk_url, ensemble, console)
        master_address = zk_url
    else:
        cluster = Cluster(state_dir, agents, port, http_port, console)
    from tepui.cli.up_security import prepare

    ending: Ending | None = None
    try:
        try:
            cluster.security = prepare(state_dir, port, http_port, agents, master_address)
        except Exception as exc:  # a key store or config file we cannot write: say which and why
            raise click.ClickException(f"cannot set up the cluster's keys in {state_dir}/keys: {exc}. Fix the "
                                       "permissions, or give another --state-dir") from None
        allowed = tuple(f"--fetcher-allowed-dir={os.path.abspath(d)}" for d in fetcher_allowed_dirs)
        if stopping["signal"] is None:  # a Ctrl-C while ZooKeeper started: start nothing more
            cluster.start(agent_resources, allowed + agent_args)
            cluster.start_services()
            cluster.start_batch()
            cluster.start_cron()
            cluster.wait_ready(timeout, lambda: stopping["signal"] is not None)
            if stopping["signal"] is None:
                if ha_cluster is not None:
                    ha_cluster.announce(agents)
                else:
                    _print_single(console, cluster, port, http_port, agents, state_dir)
                ending = cluster.supervise(lambda: stopping["signal"] is not None)
        if ending is not None:
            console.print(ending.message, style="red" if ending.failed else None, markup=False, highlight=False,
                          soft_wrap=True)
        local_zk = ha_cluster is not None and ha_cluster.ensemble is not None
        console.print("stopping: frameworks, then agents (they end their tasks), then the master"
                      f"{'s' if plan is not None else ''}{', then the local ZooKeeper ensemble' if local_zk else ''} ...")
    finally:
        cluster.stop()
    if ending is not None and ending.failed:
        console.print("stopped, after giving up.")
        raise click.exceptions.Exit(1)
    console.print("stopped.")
