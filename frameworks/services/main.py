"""``tepui services``: the services framework's process — the shell around :class:`ServicesCore`.

It loads its state from the store, subscribes (with the framework id it had, a role, and a
failover timeout of a week, so a restart or a crash keeps every task running), serves the REST
API and the event stream, probes readiness, ticks the core once a second, and executes the
core's effects in order: the batch's :class:`Persist` first, in one store transaction, and only
then launches, kills, declines and events. A store failure is fatal — the framework must never
act on something it could not record — so the process exits and, restarted, resumes from what
was recorded.

Driver effects before the first subscription are skipped: subscribing re-derives all of them
(reconcile, repeated kills, demand).
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import msgspec
from twisted.internet import task

from tepui.frameworks.services.api import ServicesApi
from tepui.frameworks.services.core import CoreConfig, ServicesCore
from tepui.frameworks.services.effects import (
    Decline, Demand, Effect, Kill, Launch, Persist, Probe, Publish, Reconcile, StopProbe,
)
from tepui.sdk.event_stream import EventHub
from tepui.frameworks.services.readiness import ReadinessProber
from tepui.frameworks.services.state import NS_FRAMEWORK, ServiceState
from tepui.sdk import (
    LONG_RUNNING_FAILOVER_TIMEOUT, Filters, FrameworkInfo, MasterInfo, Offer, Scheduler, SchedulerDriver,
    SQLiteStore, Store, StoreError, TaskStatus,
)

log = logging.getLogger("tepui.services")

TICK_SECONDS = 1.0
DEFAULT_HTTP_PORT = 5090


def default_store_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "tepui", "services.sqlite")


def load_state(store: Store) -> ServiceState:
    """Everything the framework recorded, as it was when it stopped."""
    entry = store.get(NS_FRAMEWORK, "id")
    framework_id = msgspec.json.decode(entry.value) if entry is not None else None
    loaded: dict[str, list[Any]] = {}
    for ns, record_type in ServiceState.record_types().items():
        loaded[ns] = [msgspec.json.decode(e.value, type=record_type) for e in store.list(ns).values()]
    return ServiceState.load(framework_id, loaded["apps"], loaded["versions"], loaded["instances"],
                             loaded["deployments"])


@dataclass(frozen=True)
class ServicesOptions:
    master: str | None = None
    store: str = ""
    http_ip: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    advertise_ip: str | None = None
    name: str = "services"
    role: str = "*"
    principal: str | None = None
    user: str | None = None
    token_file: str | None = None
    read_auth: str = "open"
    insecure: bool = False


class ServicesShell(Scheduler):
    """The SDK callbacks, the timers and the effects; every decision is the core's."""

    def __init__(self, reactor: Any, core: ServicesCore, store: Store, hub: EventHub) -> None:
        self.reactor, self.core, self.store, self.hub = reactor, core, store, hub
        self.driver: SchedulerDriver | None = None
        self.prober = ReadinessProber(reactor, self.on_readiness)
        self.refuse_seconds = core.config.refuse_waiting_seconds
        self.failed = False

    def now(self) -> float:
        return float(self.reactor.seconds())

    # --- SDK callbacks --------------------------------------------------------------------

    def subscribed(self, driver: SchedulerDriver, framework_id: str, master_info: MasterInfo) -> None:
        log.info("event=services_subscribed framework_id=%s master=%s", framework_id, master_info.address)
        self.execute(self.core.subscribed(framework_id, self.now()))

    def offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        self.execute(self.core.offers(offers, self.now()))

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        # Returning acknowledges the update (implicit acknowledgements): only after the batch's
        # Persist has been committed by execute().
        self.execute(self.core.status_update(status, self.now()))

    def error(self, driver: SchedulerDriver, message: str) -> None:
        log.error("event=services_master_error message=%s", message)

    def disconnected(self, driver: SchedulerDriver) -> None:
        log.warning("event=services_disconnected (the driver reconnects and re-subscribes)")

    def on_readiness(self, task_id: str, ready: bool) -> None:
        self.execute(self.core.readiness(task_id, ready, self.now()))

    def tick(self) -> None:
        self.execute(self.core.tick(self.now()))

    def run_command(self, command: Any, *args: Any) -> dict[str, Any]:
        """An API command: its effects run before the answer is written (so a 201 means stored)."""
        answer, effects = command(self.core, *args)
        self.execute(effects)
        return answer

    # --- effects --------------------------------------------------------------------------

    def execute(self, effects: list[Effect]) -> None:
        driver = self.driver
        live = driver is not None and driver.framework_id is not None
        for effect in effects:
            if isinstance(effect, Persist):
                self._persist(effect)
            elif isinstance(effect, Publish):
                self.hub.publish(effect.kind, effect.data)
            elif isinstance(effect, Probe):
                self.prober.start(effect)
            elif isinstance(effect, StopProbe):
                self.prober.stop(effect.task_id)
            elif not live or driver is None:
                continue
            elif isinstance(effect, Launch):
                driver.launch(effect.offer_id, list(effect.tasks), Filters(refuse_seconds=self.refuse_seconds))
            elif isinstance(effect, Decline):
                driver.decline(list(effect.offer_ids), Filters(refuse_seconds=effect.refuse_seconds))
            elif isinstance(effect, Kill):
                driver.kill(effect.task_id, effect.agent_id, effect.grace_seconds)
            elif isinstance(effect, Reconcile):
                driver.reconcile(list(effect.tasks))
            elif isinstance(effect, Demand):
                driver.declare_demand(list(effect.shapes))
                if effect.revive:
                    driver.revive()
                elif not effect.shapes:
                    driver.suppress()

    def _persist(self, persist: Persist) -> None:
        try:
            with self.store.transaction():
                for ns, key, value in persist.puts:
                    self.store.put(ns, key, msgspec.json.encode(value))
                for ns, key in persist.deletes:
                    self.store.delete(ns, key)
        except StoreError as exc:
            # Never act on what could not be recorded: stop here; a restart resumes from the store.
            log.critical("event=services_store_failed error=%s (exiting; restart to resume)", exc)
            self.failed = True
            if self.reactor.running:
                self.reactor.stop()
            raise


