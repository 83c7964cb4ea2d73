"""The API's read-only values (docs/services.md): apps, tasks, deployments, "why".

Read from the core's state and soft state at ``now``; nothing here changes anything, so the API
can answer reads without a batch.
"""

from __future__ import annotations

from typing import Any

from tepui.frameworks.services.core import ServicesCore
from tepui.frameworks.services.records import InstanceRecord
from tepui.sdk import TaskState

RUNNING = TaskState.RUNNING.value
STAGED = (TaskState.STAGING.value, TaskState.STARTING.value)


def parse_selector(text: str) -> list[tuple[str, str | None]]:
    """``env=prod,team=travel`` → [("env", "prod"), ("team", "travel")]; ``k`` alone: present."""
    selector: list[tuple[str, str | None]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        selector.append((key.strip(), value.strip() if eq else None))
    return selector


def _matches(labels: dict[str, str], selector: list[tuple[str, str | None]]) -> bool:
    return all(key in labels and (value is None or labels[key] == value) for key, value in selector)


def task_view(core: ServicesCore, instance: InstanceRecord) -> dict[str, Any]:
    return {
        "task_id": instance.id, "app": instance.app, "version": instance.version,
        "agent_id": instance.agent_id, "hostname": instance.hostname, "host": instance.host,
        "state": instance.state, "healthy": instance.healthy if core.spec_of(instance).health_checks
        else (True if instance.state == RUNNING else None),
        "ready": core.ready(instance), "ports": list(instance.ports), "started_at": instance.launched_at,
        "running_at": instance.running_at, "killing": instance.killing, "message": instance.message,
    }


def app_summary(core: ServicesCore, app_id: str, now: float) -> dict[str, Any]:
    app = core.state.apps[app_id]
    spec = core.state.current_spec(app_id)
    live = core.state.instances_of(app_id)
    deployment = core.state.running_deployment(app_id)
    backoff = core.backoff(app_id).remaining(now) if not app.removing else 0.0
    return {
        "id": app_id, "version": app.version, "instances": spec.instances,
        "running": sum(1 for i in live if i.state == RUNNING),
        "healthy": sum(1 for i in live if not i.killing and core.healthy(i)),
        "unhealthy": sum(1 for i in live if i.state == RUNNING and not core.healthy(i)),
        "staged": sum(1 for i in live if i.state in STAGED),
        "waiting": max(0, core.pending.get(app_id, 0)),
        "deployment": deployment.id if deployment else None,
        "removing": app.removing,
        "labels": dict(spec.labels), "backoff_seconds": round(max(0.0, backoff), 3),
        "cpus": spec.cpus, "mem": spec.mem,
    }


def list_apps(core: ServicesCore, selector: str, now: float) -> dict[str, Any]:
    wanted = parse_selector(selector)
    apps = [app_summary(core, a, now) for a in sorted(core.state.apps)
            if _matches(core.state.current_spec(a).labels, wanted)]
    return {"apps": apps}


def versions(core: ServicesCore, app_id: str) -> dict[str, Any]:
    app = core.state.apps[app_id]
    records = [core.state.versions[(app_id, v)] for v in reversed(app.versions) if (app_id, v) in core.state.versions]
    return {"versions": [{"version": r.version, "created_at": r.created_at, "reason": r.reason,
                          "config_version": r.config_version} for r in records]}


def tasks(core: ServicesCore, app_id: str) -> dict[str, Any]:
    live = sorted(core.state.instances_of(app_id), key=lambda i: (i.launched_at, i.id))
    return {"tasks": [task_view(core, i) for i in live]}


def app_detail(core: ServicesCore, app_id: str, now: float) -> dict[str, Any]:
    return {
        **app_summary(core, app_id, now),
        "spec": core.state.current_spec(app_id).to_data(),
        **versions(core, app_id),
        **tasks(core, app_id),
        "last_failure": core.last_failure.get(app_id),
    }


def deployments(core: ServicesCore) -> dict[str, Any]:
    records = sorted(core.state.deployments.values(),
                     key=lambda d: (d.status != "RUNNING", -(d.finished_at or d.started_at), d.id))
    return {"deployments": [d.view() for d in records]}


def why(core: ServicesCore, app_id: str, now: float) -> dict[str, Any]:
    app = core.state.apps[app_id]
    waiting = 0 if app.removing else max(0, core.pending.get(app_id, 0))
    backoff = core.backoff(app_id).remaining(now) if waiting else 0.0
    return core.why.report(app_id, waiting, backoff, core.config.role, now)
