"""The thin shell around a framework's pure core, in the parts every long-running framework
Tepui ships (services, batch) does alike: its command-line options, where its store lives, how
it subscribes, the SDK callbacks it handles alike (the master's errors, disconnections), that a
store failure stops the process, how it carries out the effects the core asks of the driver,
and how the process serves its API, ticks, starts and stops.

Why one module: the two shells had grown these parts twice, line for line (a fix to the failover
or the relay scope had to be made in both). What stays in each framework's ``main.py`` is what
it decides itself — how it loads and writes its store, when it commits (services: per event;
batch: group commit and explicit acknowledgements), its own effects (readiness probes), and its
options beyond these (batch: queues, the master's HTTP URL). A framework written outside Tepui
can use this too: it imports only ``tepui.sdk`` and Twisted.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

import msgspec
from twisted.internet import task

from tepui.sdk.framework_effects import Decline, Demand, Kill, Launch, Reconcile
from tepui.sdk.protocol.values import Filters, FrameworkInfo, MasterInfo
from tepui.sdk.scheduler import LONG_RUNNING_FAILOVER_TIMEOUT, Scheduler, SchedulerDriver
from tepui.sdk.store import SQLiteStore, Store, StoreError
from tepui.sdk.zookeeper import DEFAULT_SESSION_TIMEOUT

if TYPE_CHECKING:
    from twisted.web.resource import Resource

    from tepui.sdk.event_stream import EventHub

# The core's clock: timeouts, retries and deployments advance once a second.
TICK_SECONDS = 1.0

DriverEffect = Launch | Decline | Kill | Reconcile | Demand


@dataclass(frozen=True)
class FrameworkOptions:
    """The flags every framework process takes (``tepui services``, ``tepui batch``); each
    framework's subclass sets its own ``name`` and ``http_port`` defaults and adds its own."""

    master: str | None = None
    store: str = ""  # empty: default_store_path(<framework>.sqlite)
    http_ip: str = "127.0.0.1"
    http_port: int = 0
    advertise_ip: str | None = None
    name: str = ""
    role: str = "*"
    principal: str | None = None
    user: str | None = None
    token_file: str | None = None
    read_auth: str = "open"
    insecure: bool = False
    # zk://HOSTS/PATH: run as one of several instances, the leader elected in ZooKeeper, the
    # store in ZooKeeper too (sdk/framework_ha.py); None: the only instance, on its SQLite file.
    zk: str | None = None
    zk_session_timeout: float = DEFAULT_SESSION_TIMEOUT


class FrameworkShell(Scheduler):
    """The SDK callbacks every framework shell handles alike, and its fatal store failure; a
    subclass adds its core and the callbacks that feed it (every decision is the core's). Its
    log events are named ``<framework>_...`` on the framework's own logger."""

    def __init__(self, reactor: Any, store: Store, hub: EventHub, log: logging.Logger, framework: str) -> None:
        self.reactor, self.store, self.hub = reactor, store, hub
        self.driver: SchedulerDriver | None = None
        self.failed = False  # the store failed: the process exits with 1
        self._log, self._framework = log, framework

    def now(self) -> float:
        return float(self.reactor.seconds())

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self._log.error("event=%s_master_error message=%s", self._framework, message)

    def disconnected(self, driver: SchedulerDriver) -> None:
        self._log.warning("event=%s_disconnected (the driver reconnects and re-subscribes)", self._framework)

    def store_failed(self, exc: StoreError) -> None:
        """Never act on what could not be recorded: the caller re-raises (nothing after the
        failed commit runs), the reactor stops, and a restart resumes from the store."""
        self._log.critical("event=%s_store_failed error=%s (exiting; restart to resume)", self._framework, exc)
        self.failed = True
        if self.reactor.running:
            self.reactor.stop()


def default_store_path(file_name: str) -> str:
    """``$XDG_STATE_HOME/tepui/<file_name>`` (default ``~/.local/state``): state that must
    survive a restart but is not configuration."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "tepui", file_name)


def open_store(options: FrameworkOptions, file_name: str) -> tuple[str, SQLiteStore]:
    """The store's path (``--store``, else :func:`default_store_path`) and the store, its folder
    made first."""
    path = options.store or default_store_path(file_name)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path, SQLiteStore(path)


class PersistLike(Protocol):
    """A framework's Persist effect (batch, cron): records to write and delete in one transaction;
    ``delete_prefixes``: every key of ``ns`` starting with ``prefix``."""

    @property
    def puts(self) -> Sequence[tuple[str, str, Any]]: ...

    @property
    def deletes(self) -> Sequence[tuple[str, str]]: ...

    @property
    def delete_prefixes(self) -> Sequence[tuple[str, str]]: ...


def write_persists(store: Store, persists: Iterable[PersistLike]) -> None:
    """Every Persist, in order, in one transaction (values JSON-encoded with msgspec)."""
    with store.transaction():
        for persist in persists:
            for ns, key, value in persist.puts:
                store.put(ns, key, msgspec.json.encode(value))
            for ns, key in persist.deletes:
                store.delete(ns, key)
            for ns, prefix in persist.delete_prefixes:
                for key in store.list(ns, prefix=prefix):
                    store.delete(ns, key)


def advertised_ip(options: FrameworkOptions) -> str:
    """The address the API is reachable at (the web UI URL the master shows): ``--advertise-ip``,
    else the listening address unless that is every interface, else the loopback."""
    return options.advertise_ip or (options.http_ip if options.http_ip not in ("0.0.0.0", "") else "127.0.0.1")


def framework_driver(scheduler: Scheduler, options: FrameworkOptions, framework_id: str | None, reactor: Any,
                     *, implicit_acknowledgements: bool = True) -> SchedulerDriver:
    """The driver of a long-running framework: it subscribes with the framework id it had, a
    failover timeout of a week and checkpointing, so a restart or a crash keeps every task
    running; PARTITION_AWARE, so the master tells the precise state of a departed agent's
    tasks (UNREACHABLE, GONE, ...) rather than TASK_LOST."""
    framework = FrameworkInfo(
        user=options.user or getpass.getuser(), name=options.name, id=framework_id,
        failover_timeout=LONG_RUNNING_FAILOVER_TIMEOUT, checkpoint=True, roles=[options.role],
        hostname=socket.gethostname(), principal=options.principal,
        webui_url=f"http://{advertised_ip(options)}:{options.http_port}", capabilities=["PARTITION_AWARE"],
    )
    return SchedulerDriver(scheduler, framework, options.master, reactor=reactor, insecure=options.insecure,
                           implicit_acknowledgements=implicit_acknowledgements)


def subscription(driver: SchedulerDriver) -> Callable[[], dict[str, Any]]:
    """What the API's status answer says of the subscription, read when asked."""
    return lambda: {"subscribed": driver.connected, "framework_id": driver.framework_id}


