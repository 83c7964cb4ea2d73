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

import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from tepui.frameworks.services.api import ServicesApi
from tepui.frameworks.services.core import CoreConfig, ServicesCore
from tepui.frameworks.services.effects import Effect, Persist, Probe, Publish, StopProbe
from tepui.sdk.event_stream import EventHub
from tepui.frameworks.services.readiness import ReadinessProber
from tepui.frameworks.services.state import NS_FRAMEWORK, ServiceState
from tepui.sdk import MasterInfo, Offer, SchedulerDriver, Store, StoreError, TaskStatus
from tepui.sdk.framework_shell import (
    FrameworkOptions, FrameworkShell, Running, advertised_ip, framework_driver, perform, run_framework,
    subscribed_driver, subscription,
)

log = logging.getLogger("tepui.services")

DEFAULT_HTTP_PORT = 5090
STORE_FILE = "services.sqlite"


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
class ServicesOptions(FrameworkOptions):
    http_port: int = DEFAULT_HTTP_PORT
    name: str = "services"


class ServicesShell(FrameworkShell):
    """The SDK callbacks, the timers and the effects; every decision is the core's."""

    def __init__(self, reactor: Any, core: ServicesCore, store: Store, hub: EventHub) -> None:
        super().__init__(reactor, store, hub, log, "services")
        self.core = core
        self.prober = ReadinessProber(reactor, self.on_readiness)
        self.refuse_seconds = core.config.refuse_waiting_seconds

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
        driver = subscribed_driver(self.driver)
        for effect in effects:
            if isinstance(effect, Persist):
                self._persist(effect)
            elif isinstance(effect, Publish):
                self.hub.publish(effect.kind, effect.data)
            elif isinstance(effect, Probe):
                self.prober.start(effect)
            elif isinstance(effect, StopProbe):
                self.prober.stop(effect.task_id)
            elif driver is not None:
                perform(driver, effect, self.refuse_seconds)

    def _persist(self, persist: Persist) -> None:
        try:
            with self.store.transaction():
                for ns, key, value in persist.puts:
                    self.store.put(ns, key, msgspec.json.encode(value))
                for ns, key in persist.deletes:
                    self.store.delete(ns, key)
        except StoreError as exc:
            self.store_failed(exc)
            raise


# How the HTTP refusals name this process ("the token in the services framework's --http-token-file").
HTTP_SERVICE = "services framework"


def assemble(options: ServicesOptions, reactor: Any, store: Store, where: str) -> Running:
    """The framework on its store: state loaded, core, shell, driver and API made."""
    state = load_state(store)
    core = ServicesCore(state, CoreConfig(role=options.role))
    hub = EventHub(reactor)
    shell = ServicesShell(reactor, core, store, hub)
    driver = framework_driver(shell, options, state.framework_id, reactor)
    shell.driver = driver
    api = ServicesApi(core, shell.run_command, hub, shell.now, subscription(driver))
    log.info("event=services_starting store=%s apps=%d instances=%d framework_id=%s api=http://%s:%d role=%s",
             where, len(state.apps), len(state.instances), state.framework_id, advertised_ip(options),
             options.http_port, options.role)
    return Running(shell, driver, hub, api, shell.tick, before_close=shell.prober.stop_all)


def run(options: ServicesOptions, reactor: Any) -> int:
    """Runs the framework until SIGTERM/SIGINT (it then leaves with failover: tasks keep running)."""
    return run_framework(reactor, options, STORE_FILE, HTTP_SERVICE,
                         lambda store, where: assemble(options, reactor, store, where))
