"""``tepui batch``: the batch framework's process — the shell around :class:`BatchCore`.

It loads every job from the store, subscribes (with the framework id it had and a week's
failover timeout, so a restart keeps every task running), serves the REST API and the event
stream, ticks the core once a second, and executes the core's effects.

Group commit. The core decides at once, in memory, for every event; the shell queues the
effects and flushes them once per reactor turn: all the queued Persists in **one** store
transaction (one fsync), then the launches, kills and events in order, then the
acknowledgements of the status updates that were decided (explicit acknowledgements: an update
is acknowledged only once what it changed is stored, so the agent re-sends it after a crash).
Nothing leaves the process before the commit that records it, which is the write-ahead rule;
what the grouping saves is one fsync per status update — at a few hundred updates a second that
is most of the framework's time (measured in docs/batch.md). API commands flush at once, so a
201 means stored.

A store failure is fatal: the process exits, and restarted, resumes from what was recorded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from tepui.frameworks.batch.artifacts import master_http_url
from tepui.frameworks.batch.core import BatchConfig, BatchCore
from tepui.frameworks.batch.effects import Effect, Persist, Publish
from tepui.frameworks.batch.job_run import ENDED
from tepui.frameworks.batch.ledger import NS_ATTEMPTS, NS_FRAMEWORK, NS_JOBS, NS_SPECS, NS_STAGES
from tepui.frameworks.batch.loading import LoadedJob, load_jobs, wants_attempts
from tepui.frameworks.batch.queue_values import QueuesConfig
from tepui.frameworks.batch.records import JobRecord
from tepui.sdk import MasterInfo, Offer, SchedulerDriver, Store, StoreError, TaskStatus
from tepui.sdk.event_stream import EventHub
from tepui.sdk.framework_shell import (
    FrameworkOptions, FrameworkShell, Running, advertised_ip, framework_driver, perform, run_framework,
    subscribed_driver, subscription, write_persists,
)

log = logging.getLogger("tepui.batch")

DEFAULT_HTTP_PORT = 5091
STORE_FILE = "batch.sqlite"


def read_store(store: Store) -> tuple[str | None, list[LoadedJob]]:
    """The framework id and every job the store holds (:func:`.loading.load_jobs`). A job's
    attempts are listed only when its run is rebuilt (:func:`.loading.wants_attempts`): a
    SUCCEEDED job's thousands of attempts stay on disk for the history."""
    entries: dict[str, dict[str, bytes]] = {
        ns: {key: e.value for key, e in store.list(ns).items()} for ns in (NS_FRAMEWORK, NS_SPECS, NS_JOBS, NS_STAGES)}
    attempts: dict[str, bytes] = {}
    for job_id, raw in entries[NS_JOBS].items():
        if wants_attempts(msgspec.json.decode(raw, type=JobRecord)):
            attempts.update((key, e.value) for key, e in store.list(NS_ATTEMPTS, prefix=f"{job_id}.").items())
    entries[NS_ATTEMPTS] = attempts
    return load_jobs(entries, lambda job_id, why: log.error(
        "event=batch_job_unreadable job=%s error=%s (kept in the store, not run)", job_id, why))


def write(store: Store, persists: list[Persist]) -> None:
    """Every queued Persist, in order, in one transaction."""
    write_persists(store, persists)


@dataclass(frozen=True)
class BatchOptions(FrameworkOptions):
    http_port: int = DEFAULT_HTTP_PORT
    name: str = "batch"
    queues: QueuesConfig | None = None
    master_http: str | None = None  # the master's HTTP URL for artifacts; default: from the subscription


