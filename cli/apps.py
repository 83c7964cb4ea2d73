"""``tepui apps``: deploy, scale, inspect and remove long-running apps of the services framework.

A client of the framework's REST API (``docs/services.md``) through the master, which proxies
``/frameworks/services/...`` to it: only the master's HTTP address is needed (``--http``, found
as ``tepui state`` finds it), and the token comes from the same place (:mod:`tepui.cli.http_client`).
Commands that start a deployment follow it with a progress bar until it ends (``--detach`` does
not wait): exit 0 when it succeeded, 1 when it failed, was cancelled or rolled back, 2 when
``--timeout`` ran out first (the deployment keeps running).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
from pathlib import Path
from typing import IO, Any, Callable

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tepui.cli import apps_render as render
from tepui.cli.http_client import request_json, unauthorized_message
from tepui.cli.state import DEFAULT_HTTP, http_address

#: Seconds between two polls of a running deployment (tests make it shorter).
POLL_INTERVAL = 0.5
#: Seconds one HTTP call may take: longer than the master proxy's 30 s, so its 504 (which says why) comes first.
REQUEST_TIMEOUT = 35.0
EXIT_TIMED_OUT = 2
FRAMEWORK = "services"


class AppsError(click.ClickException):
    """An error as ``error: <sentence>`` (plus ``field:`` and ``hint:`` lines), exit code 1."""

    def __init__(self, message: str, reason: str | None = None, field: str | None = None,
                 hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.reason, self.field, self.hint, self.status = reason, field, hint, status

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)
        if self.field:
            click.echo(f"field: {self.field}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)


def app_path(app_id: str) -> str:
    """The app id as the API writes it (``/shop/cart``), from ``shop/cart`` or ``/shop/cart``."""
    stripped = app_id.strip().strip("/")
    if not stripped:
        raise click.BadParameter(f"{app_id!r} is not an app id; ids look like /shop/cart", param_hint="ID")
    return "/" + stripped


def _quote(value: str) -> str:
    return urllib.parse.quote(value.strip("/"), safe="/")


class Api:
    """The framework's ``/v1`` through the master's proxy."""

    def __init__(self, http: str) -> None:
        self.master = (http if http.startswith(("http://", "https://")) else f"http://{http}").rstrip("/")
        self.base = f"{self.master}/frameworks/{FRAMEWORK}/v1"

    def call(self, method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None,
             data: bytes | None = None, content_type: str | None = None) -> Any:
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        try:
            status, document = request_json(url, REQUEST_TIMEOUT, method, body, data=data, content_type=content_type)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AppsError(f"cannot reach the master's HTTP API at {self.master}: {reason}. Is a cluster running? "
                            "Start one with `tepui up`, or pass --http HOST:PORT.") from None
        if 200 <= status < 300:
            return document if isinstance(document, dict) else {}
        raise self._refused(status, document if isinstance(document, dict) else {}, method, path)

    def _refused(self, status: int, document: dict[str, Any], method: str, path: str) -> AppsError:
        reason, message, field = document.get("reason"), document.get("error"), document.get("field")
        if status == 401:
            return AppsError(unauthorized_message(str(message or "")), reason, status=status)
        if reason == "UNKNOWN_FRAMEWORK":
            return AppsError(f"the services framework is not running: the master at {self.master} knows no "
                             f"framework named {FRAMEWORK!r}. Start it with `tepui services` (`tepui up` starts "
                             "one with the cluster), then try again.", reason, status=status)
        if message:
            hint = None
            if reason == "APP_LOCKED" and "--force" not in str(message):
                hint = ("pass --force to replace the running deployment, or wait for it to end "
                        "(`tepui apps deployments`), or cancel it with `tepui apps cancel DEPLOYMENT`.")
            return AppsError(str(message), reason, str(field) if field else None, hint, status)
        if status == 404:
            return AppsError(f"the master at {self.master} answered 404 to {method} /frameworks/{FRAMEWORK}/v1{path} "
                             "without saying why: it may predate the frameworks proxy (upgrade it), or the "
                             "services framework is not running (start it with `tepui services`).", status=status)
        return AppsError(f"the services framework answered HTTP {status} to {method} {path} without an "
                         "explanation; look at its log (the output of `tepui services`).", status=status)


def _http_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--http", default=DEFAULT_HTTP, show_default=True, callback=http_address,
                        help="Master HTTP HOST:PORT or zk://H1:P1,H2:P2/PATH ($TEPUI_MASTER_HTTP).")(function)


def _json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer as it is.")(function)


def _wait_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--timeout", type=click.FloatRange(0, min_open=True), default=None,
                            help="Stop waiting after this many seconds (exit 2; the deployment keeps "
                            "running).")(function)
    return click.option("--detach", "-d", is_flag=True,
                        help="Do not wait for the deployment: print its id and return.")(function)


def _force(force: bool) -> dict[str, str] | None:
    return {"force": "true"} if force else None


def _print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


# --- following a deployment --------------------------------------------------------------------

def _poll(api: Api, deployment_id: str, app: str) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = api.call("GET", f"/deployments/{urllib.parse.quote(deployment_id, safe='')}")
        return answer
    except AppsError as exc:
        if exc.reason != "UNKNOWN_DEPLOYMENT":
            raise
    # A removal forgets its app; a framework that forgot the deployment too still tells by the app.
    try:
        api.call("GET", f"/apps/{_quote(app)}")
    except AppsError as exc:
        if exc.reason == "UNKNOWN_APP":
            return {"id": deployment_id, "app": app, "kind": "remove", "status": "SUCCEEDED", "progress": {}}
    raise AppsError(f"the framework no longer knows deployment {deployment_id} (was it restarted?). See where "
                    f"{app} stands with `tepui apps show {app}`.", "UNKNOWN_DEPLOYMENT")


def follow(api: Api, deployment_id: str, app: str, timeout: float | None, bar: bool = True) -> None:
    """Shows the deployment's progress until it ends, then exits 0, 1 or 2 (see the module doc)."""
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if bar:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    deadline = None if timeout is None else time.monotonic() + timeout
    dep: dict[str, Any] = {"id": deployment_id, "app": app, "status": "RUNNING"}
    try:
        with Progress(*columns, console=render.console(stderr=True)) as progress:
            task = progress.add_task(f"{app}: starting", total=None)
            while True:
                dep = _poll(api, deployment_id, app)
                counts = dep.get("progress") or {}
                progress.update(task, description=render.describe(dep),
                                total=counts.get("target", 0) if bar else None,
                                completed=counts.get("new_healthy", 0) if bar else 0)
                if dep.get("status") in render.FINISHED:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        click.echo(f"stopped watching; deployment {deployment_id} keeps running (`tepui apps show {app}`, "
                   f"`tepui apps cancel {deployment_id}` to stop it)", err=True)
        sys.exit(130)
    finish(dep, timeout)


