"""How ``tepui apps`` shows the services framework's answers: aligned rich tables and short lines.

Kept apart from :mod:`tepui.cli.apps` (the commands and the HTTP calls) so that each reads on its
own; every function here takes decoded JSON as the contract in ``docs/services.md`` describes it
and prints it, and is lenient about a missing key (an older framework) rather than crashing.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED", "ROLLED_BACK")


def console(stderr: bool = False) -> Console:
    out = Console(stderr=stderr, highlight=False, emoji=False)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, emoji=False, width=250)  # piped: never wrap or cut rows at 80 columns
    return out


def table(title: str | None, columns: list[tuple[str, str]]) -> Table:
    result = Table(title=title, title_justify="left")
    for name, justify in columns:
        # Ids are never cut: a truncated id cannot be told apart or copied.
        result.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    return result


def age(at: Any, now: float | None = None) -> str:
    """``"42s"``, ``"2m"``, ``"3h"``, ``"5d"`` since the Unix time ``at``; ``"-"`` when unknown."""
    if not isinstance(at, (int, float)) or at <= 0:
        return "-"
    seconds = max(0, int((time.time() if now is None else now) - at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def labels_text(labels: Any) -> str:
    if not isinstance(labels, dict):
        return ""
    return ",".join(f"{k}={v}" if v != "" else str(k) for k, v in sorted(labels.items()))


def _tri(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def render_apps(apps: list[dict[str, Any]], out: Console) -> None:
    rows = table(None, [("ID", "left"), ("VERSION", "left"), ("INSTANCES", "right"), ("RUNNING", "right"),
                        ("STAGED", "right"), ("WAITING", "right"), ("DEPLOYMENT", "left"), ("LABELS", "left")])
    for app in sorted(apps, key=lambda a: str(a.get("id"))):
        waiting = str(app.get("waiting", 0))
        if app.get("backoff_seconds"):
            waiting += f" (backoff {app['backoff_seconds']:.0f}s)"
        rows.add_row(_text(app.get("id")), _text(app.get("version")),
                     f"{app.get('healthy', 0)}/{app.get('instances', 0)}", str(app.get("running", 0)),
                     str(app.get("staged", 0)), waiting, _text(app.get("deployment")),
                     escape(labels_text(app.get("labels"))))
    out.print(rows)


def render_tasks(tasks: list[dict[str, Any]], out: Console, title: str | None = None) -> None:
    rows = table(title, [("TASK", "left"), ("VERSION", "left"), ("STATE", "left"), ("HEALTHY", "left"),
                         ("READY", "left"), ("HOST", "left"), ("PORTS", "left"), ("STARTED", "right")])
    for task in sorted(tasks, key=lambda t: (t.get("started_at") or 0, str(t.get("task_id")))):
        state = str(task.get("state", "?")).removeprefix("TASK_")
        if task.get("killing"):
            state += " (killing)"
        ports = ",".join(str(p) for p in task.get("ports") or [])
        rows.add_row(_text(task.get("task_id")), _text(task.get("version")), escape(state),
                     _tri(task.get("healthy")), _tri(task.get("ready")),
                     _text(task.get("hostname") or task.get("host") or task.get("agent_id")), ports or "-",
                     age(task.get("started_at")))
    out.print(rows)


def render_versions(versions: list[dict[str, Any]], current: Any, out: Console) -> None:
    rows = table("Versions (newest first)", [("VERSION", "left"), ("CREATED", "right"), ("REASON", "left")])
    for version in versions:
        name = str(version.get("version"))
        rows.add_row(escape(name + (" (current)" if name == current else "")), age(version.get("created_at")),
                     _text(version.get("reason")))
    out.print(rows)


def render_app(app: dict[str, Any], out: Console) -> None:
    spec = app.get("spec") or {}
    facts = [
        ("app", app.get("id")),
        ("version", app.get("version")),
        ("instances", f"{app.get('healthy', 0)} healthy / {app.get('instances', 0)} wanted "
                      f"({app.get('running', 0)} running, {app.get('staged', 0)} staged, "
                      f"{app.get('unhealthy', 0)} unhealthy, {app.get('waiting', 0)} waiting)"),
        ("resources", f"{app.get('cpus') or spec.get('cpus') or 0:g} cpus, "
                      f"{app.get('mem') or spec.get('mem') or 0:g} MiB per instance"),
        ("command", spec.get("command") or " ".join(spec.get("args") or []) or None),
        ("image", ((spec.get("container") or {}).get("docker") or {}).get("image")
         if isinstance(spec.get("container"), dict) else None),
        ("labels", labels_text(app.get("labels")) or None),
        ("deployment", app.get("deployment") or "none running"),
    ]
    if app.get("backoff_seconds"):
        facts.append(("backoff", f"next launch in {app['backoff_seconds']:.0f}s (recent failures)"))
    failure = app.get("last_failure")
    if failure:
        facts.append(("last failure", f"{failure.get('task_id')} {failure.get('state')} {age(failure.get('at'))} "
                                      f"ago: {failure.get('message') or 'no message'}"))
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        if value is not None:
            out.print(f"[bold]{name:<{width}}[/bold]  {escape(str(value))}", soft_wrap=True)
    tasks = app.get("tasks") or []
    if tasks:
        render_tasks(tasks, out, title="Tasks")
    else:
        out.print("no tasks" + (" (`tepui apps why` says what holds them back)" if app.get("waiting") else ""))
    if app.get("versions"):
        render_versions(app["versions"], app.get("version"), out)


def render_why(why: dict[str, Any], out: Console) -> None:
    out.print(f"[bold]{escape(str(why.get('app')))}[/bold]: {why.get('waiting', 0)} instance(s) waiting, "
              f"{why.get('offers_seen', 0)} offer(s) seen in the last minute", soft_wrap=True)
    if why.get("backoff_seconds"):
        out.print(f"launches are held back by the failure backoff for {why['backoff_seconds']:.0f}s more")
    reasons = why.get("reasons") or {}
    if reasons:
        rows = table("Why offers were declined (last minute)", [("REASON", "left"), ("COUNT", "right")])
        for reason, count in reasons.items():  # the server's order: most frequent first
            rows.add_row(escape(str(reason)), str(count))
        out.print(rows)
    recent = why.get("recent") or []
    if recent:
        rows = table("Recent decisions", [("AGE", "right"), ("HOST", "left"), ("REASON", "left")])
        for decision in recent:
            rows.add_row(age(decision.get("at")), _text(decision.get("hostname") or decision.get("agent_id")),
                         _text(decision.get("reason")))
        out.print(rows)
    if why.get("summary"):
        out.print(f"[bold]{escape(str(why['summary']))}[/bold]", soft_wrap=True)


def render_deployments(deployments: list[dict[str, Any]], out: Console) -> None:
    rows = table(None, [("ID", "left"), ("APP", "left"), ("KIND", "left"), ("VERSION", "left"), ("STATUS", "left"),
                        ("HEALTHY", "right"), ("OLD", "right"), ("STARTED", "right"), ("MESSAGE", "left")])
    for dep in deployments:
        progress = dep.get("progress") or {}
        version = "(removed)" if dep.get("kind") == "remove" else str(dep.get("version") or "-")
        if dep.get("from_version") and dep.get("from_version") != dep.get("version"):
            version = f"{dep['from_version']} -> {version}"
        rows.add_row(_text(dep.get("id")), _text(dep.get("app")), _text(dep.get("kind")), escape(version),
                     _text(dep.get("status")), f"{progress.get('new_healthy', 0)}/{progress.get('target', 0)}",
                     str(progress.get("old_running", 0)), age(dep.get("started_at")), _text(dep.get("message")))
    out.print(rows)


def describe(dep: dict[str, Any]) -> str:
    """The progress bar's text: what the deployment does, where it is, what is left of the old."""
    progress = dep.get("progress") or {}
    status = str(dep.get("status", "RUNNING")).lower().replace("_", " ")
    if dep.get("kind") == "remove":
        return f"removing {escape(str(dep.get('app')))}: {status}, {progress.get('old_running', 0)} still running"
    return (f"{escape(str(dep.get('app')))} {dep.get('kind', 'deploy')} -> {escape(str(dep.get('version')))}: "
            f"{status}, {progress.get('old_running', 0)} old running")
