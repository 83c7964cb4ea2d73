"""The master's HTTP API on twisted.web: ``/health``, ``/state``, ``/metrics``.

Errors are JSON with a message and never a traceback: an unknown path is a 404 naming the
endpoints that exist; a bug while rendering is a 500 that says so and is logged.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.web import resource

log = logging.getLogger("tepui.master.http.api")


def json_response(request: Any, code: int, document: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    # msgspec's encoder, not json.dumps: /state at 10,000 agents and 100,000 tasks is 45 MB,
    # and the reactor thread waits for it (docs/performance.md).
    return msgspec.json.encode(document, enc_hook=str)


class JsonEndpoint(resource.Resource):
    isLeaf = True

    def __init__(self, produce: Callable[[], Any]) -> None:
        super().__init__()
        self._produce = produce

    def render_GET(self, request: Any) -> bytes:
        try:
            return json_response(request, 200, self._produce())
        except Exception:
            log.exception("event=http_render_failed path=%s", request.path.decode(errors="replace"))
            return json_response(request, 500, {"error": "internal error while rendering; see the master's log"})


class MetricsEndpoint(resource.Resource):
    """Prometheus text format from a registry of our own (no global state)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return generate_latest(self._registry)


class NotFound(resource.Resource):
    isLeaf = True

    def __init__(self, known: list[str]) -> None:
        super().__init__()
        self._known = known

    def render(self, request: Any) -> bytes:
        return json_response(request, 404, {
            "error": f"no such endpoint {request.path.decode(errors='replace')!r}",
            "endpoints": self._known,
        })


class Redirect(resource.Resource):
    """Mesos's ``/redirect``: 307 to the leading master's HTTP API (on the leader, to itself), so
    a person or a script with any master's address finds the one that leads. ``target()`` is
    None when no master leads: a 503 that says so and when to try again."""

    isLeaf = True

    def __init__(self, target: Callable[[], str | None]) -> None:
        super().__init__()
        self._target = target

    def render(self, request: Any) -> bytes:
        target = self._target()
        if target is None:
            request.setHeader(b"retry-after", b"1")
            return json_response(request, 503, {"error": "no master leads yet (an election is under way); "
                                                          "try again in a second"})
        request.setHeader(b"location", target.encode())
        return json_response(request, 307, {"leader": target})


class Root(resource.Resource):
    def __init__(self, children: dict[str, resource.Resource]) -> None:
        super().__init__()
        self._children = children
        for name, child in children.items():
            self.putChild(name.encode(), child)  # type: ignore[arg-type]  # IResource by zope @implementer

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return NotFound(sorted("/" + name for name in self._children))

    def render_GET(self, request: Any) -> bytes:
        return json_response(request, 200, {"endpoints": sorted("/" + name for name in self._children)})


class CoreCollector:
    """Exposes the core's counters and gauges at scrape time."""

    def __init__(self, snapshot: Callable[[], tuple[dict[str, int], dict[str, float]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Any:
        counters, gauges = self._snapshot()
        for name, value in sorted(counters.items()):
            family = CounterMetricFamily(f"tepui_master_{name}", f"Tepui master counter {name}")
            family.add_metric([], value)
            yield family
        for name, level in sorted(gauges.items()):
            gauge = GaugeMetricFamily(f"tepui_master_{name}", f"Tepui master gauge {name}")
            gauge.add_metric([], level)
            yield gauge


class HttpCollector:
    """The HTTP guard's counters (refusals by status code, internal errors) as
    ``tepui_master_http_<name>``: a rising ``internal_errors`` is a bug to report, a rising
    ``refused_401`` a client with a wrong or missing token."""

    def __init__(self, counters: Any) -> None:
        self._counters = counters

    def collect(self) -> Any:
        for name in sorted(set(self._counters) | {"internal_errors", "refused_401", "refused_413"}):
            family = CounterMetricFamily(f"tepui_master_http_{name}", f"Tepui master HTTP {name}")
            family.add_metric([], self._counters.get(name, 0))
            yield family


def build_site_root(state: Callable[[], Any], health: Callable[[], Any], registry: CollectorRegistry,
                    extra: dict[str, resource.Resource] | None = None) -> Root:
    return Root({
        "health": JsonEndpoint(health),
        "state": JsonEndpoint(state),
        "metrics": MetricsEndpoint(registry),
        **(extra or {}),
    })