def finish(dep: dict[str, Any], timeout: float | None) -> None:
    app, status, deployment_id = dep.get("app"), dep.get("status"), dep.get("id")
    if status == "SUCCEEDED":
        if dep.get("kind") == "remove":
            click.echo(f"✓ {app} removed")
        else:
            healthy = (dep.get("progress") or {}).get("new_healthy", 0)
            click.echo(f"✓ {app} version {dep.get('version')}: {healthy} healthy")
        sys.exit(0)
    if status not in render.FINISHED:
        click.echo(f"deployment {deployment_id} of {app} is still {status} after {timeout:g}s; it keeps running. "
                   f"Follow it with `tepui apps show {app}`, or stop it with `tepui apps cancel {deployment_id}`.",
                   err=True)
        sys.exit(EXIT_TIMED_OUT)
    message = dep.get("message") or "no message"
    click.echo(f"✗ {app} {dep.get('kind', 'deployment')} to version {dep.get('version')} {status}: {message}",
               err=True)
    if dep.get("rollback"):
        click.echo(f"rollback deployment {dep['rollback']} returns {app} to version {dep.get('from_version')}; "
                   "follow it with `tepui apps deployments`.", err=True)
    click.echo(f"`tepui apps show {app}` shows the last failure; `tepui apps why {app}` what holds launches back.",
               err=True)
    sys.exit(1)


