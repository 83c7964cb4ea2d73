"""The parts of a framework's REST API that the batch and cron frameworks write alike: the
``/v1`` root with refusals as JSON ``{"error", "reason", "field"}``, the JSON answer, a query
argument, a body's format from its Content-Type, and the 405 of a route.

Why here: each framework's ``api.py`` had grown these lines again; what stays there is its own
routes and the commands they call.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from twisted.web import resource

from tepui.sdk.framework_effects import CommandError

__all__ = ["YAML_TYPES", "VersionedApi", "allow", "body_format", "json_answer", "query_arg"]

YAML_TYPES = ("application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml")


def json_answer(request: Any, code: int, document: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(document, sort_keys=True).encode() + b"\n"


def query_arg(request: Any, name: str) -> str | None:
    values = request.args.get(name.encode())
    return values[-1].decode() if values else None


def body_format(content_type: str) -> Literal["yaml", "json"] | None:
    """The body's format from its Content-Type (None: JSON if it starts with ``{``, else YAML)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in YAML_TYPES:
        return "yaml"
    if kind == "application/json":
        return "json"
    return None


def allow(method: str, allowed: tuple[str, ...], docs: str) -> None:
    if method not in allowed:
        raise CommandError(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here; use {' or '.join(allowed)} "
                           f"({docs})")


class VersionedApi(resource.Resource):
    """``/v1/...``: every route, one leaf; a subclass routes what follows ``/v1`` and raises
    :class:`CommandError` to refuse. ``docs`` ends every refusal ("see docs/batch.md, ...")."""

    isLeaf = True
    docs = ""

    def render(self, request: Any) -> Any:
        method = request.method.decode()
        parts = [p.decode() for p in request.postpath if p]
        try:
            if not parts or parts[0] != "v1":
                raise CommandError(404, "NOT_FOUND", f"no route {request.path.decode()!r}: the API is under /v1 "
                                   f"({self.docs})")
            return self._route(request, method, parts[1:])
        except CommandError as exc:
            return json_answer(request, exc.status, exc.body())

    def _route(self, request: Any, method: str, parts: list[str]) -> Any:
        raise NotImplementedError

    def _allow(self, method: str, *allowed: str) -> None:
        allow(method, allowed, self.docs)
