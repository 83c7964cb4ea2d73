"""Operator endpoints of the master's HTTP API: ``/weights``, ``/quota``, ``/roles``.

Shapes follow Mesos where it has them (``/weights`` is a list of ``{"role", "weight"}``);
quota amounts are plain ``{"cpus": 4, "mem": 4096}`` maps of scalars. Errors: a body that is
not JSON is 400; a JSON body with a bad field is 422 naming the field; neither changes anything.
Mutating calls need a token once the security issue lands (documented in docs/security.md).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from twisted.web import resource

from tepui.master.events import OperatorError, UpdateQuota, UpdateWeights
from tepui.master.http.api import json_response
from tepui.offers.allocator import Allocator
from tepui.sdk.resources import SCALE, InvalidResources, Resources

Handle = Callable[[Any], list[OperatorError]]


class BadRequest(Exception):
    def __init__(self, code: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def _body(request: Any) -> Any:
    raw = request.content.read()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise BadRequest(400, f"the body is not valid JSON: {exc}") from None


def _error(request: Any, exc: BadRequest) -> bytes:
    document = {"error": exc.message}
    if exc.field:
        document["field"] = exc.field
    return json_response(request, exc.code, document)


def _scalars(value: Any, field: str) -> Resources | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(422, f"{field} must be a map of scalar resources, e.g. {{\"cpus\": 4, \"mem\": 4096}}", field)
    parts = []
    for name, amount in value.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
            raise BadRequest(422, f"{field}.{name} must be a number >= 0, got {amount!r}", f"{field}.{name}")
        parts.append(f"{name}:{amount}")
    try:
        return Resources.parse(";".join(parts))
    except InvalidResources as exc:
        raise BadRequest(422, f"{field}: {exc}", field) from None


def _amounts(fixed: dict[str, int]) -> dict[str, float]:
    return {name: amount / SCALE for name, amount in sorted(fixed.items())}


class _Endpoint(resource.Resource):
    def __init__(self, allocator: Allocator, handle: Handle) -> None:
        super().__init__()
        self.allocator, self.handle = allocator, handle

    def _apply(self, request: Any, event: Any, answer: Callable[[], Any]) -> bytes:
        errors = self.handle(event)
        if errors:
            first = errors[0]
            return _error(request, BadRequest(422, first.message, first.field))
        return json_response(request, 200, answer())


class WeightsEndpoint(_Endpoint):
    isLeaf = True

    def weights(self) -> list[dict[str, Any]]:
        return [{"role": role, "weight": weight} for role, weight in sorted(self.allocator.weights().items())]

    def render_GET(self, request: Any) -> bytes:
        return json_response(request, 200, self.weights())

    def render_PUT(self, request: Any) -> bytes:
        try:
            body = _body(request)
            if not isinstance(body, list):
                raise BadRequest(422, 'the body must be a list like [{"role": "eng", "weight": 2.0}]')
            weights: dict[str, float] = {}
            for i, item in enumerate(body):
                if not isinstance(item, dict) or not isinstance(item.get("role"), str):
                    raise BadRequest(422, f"[{i}].role must be a string", f"[{i}].role")
                weight = item.get("weight")
                if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                    raise BadRequest(422, f"[{i}].weight must be a number > 0", f"[{i}].weight")
                weights[item["role"]] = float(weight)
        except BadRequest as exc:
            return _error(request, exc)
        return self._apply(request, UpdateWeights(weights), self.weights)

    render_POST = render_PUT


class QuotaEndpoint(_Endpoint):
    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return _QuotaRole(self, path.decode(errors="replace"))

    def quotas(self) -> dict[str, Any]:
        infos = []
        for role, quota in sorted(self.allocator.quotas.items()):
            infos.append({"role": role, "guarantee": _amounts(quota.guarantee), "limit": _amounts(quota.limit),
                          "consumed": _amounts(self.allocator.consumed(role))})
        return {"infos": infos}

    def render_GET(self, request: Any) -> bytes:
        return json_response(request, 200, self.quotas())

    def render_POST(self, request: Any) -> bytes:
        try:
            body = _body(request)
            if not isinstance(body, dict) or not isinstance(body.get("role"), str):
                raise BadRequest(422, 'the body must look like {"role": "eng", "guarantee": {...}, "limit": {...}}', "role")
            guarantee = _scalars(body.get("guarantee"), "guarantee")
            limit = _scalars(body.get("limit"), "limit")
            if guarantee is None and limit is None:
                raise BadRequest(422, "give a guarantee, a limit or both (DELETE /quota/ROLE removes a quota)", "guarantee")
            unknown = sorted(set(body) - {"role", "guarantee", "limit"})
            if unknown:
                raise BadRequest(422, f"unknown field {unknown[0]!r}", unknown[0])
        except BadRequest as exc:
            return _error(request, exc)
        return self._apply(request, UpdateQuota(body["role"], guarantee, limit), self.quotas)

    render_PUT = render_POST


class _QuotaRole(resource.Resource):
    isLeaf = True

    def __init__(self, parent: QuotaEndpoint, role: str) -> None:
        super().__init__()
        self.parent, self.role = parent, role

    def render_DELETE(self, request: Any) -> bytes:
        if self.role not in self.parent.allocator.quotas:
            return json_response(request, 404, {"error": f"role {self.role!r} has no quota"})
        return self.parent._apply(request, UpdateQuota(self.role), self.parent.quotas)


class RolesEndpoint(_Endpoint):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        allocator = self.allocator
        roles = []
        for role in sorted(set(allocator.roles.roles()) | set(allocator.quotas) | set(allocator.weights())):
            frameworks = sorted(fid for fid, f in allocator.frameworks.items() if role in f.roles)
            quota = allocator.quotas.get(role)
            roles.append({
                "name": role,
                "weight": allocator.roles.weight(role),
                "frameworks": frameworks,
                "consumed": _amounts(allocator.consumed(role)),
                "quota": {"guarantee": _amounts(quota.guarantee), "limit": _amounts(quota.limit)} if quota else None,
            })
        return json_response(request, 200, {"roles": roles})