def started(api: Api, answer: dict[str, Any], app: str, detach: bool, timeout: float | None,
            bar: bool = True) -> None:
    """After a call that may start a deployment: report it, then follow it unless ``detach``."""
    app = str(answer.get("app") or app)
    deployment = answer.get("deployment")
    if isinstance(deployment, dict):
        deployment = deployment.get("id")
    if not deployment:
        click.echo(f"✓ {app} version {answer.get('version')}: nothing to change")
        return
    if detach:
        click.echo(f"deployment {deployment} started for {app}"
                   + (f" version {answer['version']}" if answer.get("version") else "")
                   + f"; follow it with `tepui apps show {app}` or `tepui apps deployments`.")
        return
    follow(api, str(deployment), app, timeout, bar)


# --- commands -----------------------------------------------------------------------------------

@click.group("apps")
def apps_command() -> None:
    """Long-running apps of the services framework (`tepui services`).

    \b
    tepui apps deploy app.yaml
    tepui apps list -l env=prod
    tepui apps scale /shop/cart 5
    tepui apps why /shop/cart
    """


def _read_spec(file: str) -> tuple[bytes, str]:
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise AppsError(f"cannot read {file}: {exc.strerror or exc}. Check the path, or pass - to read "
                        "stdin.") from None
    if not data.strip():
        raise AppsError(f"{'stdin' if file == '-' else file} is empty; write an app spec (see docs/services.md).")
    suffix = Path(file).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return data, "application/yaml"
    if suffix == ".json" or data.lstrip()[:1] in (b"{", b"["):
        return data, "application/json"
    return data, "application/yaml"  # stdin or another name: JSON starts with {, anything else is YAML


@apps_command.command("deploy")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--force", is_flag=True, help="Deploy even while a deployment of the app runs (it is replaced).")
@_wait_options
@_http_option
def deploy_command(file: str, force: bool, detach: bool, timeout: float | None, http: str) -> None:
    """Create or update an app from a YAML or JSON spec (FILE, or - for stdin)."""
    data, content_type = _read_spec(file)
    api = Api(http)
    answer = api.call("POST", "/apps", query={"force": "true"} if force else None, data=data,
                      content_type=content_type)
    started(api, answer, str(answer.get("app")), detach, timeout)


@apps_command.command("list")
@click.option("--label", "-l", "labels", multiple=True,
              help="Only apps with these labels: k=v,k2=v2 (every one must match; k alone: label present).")
@_json_option
@_http_option
def list_command(labels: tuple[str, ...], as_json: bool, http: str) -> None:
    """List the apps with their instances and running deployments."""
    label = ",".join(part.strip() for item in labels for part in item.split(",") if part.strip())
    answer = Api(http).call("GET", "/apps", query={"label": label} if label else None)
    if as_json:
        _print_json(answer)
        return
    apps = answer.get("apps") or []
    if not apps:
        click.echo(f"no apps with labels {label}" if label else
                   "no apps yet; deploy one with `tepui apps deploy FILE`")
        return
    render.render_apps(apps, render.console())


@apps_command.command("show")
@click.argument("app_id", metavar="ID")
@_json_option
@_http_option
def show_command(app_id: str, as_json: bool, http: str) -> None:
    """Show an app: its state, tasks, versions and last failure."""
    app = Api(http).call("GET", f"/apps/{_quote(app_path(app_id))}")
    if as_json:
        _print_json(app)
    else:
        render.render_app(app, render.console())


@apps_command.command("tasks")
@click.argument("app_id", metavar="ID")
@_json_option
@_http_option
def tasks_command(app_id: str, as_json: bool, http: str) -> None:
    """List an app's tasks: state, health, readiness, host and ports."""
    app = app_path(app_id)
    answer = Api(http).call("GET", f"/apps/{_quote(app)}/tasks")
    if as_json:
        _print_json(answer)
    elif not answer.get("tasks"):
        click.echo(f"{app} has no tasks; `tepui apps why {app}` says why none was launched")
    else:
        render.render_tasks(answer["tasks"], render.console())


