"""The services framework's REST API (docs/services.md), served on its own port and proxied by
the master under ``/frameworks/services/``.

A thin shell: it parses the request, calls a command (:mod:`.commands`, through the shell so its
effects run) or a view (:mod:`.views`), and writes JSON. App ids are paths (``/shop/cart``), so
the route is read from the right: ``/v1/apps/shop/cart/scale`` is the ``scale`` action of app
``/shop/cart`` unless an app ``/shop/cart/scale`` exists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from twisted.web import resource

from tepui.frameworks.services import commands, views
from tepui.frameworks.services.commands import CommandError
from tepui.frameworks.services.core import ServicesCore
from tepui.sdk.event_stream import EventHub

log = logging.getLogger("tepui.services.api")

APP_ACTIONS = {"scale", "restart", "rollback"}
APP_READS = {"versions", "tasks", "why"}

Run = Callable[..., dict[str, Any]]  # run(command, *args): executes its effects, returns the answer


def _json(request: Any, code: int, document: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(document, sort_keys=True).encode() + b"\n"


def _flag(request: Any, name: str) -> bool:
    values = request.args.get(name.encode(), [b"false"])
    return values[-1].lower() in (b"true", b"1", b"yes")


def _body_json(request: Any) -> dict[str, Any]:
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandError(400, "BAD_REQUEST", f"the body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        raise CommandError(400, "BAD_REQUEST", "the body must be a JSON object")
    return body


class ServicesApi(resource.Resource):
    """``/v1/...``: every route, one leaf (routing on the whole path, from the right)."""

    isLeaf = True

    def __init__(self, core: ServicesCore, run: Run, hub: EventHub, now: Callable[[], float],
                 subscribed: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self.core, self.run, self.hub, self.now, self.subscribed = core, run, hub, now, subscribed

    def render(self, request: Any) -> Any:
        method = request.method.decode()
        parts = [p.decode() for p in request.postpath if p]
        try:
            if not parts or parts[0] != "v1":
                raise CommandError(404, "NOT_FOUND", f"no route {request.path.decode()!r}: the API is under /v1 "
                                   "(see docs/services.md)")
            return self._route(request, method, parts[1:])
        except CommandError as exc:
            return _json(request, exc.status, exc.body())

    def _route(self, request: Any, method: str, parts: list[str]) -> Any:
        head = parts[0] if parts else ""
        if head == "health" and len(parts) == 1:
            self._allow(method, "GET")
            return _json(request, 200, self.subscribed())
        if head == "events" and len(parts) == 1:
            self._allow(method, "GET")
            return self.hub.attach(request)
        if head == "deployments":
            return self._deployments(request, method, parts[1:])
        if head == "apps":
            return self._apps(request, method, parts[1:])
        raise CommandError(404, "NOT_FOUND", f"no route {request.path.decode()!r} (see docs/services.md)")

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise CommandError(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here; use {' or '.join(allowed)}")

    def _apps(self, request: Any, method: str, parts: list[str]) -> Any:
        now = self.now()
        if not parts:
            self._allow(method, "GET", "POST")
            if method == "GET":
                label = request.args.get(b"label", [b""])[-1].decode()
                return _json(request, 200, views.list_apps(self.core, label, now))
            raw = request.content.read() if request.content is not None else b""
            content_type = (request.getHeader(b"content-type") or b"").decode()
            spec = commands.parse_spec(raw, content_type)
            answer = self.run(commands.deploy, spec, now, _flag(request, "force"))
            return _json(request, 201 if answer.get("created") else 200, answer)
        app_id = "/" + "/".join(parts)
        action = None
        if app_id not in self.core.state.apps and len(parts) > 1 and parts[-1] in APP_ACTIONS | APP_READS:
            app_id, action = "/" + "/".join(parts[:-1]), parts[-1]
        if app_id not in self.core.state.apps:
            known = ", ".join(sorted(self.core.state.apps)[:10]) or "none"
            raise CommandError(404, "UNKNOWN_APP", f"no app {app_id!r} (apps: {known}); `tepui apps list` shows them")
        force = _flag(request, "force")
        if action is None:
            self._allow(method, "GET", "DELETE")
            if method == "GET":
                return _json(request, 200, views.app_detail(self.core, app_id, now))
            return _json(request, 202, self.run(commands.remove, app_id, now))
        if action in APP_READS:
            self._allow(method, "GET")
            view = {"versions": lambda: views.versions(self.core, app_id),
                    "tasks": lambda: views.tasks(self.core, app_id),
                    "why": lambda: views.why(self.core, app_id, now)}[action]
            return _json(request, 200, view())
        self._allow(method, "POST")
        body = _body_json(request)
        if action == "scale":
            if "instances" not in body:
                raise CommandError(422, "INVALID_APP", 'give {"instances": N}', "instances")
            answer = self.run(commands.scale, app_id, body["instances"], now, force)
        elif action == "restart":
            answer = self.run(commands.restart, app_id, now, force)
        else:
            to = body.get("to")
            if to is not None and not isinstance(to, str):
                raise CommandError(422, "INVALID_REQUEST", "to must be a version string", "to")
            answer = self.run(commands.rollback, app_id, to, now, force)
        return _json(request, 200, answer)

    def _deployments(self, request: Any, method: str, parts: list[str]) -> Any:
        if not parts:
            self._allow(method, "GET")
            return _json(request, 200, views.deployments(self.core))
        deployment_id = "/".join(parts)
        self._allow(method, "GET", "DELETE")
        if method == "GET":
            deployment = self.core.state.deployments.get(deployment_id)
            if deployment is None:
                raise CommandError(404, "UNKNOWN_DEPLOYMENT",
                                   f"no deployment {deployment_id!r}; `tepui apps deployments` lists them")
            return _json(request, 200, deployment.view())
        return _json(request, 200, self.run(commands.cancel, deployment_id, _flag(request, "force"), self.now()))
