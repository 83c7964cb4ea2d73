"""``tepui cron serve``: the cron framework's process — the shell around :class:`CronCore`.

It loads every schedule and fire record from the store, subscribes to the master as the
framework ``cron`` (so the master proxies ``/frameworks/cron/`` to its API and relay tokens
work) but launches nothing: it suppresses offers and declines any that still come. It serves
the REST API and the event stream, ticks the core once a second, and executes the core's
effects; each fire becomes a job of the batch framework, over its REST API
(:mod:`.batch_link`).

Write-ahead, as every Tepui shell: a batch of effects starts with its Persist, committed in one
transaction before anything after it is executed — so a fire's INTENDED record is on disk
before its submit leaves, and a restart submits it again under the same id (docs/cron.md,
"Exactly once"). The core is told every answer (:meth:`CronCore.submitted`,
:meth:`CronCore.submit_failed`), and the end of every job it follows: polled every
:data:`POLL_SECONDS` (``GET /v1/jobs/ID``) rather than read from the batch event stream, because a
poll needs no resumable stream and survives a restart of the batch framework, the master or
this process alike.

A store failure is fatal: the process exits, and restarted, resumes from what was recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from tepui.frameworks.cron.batch_link import BatchLink, job_end, submit_outcome
from tepui.frameworks.cron.core import NS_FIRES, NS_SCHEDULES, CronCore
from tepui.frameworks.cron.definition import build
from tepui.frameworks.cron.effects import CancelJob, Effect, Persist, Publish, SubmitJob
from tepui.frameworks.cron.loading import LoadedSchedule, load_schedules
from tepui.sdk import MasterInfo, Offer, SchedulerDriver, Store, StoreError
from tepui.sdk.event_stream import EventHub
from tepui.sdk.framework_shell import (
    FrameworkOptions, FrameworkShell, Running, advertised_ip, framework_driver, run_framework, subscription,
    write_persists,
)
from tepui.sdk.protocol.values import Filters

log = logging.getLogger("tepui.cron")

DEFAULT_HTTP_PORT = 5092
STORE_FILE = "cron.sqlite"
NS_FRAMEWORK = "framework"  # key "id": the framework id, kept across restarts
POLL_SECONDS = 2.0
DECLINE_SECONDS = 3600.0  # an offer that comes despite the suppression: not again for an hour
DEFAULT_USER = "cron"  # the X-Tepui-User of a fire whose job template names no user


def read_store(store: Store) -> tuple[str | None, list[LoadedSchedule]]:
    """The framework id and every schedule with its fire records (:func:`.loading.load_schedules`);
    a schedule whose stored spec the current rules refuse is logged and left in the store."""
    entries = {ns: {key: e.value for key, e in store.list(ns).items()} for ns in (NS_SCHEDULES, NS_FIRES)}
    stored_id = store.get(NS_FRAMEWORK, "id")
    framework_id = msgspec.json.decode(stored_id.value) if stored_id is not None else None
    return framework_id, load_schedules(entries, build, lambda schedule_id, why: log.error(
        "event=cron_schedule_unreadable schedule=%s error=%s (kept in the store, not run)", schedule_id, why))


@dataclass(frozen=True)
class CronOptions(FrameworkOptions):
    http_port: int = DEFAULT_HTTP_PORT
    name: str = "cron"
    batch_url: str | None = None  # default: the master's proxy, http://<master http>/frameworks/batch/v1


class CronShell(FrameworkShell):
    """The SDK callbacks, the timers and the effects; every decision is the core's. ``reactor``
    times the ticks and polls; ``link`` makes the batch calls (on a reactor of its own in tests)."""

    def __init__(self, reactor: Any, core: CronCore, store: Store, hub: EventHub, link: BatchLink,
                 framework_id: str | None = None) -> None:
        super().__init__(reactor, store, hub, log, "cron")
        self.core, self.link = core, link
        self.framework_id = framework_id
        self._polling: set[str] = set()  # jobs whose GET is in flight

    # --- SDK callbacks ------------------------------------------------------------------------

    def subscribed(self, driver: SchedulerDriver, framework_id: str, master_info: MasterInfo) -> None:
        """Suppressed at once: the cron framework runs its fires as batch jobs, never tasks."""
        log.info("event=cron_subscribed framework_id=%s master=%s", framework_id, master_info.address)
        if framework_id != self.framework_id:
            try:
                with self.store.transaction():
                    self.store.put(NS_FRAMEWORK, "id", msgspec.json.encode(framework_id))
            except StoreError as exc:
                self.store_failed(exc)
                raise
            self.framework_id = framework_id
        driver.suppress()

    def offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        driver.decline([o.id for o in offers], Filters(refuse_seconds=DECLINE_SECONDS))

    def tick(self) -> None:
        self.execute(self.core.tick(self.now()))

    def poll(self) -> None:
        """Asks the batch framework for the state of every job the core follows (one GET each,
        none while the last is unanswered). Following none, it asks the batch API's health, so
        the health answer says whether the batch framework is reachable before a fire needs it."""
        following = self.core.following()
        for job_id in following:
            if job_id not in self._polling:
                self._polling.add(job_id)
                self.link.job(job_id).addCallback(self._polled, job_id)
        if not following and "" not in self._polling:
            self._polling.add("")
            self.link.call("GET", "/health").addCallback(lambda _: self._polling.discard(""))

    def run_command(self, command: Any, *args: Any) -> dict[str, Any]:
        """An API command: its effects run before the answer is written (a 201 means stored)."""
        answer, effects = command(self.core, *args)
        self.execute(effects)
        return answer

    # --- effects ------------------------------------------------------------------------------

    def execute(self, effects: list[Effect]) -> None:
        """The Persist first, committed; then the calls and events, in order."""
        if self.failed:
            return  # the store failed: nothing more leaves this process
        for effect in effects:
            if isinstance(effect, Persist):
                try:
                    write_persists(self.store, [effect])
                except StoreError as exc:
                    self.store_failed(exc)
                    raise
            elif isinstance(effect, SubmitJob):
                user = effect.spec.get("user") if isinstance(effect.spec.get("user"), str) else None
                self.link.submit(effect.job_id, effect.spec, user or DEFAULT_USER).addCallback(
                    self._submitted, effect.job_id)
            elif isinstance(effect, CancelJob):
                self.link.cancel(effect.job_id).addCallback(self._cancelled, effect.job_id)
            elif isinstance(effect, Publish):
                self.hub.publish(effect.kind, effect.data)

    def _submitted(self, answer: Any, job_id: str) -> None:
        outcome = submit_outcome(answer)
        if outcome.created:
            log.info("event=cron_job_submitted job=%s status=%d", job_id, answer.status)
            self.execute(self.core.submitted(job_id, self.now()))
            return
        log.log(logging.WARNING if outcome.retryable else logging.ERROR,
                "event=cron_submit_failed job=%s retryable=%s why=%s", job_id, outcome.retryable, outcome.why)
        self.execute(self.core.submit_failed(job_id, outcome.why, outcome.retryable, self.now()))

    def _cancelled(self, answer: Any, job_id: str) -> None:
        """404 (gone) and 409 (ended already) are fine; no answer: the end is polled anyway."""
        log.info("event=cron_job_cancel job=%s status=%d %s", job_id, answer.status, answer.problem)

    def _polled(self, answer: Any, job_id: str) -> None:
        self._polling.discard(job_id)
        state = job_end(answer)
        if state is not None:
            log.info("event=cron_job_ended job=%s state=%s", job_id, state)
            self.execute(self.core.job_ended(job_id, state, self.now()))


# How the HTTP refusals name this process ("the token in the cron framework's --http-token-file").
HTTP_SERVICE = "cron framework"


def batch_base(options: CronOptions) -> str:
    """``--batch``, else the batch framework through the master's proxy: the master's HTTP API
    as every client finds it (``$TEPUI_MASTER_HTTP``, the client configuration ``tepui up``
    writes, the local default) — the ZeroMQ ``--master`` address is not it."""
    if options.batch_url:
        return options.batch_url
    from tepui.sdk.config import ConfigError, load_client_config, resolve_master_http, ClientConfig

    try:
        config = load_client_config()
    except ConfigError:
        config = ClientConfig()
    master = resolve_master_http(None, config)
    master = master if master.startswith(("http://", "https://")) else f"http://{master}"
    return master.rstrip("/") + "/frameworks/batch/v1"


def assemble(options: CronOptions, reactor: Any, store: Store, where: str) -> Running:
    """The framework on its store: schedules loaded, core, shell, driver, API and poller made."""
    from twisted.internet import task

    from tepui.frameworks.cron.api import CronApi
    from tepui.sdk.http_security import load_token

    token = load_token(options.token_file) if options.token_file else None  # the batch calls' Bearer
    framework_id, schedules = read_store(store)
    core = CronCore()
    core.load(schedules, reactor.seconds())
    hub = EventHub(reactor)
    link = BatchLink(reactor, batch_base(options), token)
    shell = CronShell(reactor, core, store, hub, link, framework_id)
    driver = framework_driver(shell, options, framework_id, reactor)
    shell.driver = driver
    api = CronApi(core, shell.run_command, hub, shell.now, subscription(driver), lambda: link.reachable)
    poller = task.LoopingCall(shell.poll)
    poller.clock = reactor
    reactor.callWhenRunning(poller.start, POLL_SECONDS, now=False)  # at once when it runs already (--zk)
    log.info("event=cron_starting store=%s schedules=%d framework_id=%s api=http://%s:%d batch=%s", where,
             len(schedules), framework_id, advertised_ip(options), options.http_port, link.base)

    def before_close() -> None:
        if poller.running:
            poller.stop()

    return Running(shell, driver, hub, api, shell.tick, before_close)


def run(options: CronOptions, reactor: Any) -> int:
    """Runs the framework until SIGTERM/SIGINT."""
    return run_framework(reactor, options, STORE_FILE, HTTP_SERVICE,
                         lambda store, where: assemble(options, reactor, store, where))