# How the HTTP refusals name this process ("the token in the services framework's --http-token-file").
HTTP_SERVICE = "services framework"


def run(options: ServicesOptions, reactor: Any) -> int:
    """Runs the framework until SIGTERM/SIGINT (it then leaves with failover: tasks keep running)."""
    from tepui.sdk.http_security import GuardedSite, listen, policy_from_flags

    path = options.store or default_store_path()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    store = SQLiteStore(path)
    state = load_state(store)
    core = ServicesCore(state, CoreConfig(role=options.role))
    hub = EventHub(reactor)
    shell = ServicesShell(reactor, core, store, hub)
    advertise = options.advertise_ip or (options.http_ip if options.http_ip not in ("0.0.0.0", "") else "127.0.0.1")
    framework = FrameworkInfo(
        user=options.user or getpass.getuser(), name=options.name, id=state.framework_id,
        failover_timeout=LONG_RUNNING_FAILOVER_TIMEOUT, checkpoint=True, roles=[options.role],
        hostname=socket.gethostname(), principal=options.principal,
        webui_url=f"http://{advertise}:{options.http_port}", capabilities=["PARTITION_AWARE"],
    )
    driver = SchedulerDriver(shell, framework, options.master, reactor=reactor, insecure=options.insecure)
    shell.driver = driver
    api = ServicesApi(core, shell.run_command, hub, shell.now,
                      lambda: {"subscribed": driver.connected, "framework_id": driver.framework_id})
    # The master relays /frameworks/<name>/ calls with relay tokens for our framework id, never
    # with the cluster token (issue 15); before the first SUBSCRIBED we have no id and accept none.
    site = GuardedSite(api, policy_from_flags(options.token_file, options.read_auth, HTTP_SERVICE),
                       relay_scope=lambda: driver.framework_id)
    listen(reactor, options.http_port, site, options.http_ip)
    ticker = task.LoopingCall(shell.tick)
    ticker.clock = reactor
    hub.start()
    log.info("event=services_starting store=%s apps=%d instances=%d framework_id=%s api=http://%s:%d role=%s",
             path, len(state.apps), len(state.instances), state.framework_id, advertise, options.http_port,
             options.role)

    def started() -> None:
        driver.start()
        ticker.start(TICK_SECONDS, now=False)

    def stopping() -> None:
        shell.prober.stop_all()
        hub.stop()
        store.close()

    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: driver.stop(failover=True))
    reactor.addSystemEventTrigger("after", "shutdown", stopping)
    reactor.run()
    return 1 if shell.failed else 0
