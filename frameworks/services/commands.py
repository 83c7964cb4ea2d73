"""What operators ask of the services framework: deploy, scale, restart, roll back, remove, cancel.

Each command checks everything first and raises :class:`CommandError` (an HTTP status, a reason
code, a sentence saying what to do, and the field at fault for spec errors) before it changes
anything — an invalid request deploys nothing. A valid one becomes a new app version and a
deployment through :meth:`ServicesCore.start_deployment`, and returns the API's answer with the
effects of the batch.

One deployment per app at a time, as in Marathon: a command that would start another while one
runs is refused with 409 ``APP_LOCKED`` unless ``force`` (the running one is then cancelled and
superseded).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from tepui.frameworks.services.core import ServicesCore, same_config
from tepui.frameworks.services.effects import Effect, Publish
from tepui.frameworks.services.records import DeploymentRecord
from tepui.frameworks.services.spec import AppSpec, SpecError, parse_app
from tepui.sdk.framework_effects import CommandError


Answer = tuple[dict[str, Any], list[Effect]]


def _app(core: ServicesCore, app_id: str) -> None:
    if app_id not in core.state.apps:
        known = ", ".join(sorted(core.state.apps)[:10]) or "none"
        raise CommandError(404, "UNKNOWN_APP", f"no app {app_id!r} (apps: {known}); `tepui apps list` shows them all")


def _unlocked(core: ServicesCore, app_id: str, force: bool) -> None:
    app = core.state.apps.get(app_id)
    if app is not None and app.removing:
        raise CommandError(409, "APP_LOCKED", f"app {app_id} is being removed; wait until it is gone, then deploy again")
    running = core.state.running_deployment(app_id)
    if running is not None and not force:
        raise CommandError(409, "APP_LOCKED",
                           f"app {app_id} has a deployment running ({running.id}, {running.kind} to version "
                           f"{running.version}); wait for it, cancel it (`tepui apps cancel {running.id}`), or "
                           "repeat with --force to supersede it")


def _answer(core: ServicesCore, spec: AppSpec, kind: str, reason: str, now: float, force: bool,
            rollback_of: str | None = None, restart: bool = False) -> Answer:
    out: list[Effect] = []
    deployment = core.start_deployment(spec, kind, reason, now, out, rollback_of=rollback_of, restart=restart)
    core.update_demand(now, out)
    return ({"app": spec.id, "version": deployment.version, "deployment": deployment.id}, core.finish(out))


def deploy(core: ServicesCore, spec: AppSpec, now: float, force: bool = False) -> Answer:
    """Creates the app, or makes ``spec`` its new version (200 with no deployment if unchanged)."""
    app = core.state.apps.get(spec.id)
    if app is not None and not app.removing and core.state.current_spec(spec.id) == spec:
        return {"app": spec.id, "version": app.version, "deployment": None, "created": False}, []
    _unlocked(core, spec.id, force)
    kind = "deploy"
    if app is not None and same_config(core.state.current_spec(spec.id), spec):
        kind = "scale"
    answer, effects = _answer(core, spec, kind, kind, now, force)
    return {**answer, "created": app is None}, effects


def scale(core: ServicesCore, app_id: str, instances: Any, now: float, force: bool = False) -> Answer:
    _app(core, app_id)
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 0:
        raise CommandError(422, "INVALID_APP", f"instances must be a whole number >= 0, got {instances!r}",
                           "instances")
    _unlocked(core, app_id, force)
    spec = msgspec.structs.replace(core.state.current_spec(app_id), instances=instances)
    return _answer(core, spec, "scale", f"scale to {instances}", now, force)


def restart(core: ServicesCore, app_id: str, now: float, force: bool = False) -> Answer:
    """Replaces every instance under the upgrade strategy (a new config version, same spec)."""
    _app(core, app_id)
    _unlocked(core, app_id, force)
    return _answer(core, core.state.current_spec(app_id), "restart", "restart", now, force, restart=True)


def rollback(core: ServicesCore, app_id: str, to: str | None, now: float, force: bool = False) -> Answer:
    """Deploys an earlier version again (the one before the current one by default)."""
    _app(core, app_id)
    app = core.state.apps[app_id]
    if to is None:
        if len(app.versions) < 2:
            raise CommandError(409, "NO_EARLIER_VERSION",
                               f"app {app_id} has only one version; there is nothing to roll back to")
        to = app.versions[-2]
    if (app_id, to) not in core.state.versions:
        recent = ", ".join(reversed(app.versions[-5:]))
        raise CommandError(404, "UNKNOWN_VERSION",
                           f"app {app_id} has no version {to!r} (latest: {recent}); `tepui apps show {app_id}` lists them")
    _unlocked(core, app_id, force)
    spec = core.state.spec(app_id, to)
    return _answer(core, spec, "rollback", f"rollback to {to}", now, force, rollback_of=to)


def remove(core: ServicesCore, app_id: str, now: float) -> Answer:
    """Kills every instance, then forgets the app (a ``remove`` deployment tracks it)."""
    _app(core, app_id)
    app = core.state.apps[app_id]
    out: list[Effect] = []
    running = core.state.running_deployment(app_id)
    if app.removing and running is not None:
        return {"app": app_id, "deployment": running.id}, []
    if running is not None:
        core.end_deployment(running, "CANCELLED", "superseded by the removal of the app", now, out)
    app.removing = True
    core.state.save_app(app)
    deployment = DeploymentRecord(id=core.new_id(), app=app_id, kind="remove", version=app.version,
                                  config_version=app.config_version, from_version=app.version, instances=0,
                                  started_at=now, deadline_at=now + 24 * 3600.0)
    core.state.save_deployment(deployment)
    out.append(Publish("deployment_step", deployment.view()))
    core.converge(app_id, now, out)
    core.update_demand(now, out)
    return {"app": app_id, "deployment": deployment.id}, core.finish(out)


def cancel(core: ServicesCore, deployment_id: str, force: bool, now: float) -> Answer:
    """Stops a running deployment. Without ``force`` the app returns to the version it had before
    (a new rollback deployment); with ``force`` it keeps the new target, and self-healing goes on
    converging to it (Marathon's ``DELETE /v2/deployments/{id}?force=true``)."""
    deployment = core.state.deployments.get(deployment_id)
    if deployment is None:
        raise CommandError(404, "UNKNOWN_DEPLOYMENT",
                           f"no deployment {deployment_id!r}; `tepui apps deployments` lists them")
    if deployment.status != "RUNNING":
        raise CommandError(409, "DEPLOYMENT_FINISHED",
                           f"deployment {deployment_id} already ended ({deployment.status}); nothing to cancel")
    out: list[Effect] = []
    app = core.state.apps.get(deployment.app)
    rollback_id = None
    if app is not None and deployment.kind != "remove" and not force and deployment.from_version is not None \
            and (app.id, deployment.from_version) in core.state.versions:
        rollback_id = core.end_with_rollback(deployment, "CANCELLED", "cancelled by request",
                                             f"cancel of {deployment.id}", now, out).id
    else:
        core.end_deployment(deployment, "CANCELLED", "cancelled by request", now, out)
        if app is not None and deployment.kind == "remove":
            app.removing = False
            core.state.save_app(app)
    if app is not None:
        core.converge(app.id, now, out)
    core.update_demand(now, out)
    return {"deployment": deployment_id, "rollback": rollback_id}, core.finish(out)


def parse_spec(body: bytes, content_type: str) -> AppSpec:
    """The request body as an app spec: YAML when the content type says so, else JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(400, "BAD_REQUEST", "the body must be UTF-8 text (an app spec in JSON or YAML)")
    fmt: Literal["yaml", "json"] | None = (
        "yaml" if "yaml" in content_type else "json" if "json" in content_type else None)
    try:
        return parse_app(text, fmt)
    except SpecError as exc:
        raise CommandError(422, "INVALID_APP", f"invalid app spec: {exc.field}: {exc.message}", exc.field)


__all__ = ["CommandError", "cancel", "deploy", "parse_spec", "remove", "restart", "rollback",
           "scale"]