@apps_command.command("why")
@click.argument("app_id", metavar="ID")
@_json_option
@_http_option
def why_command(app_id: str, as_json: bool, http: str) -> None:
    """Why an app's instances are not launched: the offers seen and why each was declined."""
    answer = Api(http).call("GET", f"/apps/{_quote(app_path(app_id))}/why")
    if as_json:
        _print_json(answer)
    else:
        render.render_why(answer, render.console())


@apps_command.command("scale")
@click.argument("app_id", metavar="ID")
@click.argument("instances", metavar="N", type=click.IntRange(0))
@click.option("--force", is_flag=True, help="Even while a deployment of the app runs (it is replaced).")
@_wait_options
@_http_option
def scale_command(app_id: str, instances: int, force: bool, detach: bool, timeout: float | None, http: str) -> None:
    """Run N instances of an app."""
    app, api = app_path(app_id), Api(http)
    answer = api.call("POST", f"/apps/{_quote(app)}/scale", {"instances": instances}, query=_force(force))
    started(api, answer, app, detach, timeout)


@apps_command.command("restart")
@click.argument("app_id", metavar="ID")
@click.option("--force", is_flag=True, help="Even while a deployment of the app runs (it is replaced).")
@_wait_options
@_http_option
def restart_command(app_id: str, force: bool, detach: bool, timeout: float | None, http: str) -> None:
    """Replace every instance of an app, under its upgrade strategy."""
    app, api = app_path(app_id), Api(http)
    answer = api.call("POST", f"/apps/{_quote(app)}/restart", {}, query=_force(force))
    started(api, answer, app, detach, timeout)


@apps_command.command("rollback")
@click.argument("app_id", metavar="ID")
@click.option("--to", "to_version", default=None, help="The version to return to (default: the previous one).")
@click.option("--force", is_flag=True, help="Even while a deployment of the app runs (it is replaced).")
@_wait_options
@_http_option
def rollback_command(app_id: str, to_version: str | None, force: bool, detach: bool, timeout: float | None, http: str) -> None:
    """Return an app to an earlier version (`tepui apps show ID` lists them)."""
    app, api = app_path(app_id), Api(http)
    answer = api.call("POST", f"/apps/{_quote(app)}/rollback", {"to": to_version} if to_version else {},
                      query=_force(force))
    started(api, answer, app, detach, timeout)


@apps_command.command("rm")
@click.argument("app_id", metavar="ID")
@_wait_options
@_http_option
def rm_command(app_id: str, detach: bool, timeout: float | None, http: str) -> None:
    """Kill every instance of an app, then forget it."""
    app, api = app_path(app_id), Api(http)
    answer = api.call("DELETE", f"/apps/{_quote(app)}")
    if not answer.get("deployment"):
        click.echo(f"✓ {app} removed")
        return
    started(api, answer, app, detach, timeout, bar=False)


@apps_command.command("deployments")
@_json_option
@_http_option
def deployments_command(as_json: bool, http: str) -> None:
    """List running deployments, then the last finished ones."""
    answer = Api(http).call("GET", "/deployments")
    if as_json:
        _print_json(answer)
    elif not answer.get("deployments"):
        click.echo("no deployments yet")
    else:
        render.render_deployments(answer["deployments"], render.console())


@apps_command.command("cancel")
@click.argument("deployment_id", metavar="DEPLOYMENT")
@click.option("--force", is_flag=True,
              help="Leave the app where it is; without it, the app returns to the version it had before.")
@_http_option
def cancel_command(deployment_id: str, force: bool, http: str) -> None:
    """Cancel a running deployment (`tepui apps deployments` lists them)."""
    answer = Api(http).call("DELETE", f"/deployments/{urllib.parse.quote(deployment_id, safe='')}",
                            query={"force": "true" if force else "false"})
    cancelled = answer.get("deployment") or deployment_id
    if isinstance(cancelled, dict):
        cancelled = cancelled.get("id", deployment_id)
    click.echo(f"✓ deployment {cancelled} cancelled")
    if answer.get("rollback"):
        click.echo(f"rollback deployment {answer['rollback']} returns the app to the version it had before; "
                   "follow it with `tepui apps deployments`.")
    elif force:
        click.echo("the app stays as the cancelled deployment left it; `tepui apps show ID` shows where it stands.")