class BatchShell(FrameworkShell):
    """The SDK callbacks, the timers and the effects; every decision is the core's."""

    def __init__(self, reactor: Any, core: BatchCore, store: Store, hub: EventHub,
                 master_http: str | None = None) -> None:
        super().__init__(reactor, store, hub, log, "batch")
        self.core = core
        self.master_http = master_http
        self._queued: list[Effect] = []
        self._acks: list[TaskStatus] = []
        self._flush_call: Any = None
        self.commits = 0
        self.commit_seconds = 0.0

    # --- SDK callbacks ------------------------------------------------------------------------

    def subscribed(self, driver: SchedulerDriver, framework_id: str, master_info: MasterInfo) -> None:
        url = self.master_http or master_http_url(master_info)
        log.info("event=batch_subscribed framework_id=%s master=%s http=%s", framework_id, master_info.address, url)
        self.queue(self.core.subscribed(framework_id, self.now(), url))

    def offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        self.queue(self.core.offers(offers, self.now()))

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        self.queue(self.core.status_update(status, self.now()))
        self._acks.append(status)  # acknowledged after the commit that records what it changed

    def tick(self) -> None:
        self.queue(self.core.tick(self.now()))

    def run_command(self, command: Any, *args: Any) -> dict[str, Any]:
        """An API command: its effects (and everything queued before) run before the answer is
        written, so a 201 means stored."""
        answer, effects = command(self.core, *args)
        self._queued.extend(effects)
        self.flush()
        return answer

    # --- effects ------------------------------------------------------------------------------

    def queue(self, effects: list[Effect]) -> None:
        self._queued.extend(effects)
        if self._flush_call is None and (self._queued or self._acks):
            self._flush_call = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        effects, self._queued = self._queued, []
        acks, self._acks = self._acks, []
        persists = [e for e in effects if isinstance(e, Persist)]
        if persists:
            started = time.monotonic()
            try:
                write(self.store, persists)
            except StoreError as exc:
                self.store_failed(exc)
                raise
            self.commits += 1
            self.commit_seconds += time.monotonic() - started
        driver = self.driver
        live = subscribed_driver(driver)
        for effect in effects:
            if isinstance(effect, Persist):
                continue
            if isinstance(effect, Publish):
                self.hub.publish(effect.kind, effect.data)
            elif live is not None:  # else: subscribing re-derives reconcile, kills and demand
                perform(live, effect, self.core.config.refuse_seconds)
        if driver is not None:
            for status in acks:
                driver.acknowledge(status)


# How the HTTP refusals name this process ("the token in the batch framework's --http-token-file").
HTTP_SERVICE = "batch framework"


def assemble(options: BatchOptions, reactor: Any, store: Store, where: str) -> Running:
    """The framework on its store: jobs loaded, core, shell, driver and API made."""
    from tepui.frameworks.batch.api import BatchApi
    from tepui.frameworks.batch.history import History
    from tepui.sdk.http_security import load_token

    token = load_token(options.token_file) if options.token_file else None  # for artifact URIs' task files tokens
    core = BatchCore(options.queues, BatchConfig(role=options.role, cluster_token=token))
    loaded_at = time.monotonic()
    framework_id, jobs = read_store(store)
    core.load(framework_id, jobs, reactor.seconds())
    hub = EventHub(reactor)
    shell = BatchShell(reactor, core, store, hub, options.master_http)
    driver = framework_driver(shell, options, framework_id, reactor, implicit_acknowledgements=False)
    shell.driver = driver
    api = BatchApi(core, shell.run_command, hub, shell.now, subscription(driver), History(store))
    log.info("event=batch_starting store=%s jobs=%d live_jobs=%d load_seconds=%.3f framework_id=%s "
             "api=http://%s:%d role=%s queues=%s", where, len(jobs),
             sum(1 for j in jobs if j[1].state not in ENDED), time.monotonic() - loaded_at, framework_id,
             advertised_ip(options), options.http_port, options.role,
             ",".join(q.name for q in core.queues.config.queues))
    return Running(shell, driver, hub, api, shell.tick)


def run(options: BatchOptions, reactor: Any) -> int:
    """Runs the framework until SIGTERM/SIGINT (it then leaves with failover: tasks keep running)."""
    return run_framework(reactor, options, STORE_FILE, HTTP_SERVICE,
                         lambda store, where: assemble(options, reactor, store, where))