def subscribed_driver(driver: SchedulerDriver | None) -> SchedulerDriver | None:
    """The driver, once the master has given the framework an id; before that the core's driver
    effects are skipped, because subscribing re-derives all of them (reconcile, repeated kills,
    demand)."""
    return driver if driver is not None and driver.framework_id is not None else None


def perform(driver: SchedulerDriver, effect: DriverEffect, launch_refuse_seconds: float) -> None:
    """One effect the core asks of the driver. A launch declines what it leaves of the offer for
    ``launch_refuse_seconds`` (the framework's setting); a Demand declares the shapes waiting,
    then revives (new work: clear decline filters) or, with nothing waiting, suppresses offers."""
    if isinstance(effect, Launch):
        driver.launch(effect.offer_id, list(effect.tasks), Filters(refuse_seconds=launch_refuse_seconds))
    elif isinstance(effect, Decline):
        driver.decline(list(effect.offer_ids), Filters(refuse_seconds=effect.refuse_seconds))
    elif isinstance(effect, Kill):
        driver.kill(effect.task_id, effect.agent_id, effect.grace_seconds)
    elif isinstance(effect, Reconcile):
        driver.reconcile(list(effect.tasks))
    else:
        driver.declare_demand(list(effect.shapes))
        if effect.revive:
            driver.revive()
        elif not effect.shapes:
            driver.suppress()


def serve_api(reactor: Any, options: FrameworkOptions, api: Resource, driver: SchedulerDriver, service: str) -> None:
    """Serves the framework's REST API behind the HTTP guard (``--http-token-file``,
    ``--http-read-auth``; ``service`` names the process in refusals). The master relays
    ``/frameworks/<name>/`` calls with relay tokens for our framework id, never with the cluster
    token (issue 15); before the first SUBSCRIBED we have no id and accept none."""
    from tepui.sdk.http_security import GuardedSite, listen, policy_from_flags  # Twisted's web server: only here

    site = GuardedSite(api, policy_from_flags(options.token_file, options.read_auth, service),
                       relay_scope=lambda: driver.framework_id)
    listen(reactor, options.http_port, site, options.http_ip)


@dataclass
class Running:
    """A framework built on its store and ready to run: what the process serves, starts, ticks
    and stops (each framework's ``build``)."""

    shell: FrameworkShell
    driver: SchedulerDriver
    hub: EventHub
    api: Resource
    tick: Callable[[], None]
    before_close: Callable[[], None] | None = None


Build = Callable[[Store, str], Running]
"""A framework's constructor: its state loaded from the store (and where that is, for its log)."""


def run_framework(reactor: Any, options: FrameworkOptions, store_file: str, service: str, build: Build) -> int:
    """Runs the framework until SIGTERM/SIGINT and returns the exit status: the only instance
    on its SQLite file, or with ``--zk`` one of several instances (:mod:`.framework_ha`)."""
    if options.zk:
        from tepui.sdk.framework_ha import run_instance

        return run_instance(reactor, options, service, build)
    path, store = open_store(options, store_file)
    running = build(store, path)
    serve_api(reactor, options, running.api, running.driver, service)
    run_until_shutdown(reactor, running.driver, running.hub, store, running.tick, running.before_close)
    return 1 if running.shell.failed else 0


def run_until_shutdown(reactor: Any, driver: SchedulerDriver, hub: EventHub, store: Store,
                       tick: Callable[[], None], before_close: Callable[[], None] | None = None) -> None:
    """Runs the reactor until SIGTERM/SIGINT: the driver starts and the core ticks every
    :data:`TICK_SECONDS` once the reactor runs; at shutdown the driver leaves with failover (the
    master keeps the tasks running for the failover timeout), then ``before_close``, the event
    streams and the store close."""
    ticker = task.LoopingCall(tick)
    ticker.clock = reactor
    hub.start()

    def started() -> None:
        driver.start()
        ticker.start(TICK_SECONDS, now=False)

    def stopping() -> None:
        if before_close is not None:
            before_close()
        hub.stop()
        store.close()

    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: driver.stop(failover=True))
    reactor.addSystemEventTrigger("after", "shutdown", stopping)
    reactor.run()
