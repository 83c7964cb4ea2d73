"""The services framework's core: keep every app at its target, one event at a time.

A pure state machine, as DESIGN asks: each event (subscribed, offers, a status update, a
readiness result, a tick, a command from the API) comes with ``now`` and returns the effects to
execute (:mod:`.effects`); Twisted, the SDK driver, the store and HTTP live in the shell
(:mod:`.main`). After every event the touched apps *converge*: the stateless planner
(:func:`.deployment.plan_step`) compares what runs with the target and says what to kill and how
many to start; starts wait for offers (``pending``) and are declared to the allocator as demand,
so offers come only while something waits, and only from agents where it could fit.

Self-healing is the same loop: a task that ends, fails its health checks (the agent kills it) or
becomes unreachable for ``inactive_after_seconds`` no longer counts, so the planner starts a
replacement — after the app's launch backoff when the app keeps failing. An unreachable instance
is forgotten (expunged) after ``expunge_after_seconds``; if its agent returns, the task is no
longer known and is killed; if it returns before, the planner sees one instance too many and kills
the youngest.

Deployments record the way from one version to the next: progress, a progress deadline
(extended whenever one more new instance becomes healthy, like Kubernetes'
``progressDeadlineSeconds``), and, with ``auto_rollback``, a rollback to the version before when
the deadline passes. API commands are in :mod:`.commands`.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from tepui.frameworks.services import deployment as planner
from tepui.frameworks.services.backoff import BackoffPolicy, LaunchBackoff
from tepui.frameworks.services.effects import (
    Decline, Demand, Effect, Kill, Launch, Probe, Publish, Reconcile, StopProbe,
)
from tepui.frameworks.services.records import AppRecord, DeploymentRecord, InstanceRecord, VersionRecord
from tepui.frameworks.services.spec import AppSpec
from tepui.frameworks.services.state import ServiceState
from tepui.frameworks.services.tasks import fit, offer_room, task_info
from tepui.frameworks.services.why import WhyLog
from tepui.sdk import Offer, TaskState, TaskStatus

MAX_VERSIONS = 50  # Marathon's --max_versions: older versions no instance uses are forgotten


@dataclass(frozen=True)
class CoreConfig:
    role: str = "*"
    kill_retry_seconds: float = 30.0  # a kill not confirmed by then is asked again
    launch_timeout_seconds: float = 300.0  # Marathon's task_launch_timeout: staged too long → killed
    refuse_waiting_seconds: float = 5.0  # decline filter while something waits (offers keep coming)
    refuse_idle_seconds: float = 120.0  # decline filter when nothing waits (demand is empty anyway)


def make_version(now: float, taken: list[str]) -> str:
    """An ISO 8601 UTC timestamp with milliseconds (Marathon's versions), made unique."""
    stamp = now
    if taken:  # a clock behind the newest version (skew, a restart elsewhere): start from it, not step to it
        try:
            newest = datetime.datetime.strptime(taken[-1], "%Y-%m-%dT%H:%M:%S.%fZ")
            stamp = max(stamp, newest.replace(tzinfo=datetime.timezone.utc).timestamp())
        except ValueError:
            pass
    while True:
        text = datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if text not in taken and (not taken or text > taken[-1]):
            return text
        stamp += 0.001


def app_slug(app_id: str) -> str:
    return app_id.strip("/").replace("/", "_")


def _id() -> str:
    return uuid.uuid4().hex[:12]


class ServicesCore:
    def __init__(self, state: ServiceState, config: CoreConfig = CoreConfig(),
                 new_id: Callable[[], str] = _id) -> None:
        self.state, self.config, self.new_id = state, config, new_id
        self.why = WhyLog()
        self.backoffs: dict[str, LaunchBackoff] = {}
        self.pending: dict[str, int] = {}
        self.last_failure: dict[str, dict[str, Any]] = {}
        self._declared: tuple[Any, ...] | None = None
        self.subscribed_at: float | None = None

    # --- batches --------------------------------------------------------------------------

    def finish(self, out: list[Effect]) -> list[Effect]:
        """The batch's effects, its Persist first (write-ahead)."""
        persist = self.state.flush()
        return ([persist] if persist is not None else []) + out

    # --- health as the planner and the API count it -----------------------------------------

    def spec_of(self, instance: InstanceRecord) -> AppSpec:
        return self.state.spec(instance.app, instance.version)

    def healthy(self, instance: InstanceRecord) -> bool:
        """Running, and passing its health check if the app has one (Marathon: an app without
        health checks is healthy when running)."""
        if instance.state != TaskState.RUNNING.value:
            return False
        return instance.healthy is True if self.spec_of(instance).health_checks else True

    def ready(self, instance: InstanceRecord) -> bool:
        if instance.state != TaskState.RUNNING.value:
            return False
        return instance.ready if self.spec_of(instance).readiness_check is not None else True

    def inactive(self, instance: InstanceRecord, now: float) -> bool:
        """Unreachable for at least ``inactive_after_seconds``: replaced, though not forgotten."""
        if instance.state != TaskState.UNREACHABLE.value or instance.unreachable_since is None:
            return False
        return now - instance.unreachable_since >= self.spec_of(instance).unreachable_strategy.inactive_after_seconds

    def backoff(self, app: str) -> LaunchBackoff:
        backoff = self.backoffs.get(app)
        if backoff is None:
            b = self.state.current_spec(app).backoff
            backoff = self.backoffs[app] = LaunchBackoff(BackoffPolicy(
                b.backoff_seconds, b.backoff_factor, b.max_launch_delay_seconds))
        return backoff

    def counts(self, app: str) -> dict[str, int]:
        live = self.state.instances_of(app)
        return {
            "app_healthy": sum(1 for i in live if not i.killing and self.healthy(i)),
            "app_running": sum(1 for i in live if i.state == TaskState.RUNNING.value),
        }

    # --- events ---------------------------------------------------------------------------

    def subscribed(self, framework_id: str, now: float) -> list[Effect]:
        """(Re-)subscribed: remember the id, ask the master about every instance we know (the
        answers replace what was lost while we were away), repeat kills, converge."""
        out: list[Effect] = []
        self.state.set_framework_id(framework_id)
        self.subscribed_at = now
        known = tuple(sorted((i.id, i.agent_id) for i in self.state.instances.values()))
        if known:
            out.append(Reconcile(known))
        for instance in self.state.instances.values():
            if instance.killing:
                self._kill(instance, now, out)
            elif instance.state == TaskState.RUNNING.value and not self.ready(instance):
                self._maybe_probe(instance, out)
        self._declared = None  # the master may have forgotten it: declare again
        for app in list(self.state.apps):
            self.converge(app, now, out)
        self.update_demand(now, out)
        return self.finish(out)

    def offers(self, offers: list[Offer], now: float) -> list[Effect]:
        out: list[Effect] = []
        waiting = [a for a in sorted(self.pending) if self.pending[a] > 0 and a in self.state.apps
                   and not self.state.apps[a].removing and self.backoff(a).may_launch(now)]
        placed = {a: [(i.hostname, i.attributes) for i in self.state.instances_of(a) if not i.killing]
                  for a in waiting}
        declines: list[str] = []
        for offer in offers:
            room = offer_room(offer)
            tasks = []
            for app_id in waiting:
                app = self.state.apps[app_id]
                spec = self.state.current_spec(app_id)
                while self.pending[app_id] > 0:
                    chosen = fit(spec, offer, room, placed[app_id])
                    if isinstance(chosen, str):
                        self.why.refused(app_id, offer.agent_id, offer.hostname, chosen, now)
                        break
                    task_id = f"{app_slug(app_id)}.{self.new_id()}"
                    tasks.append(task_info(spec, app.version, task_id, offer, chosen))
                    self.state.save_instance(InstanceRecord(
                        id=task_id, app=app_id, version=app.version, config_version=app.config_version,
                        agent_id=offer.agent_id, hostname=offer.hostname, host=offer.address,
                        attributes=dict(offer.attributes), ports=list(chosen.ports), launched_at=now))
                    placed[app_id].append((offer.hostname, offer.attributes))
                    room = room - chosen.take
                    self.pending[app_id] -= 1
            if tasks:
                out.append(Launch(offer.id, tuple(tasks)))
            else:
                declines.append(offer.id)
        if declines:
            busy = any(n > 0 for n in self.pending.values())
            out.append(Decline(tuple(declines), self.config.refuse_waiting_seconds if busy
                               else self.config.refuse_idle_seconds))
        self.update_demand(now, out)
        return self.finish(out)

    def status_update(self, status: TaskStatus, now: float) -> list[Effect]:
        out: list[Effect] = []
        instance = self.state.instances.get(status.task_id)
        if instance is None:
            if not status.state.is_terminal and status.state != TaskState.UNREACHABLE:
                # Not ours (any more): an expunged instance whose agent came back, or a task of a
                # removed app. Nothing may run that the framework does not account for.
                out.append(Kill(status.task_id, status.agent_id, None))
            return self.finish(out)
        app = instance.app
        was_healthy, old_health = self.healthy(instance), instance.healthy
        if status.state.is_terminal:
            self.state.drop_instance(instance.id)
            if self.spec_of(instance).readiness_check is not None:
                out.append(StopProbe(instance.id))
            if not instance.killing and app in self.state.apps and not self.state.apps[app].removing:
                self.backoffs[app] = self.backoff(app).failed(now)
                self.last_failure[app] = {"task_id": instance.id, "state": status.state.value,
                                          "message": status.message, "at": now}
        else:
            instance.state = status.state.value
            if status.state == TaskState.UNREACHABLE:
                instance.unreachable_since = instance.unreachable_since or now
            else:
                instance.unreachable_since = None
            if status.state == TaskState.RUNNING and instance.running_at is None:
                instance.running_at = now
            if status.healthy is not None:
                instance.healthy = status.healthy
            if status.message:
                instance.message = status.message
            self.state.save_instance(instance)
            if status.state == TaskState.RUNNING:
                self._maybe_probe(instance, out)
            if self.healthy(instance) and not was_healthy and app in self.state.apps:
                self.backoffs[app] = self.backoff(app).succeeded()
            self._expunge_if_due(instance, now, out)
        event = {"app": app, "task_id": instance.id, "version": instance.version, "state": status.state.value,
                 "healthy": instance.healthy, "agent_id": instance.agent_id, "message": status.message}
        out.append(Publish("status_update", {**event, **self.counts(app)}))
        if not status.state.is_terminal and status.healthy is not None and status.healthy != old_health:
            out.append(Publish("health_changed", {"app": app, "task_id": instance.id, "version": instance.version,
                                                  "healthy": status.healthy, **self.counts(app)}))
        self.converge(app, now, out)
        self.update_demand(now, out)
        return self.finish(out)

    def readiness(self, task_id: str, ready: bool, now: float) -> list[Effect]:
        out: list[Effect] = []
        instance = self.state.instances.get(task_id)
        if instance is None:
            return [StopProbe(task_id)]
        if ready and not instance.ready:
            instance.ready = True
            self.state.save_instance(instance)
            out.append(StopProbe(task_id))
            out.append(Publish("readiness_changed", {"app": instance.app, "task_id": task_id, "ready": True,
                                                     **self.counts(instance.app)}))
            self.converge(instance.app, now, out)
            self.update_demand(now, out)
        return self.finish(out)

    def tick(self, now: float) -> list[Effect]:
        """Timers: kill retries, launch timeouts, unreachable expiry, deadlines, backoff ends."""
        out: list[Effect] = []
        for instance in list(self.state.instances.values()):
            if instance.killing:
                if instance.kill_asked_at is None or now - instance.kill_asked_at >= self.config.kill_retry_seconds:
                    self._kill(instance, now, out)
            elif (instance.state in (TaskState.STAGING.value, TaskState.STARTING.value)
                  and now - instance.launched_at >= self.config.launch_timeout_seconds):
                instance.message = f"not running {self.config.launch_timeout_seconds:g} s after its launch"
                self._kill(instance, now, out)
            self._expunge_if_due(instance, now, out)
        for deployment in list(self.state.deployments.values()):
            if deployment.status == "RUNNING" and now >= deployment.deadline_at:
                self._deadline_passed(deployment, now, out)
        for app in list(self.state.apps):
            self.converge(app, now, out)
        self.update_demand(now, out)
        return self.finish(out)

    # --- converging -----------------------------------------------------------------------

    def converge(self, app_id: str, now: float, out: list[Effect]) -> None:
        """One planner step for ``app_id``: kills now, starts as ``pending``, deployment progress."""
        app = self.state.apps.get(app_id)
        if app is None:
            return
        live = self.state.instances_of(app_id)
        deployment = self.state.running_deployment(app_id)
        if app.removing:
            for instance in live:
                if not instance.killing:
                    self._kill(instance, now, out)
            self.pending[app_id] = 0
            if not live:
                if deployment is not None:
                    self.end_deployment(deployment, "SUCCEEDED", f"app {app_id} removed", now, out)
                self.state.drop_app(app_id)
                self.why.forget(app_id)
                self.backoffs.pop(app_id, None)
                self.pending.pop(app_id, None)
                self.last_failure.pop(app_id, None)
                out.append(Publish("app_removed", {"app": app_id}))
            return
        spec = self.state.current_spec(app_id)
        current = [planner.Instance(id=i.id, version=i.config_version, healthy=self.healthy(i),
                                    ready=self.ready(i), started_at=i.launched_at, killing=i.killing)
                   for i in live if not self.inactive(i, now)]
        strategy = planner.UpgradeStrategy(spec.upgrade_strategy.minimum_health_capacity,
                                           spec.upgrade_strategy.maximum_over_capacity)
        plan = planner.plan_step(spec.instances, app.config_version, current, strategy)
        for task_id in plan.kill:
            self._kill(self.state.instances[task_id], now, out)
        self.pending[app_id] = plan.start
        if deployment is not None:
            self._progress(deployment, app, plan.finished, now, out)

    def _progress(self, deployment: DeploymentRecord, app: AppRecord, finished: bool, now: float,
                  out: list[Effect]) -> None:
        live = [i for i in self.state.instances_of(app.id) if not i.killing]
        new = [i for i in live if i.config_version == app.config_version]
        new_healthy = sum(1 for i in new if self.healthy(i) and self.ready(i))
        new_running = sum(1 for i in new if i.state == TaskState.RUNNING.value)
        old_running = sum(1 for i in live if i.config_version != app.config_version
                          and i.state == TaskState.RUNNING.value)
        changed = (new_healthy, new_running, old_running) != (
            deployment.new_healthy, deployment.new_running, deployment.old_running)
        if new_healthy > deployment.new_healthy:  # progress: the deadline moves on
            deadline = self.state.current_spec(app.id).upgrade_strategy.progress_deadline_seconds
            deployment.deadline_at = max(deployment.deadline_at, now + deadline)
        deployment.new_healthy, deployment.new_running, deployment.old_running = new_healthy, new_running, old_running
        if finished:
            self.end_deployment(deployment, "SUCCEEDED", f"{new_healthy} of {deployment.instances} instances of "
                                f"version {deployment.version} healthy", now, out)
        elif changed:
            self.state.save_deployment(deployment)
            out.append(Publish("deployment_step", deployment.view()))

    def end_deployment(self, deployment: DeploymentRecord, status: str, message: str, now: float,
                       out: list[Effect]) -> None:
        self._mark_finished(deployment, status, message, now)
        out.append(Publish("deployment_finished", deployment.view()))

    def _mark_finished(self, deployment: DeploymentRecord, status: str, message: str, now: float) -> None:
        deployment.status, deployment.message, deployment.finished_at = status, message, now
        self.state.save_deployment(deployment)

    def _deadline_passed(self, deployment: DeploymentRecord, now: float, out: list[Effect]) -> None:
        spec = self.state.current_spec(deployment.app) if deployment.app in self.state.apps else None
        seconds = spec.upgrade_strategy.progress_deadline_seconds if spec else 0.0
        message = (f"no progress for {seconds:g} s (upgrade_strategy.progress_deadline_seconds): "
                   f"{deployment.new_healthy} of {deployment.instances} instances of version "
                   f"{deployment.version} healthy and ready")
        failure = self.last_failure.get(deployment.app)
        if failure:
            message += f"; last failure: {failure['task_id']} {failure['state']}" + (
                f" ({failure['message']})" if failure.get("message") else "")
        rollback_to = deployment.from_version
        if (deployment.auto_rollback and rollback_to is not None and spec is not None
                and (deployment.app, rollback_to) in self.state.versions):
            self.end_with_rollback(deployment, "FAILED", message, f"automatic rollback of {deployment.version}",
                                   now, out, mention=True)
        else:
            self.end_deployment(deployment, "FAILED", message, now, out)

    def end_with_rollback(self, deployment: DeploymentRecord, status: str, message: str, reason: str, now: float,
                          out: list[Effect], mention: bool = False) -> DeploymentRecord:
        """Ends ``deployment`` and returns its app to ``from_version`` as a new rollback
        deployment (a failed deadline with ``auto_rollback``, a cancel). Its
        ``deployment_finished`` event names the rollback, as its stored record does; with
        ``mention`` the message says where it rolled back to.

        The deployment is marked finished first (so the rollback does not supersede it), but
        its ``deployment_finished`` can only be built once the rollback has an id: the
        rollback's effects are gathered apart and follow it, in that order."""
        assert deployment.from_version is not None
        self._mark_finished(deployment, status, message, now)
        target = self.state.spec(deployment.app, deployment.from_version)
        started: list[Effect] = []
        rollback = self.start_deployment(target, "rollback", reason, now, started,
                                         rollback_of=deployment.from_version)
        deployment.rollback = rollback.id
        if mention:
            deployment.message = f"{message}; rolled back to version {deployment.from_version} (deployment {rollback.id})"
        self.state.save_deployment(deployment)
        out.append(Publish("deployment_finished", deployment.view()))
        out.extend(started)
        return rollback

    def start_deployment(self, spec: AppSpec, kind: str, reason: str, now: float, out: list[Effect],
                         rollback_of: str | None = None, restart: bool = False) -> DeploymentRecord:
        """Makes ``spec`` the app's new version and starts the deployment towards it. The config
        version stays when only ``instances`` changed (nothing to replace), returns to that of
        ``rollback_of`` on a rollback, and is new otherwise (``restart``: always new)."""
        app = self.state.apps.get(spec.id)
        superseded = self.state.running_deployment(spec.id) if app else None
        if superseded is not None:
            self.end_deployment(superseded, "CANCELLED", f"superseded by a {kind} to a new version", now, out)
        version = make_version(now, app.versions if app else [])
        if app is None:
            config_version = version
        elif not restart and same_config(self.state.current_spec(spec.id), spec):
            config_version = app.config_version
        elif rollback_of is not None and not restart:
            old = self.state.versions[(spec.id, rollback_of)]
            config_version = old.config_version
        else:
            config_version = version
        if app is not None and config_version != app.config_version:
            self.backoffs.pop(spec.id, None)  # a new config starts without the old one's failures
        self.state.save_version(VersionRecord(app=spec.id, version=version, config_version=config_version,
                                              created_at=now, reason=reason, spec=spec.to_data()))
        record = AppRecord(id=spec.id, version=version, config_version=config_version,
                           versions=[*(app.versions if app else []), version],
                           created_at=app.created_at if app else now)
        self._prune_versions(record)
        self.state.save_app(record)
        deployment = DeploymentRecord(
            id=self.new_id(), app=spec.id, kind=kind, version=version, config_version=config_version,
            from_version=app.version if app else None, instances=spec.instances, started_at=now,
            deadline_at=now + spec.upgrade_strategy.progress_deadline_seconds,
            auto_rollback=spec.upgrade_strategy.auto_rollback and kind != "rollback")
        self.state.save_deployment(deployment)
        out.append(Publish("app_changed", {"app": spec.id, "version": version, "instances": spec.instances}))
        out.append(Publish("deployment_step", deployment.view()))
        self.converge(spec.id, now, out)
        return deployment

    def _prune_versions(self, app: AppRecord) -> None:
        in_use = {i.version for i in self.state.instances_of(app.id)} | {app.version}
        while len(app.versions) > MAX_VERSIONS:
            victim = next((v for v in app.versions if v not in in_use), None)
            if victim is None:
                return
            app.versions.remove(victim)
            self.state.forget_version(app.id, victim)

    # --- effects helpers ------------------------------------------------------------------

    def _kill(self, instance: InstanceRecord, now: float, out: list[Effect]) -> None:
        instance.killing, instance.kill_asked_at = True, now
        self.state.save_instance(instance)
        out.append(Kill(instance.id, instance.agent_id, self.spec_of(instance).kill_grace_period_seconds))

    def _maybe_probe(self, instance: InstanceRecord, out: list[Effect]) -> None:
        check = self.spec_of(instance).readiness_check
        if check is None or instance.ready or not instance.ports:
            return
        port = instance.ports[check.port_index] if check.port_index < len(instance.ports) else instance.ports[0]
        scheme = "https" if check.protocol == "HTTPS" else "http"
        out.append(Probe(instance.id, f"{scheme}://{instance.host or instance.hostname}:{port}{check.path}",
                         check.interval_seconds, check.timeout_seconds, tuple(check.http_status_codes_for_ready)))

    def _expunge_if_due(self, instance: InstanceRecord, now: float, out: list[Effect]) -> None:
        if instance.state != TaskState.UNREACHABLE.value or instance.unreachable_since is None:
            return
        if now - instance.unreachable_since >= self.spec_of(instance).unreachable_strategy.expunge_after_seconds:
            self.state.drop_instance(instance.id)
            out.append(Publish("instance_expunged", {"app": instance.app, "task_id": instance.id,
                                                     **self.counts(instance.app)}))

    def update_demand(self, now: float, out: list[Effect]) -> None:
        """Declare what waits (and revive), or nothing (and suppress), when it changed."""
        shapes: list[tuple[Any, int]] = []
        for app_id in sorted(self.pending):
            count = self.pending[app_id]
            app = self.state.apps.get(app_id)
            if count <= 0 or app is None or app.removing or not self.backoff(app_id).may_launch(now):
                continue
            shapes.append((self.state.current_spec(app_id).task_resources(), count))
        declared = tuple(shapes)
        if declared != self._declared:
            out.append(Demand(declared, revive=bool(declared) and not self._declared))
            self._declared = declared


def same_config(a: AppSpec, b: AppSpec) -> bool:
    """Whether two specs differ at most in ``instances`` (a scale, not a new config)."""
    return msgspec.structs.replace(a, instances=0) == msgspec.structs.replace(b, instances=0)
