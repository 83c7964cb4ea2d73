"""The master's proxy to framework APIs (``/frameworks/<name>/...``).

Relaying is tested over real loopback sockets: a fake framework API (twisted.web) and the
master's real site as ``MasterShell.site`` builds it, on a private reactor per test
(tests/private_reactor.py). The answers the proxy gives itself (404, 409, 502 before any connection,
401 from the site policy) are tested with real HTTP bytes and no sockets (tests/http_wire.py).
"""

from __future__ import annotations

import json
import types
from io import BytesIO
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer, protocol
from twisted.internet.task import Clock, Cooperator
from twisted.web import resource, server
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers

from tepui.master.http import framework_proxy
from tepui.master.core import MasterConfig, MasterCore
from tepui.master.http.framework_proxy import FrameworkApi, choose, framework_apis, upstream_url
from tepui.master.records import FrameworkRecord
from tepui.master.http.relay_guard import RelayPolicy, parse_allow
from tepui.master.shell import MasterShell
from tepui.sdk.http_security import HttpPolicy, relay_token
from tepui.sdk.protocol.values import FrameworkInfo
from tests.http_wire import exchange
from tests.private_reactor import run

TOKEN = "cluster-token-0123456789abcdef"
T = TypeVar("T")

# --- choosing the framework (pure) -------------------------------------------------------------


def test_choose_prefers_the_one_connected_framework_of_that_name() -> None:
    old = FrameworkApi("F1", "services", "http://h:1", connected=False)
    new = FrameworkApi("F2", "services", "http://h:2", connected=True)
    other = FrameworkApi("F3", "batch", "http://h:3", connected=True)
    assert choose([old, new, other], "services") == [new]
    assert choose([old, other], "services") == [old]  # alone: even while it is disconnected
    assert choose([old, other], "nope") == []
    twin = FrameworkApi("F4", "services", "http://h:4", connected=True)
    assert choose([old, new, twin], "services") == [old, new, twin]  # several connected: ambiguous
    stale = FrameworkApi("F5", "services", "http://h:5", connected=False)
    assert choose([old, stale], "services") == [old, stale]  # none connected: ambiguous


def test_upstream_url_keeps_the_path_encoding_and_the_query() -> None:
    assert upstream_url("http://h:5090", b"v1/apps", b"label=a=b") == "http://h:5090/v1/apps?label=a=b"
    assert upstream_url("http://h:5090/", b"v1/apps/a%2Fb", b"") == "http://h:5090/v1/apps/a%2Fb"
    assert upstream_url("http://h:5090/ui/", b"", b"") == "http://h:5090/ui/"


def test_framework_apis_reads_the_cores_records() -> None:
    core = MasterCore(MasterConfig(master_id="m"))
    add_framework(core, "F1", "services", "http://127.0.0.1:5090")
    add_framework(core, "F2", "batch", None, peer=None)
    assert framework_apis(core) == [FrameworkApi("F1", "services", "http://127.0.0.1:5090", True),
                                    FrameworkApi("F2", "batch", None, False)]


# --- the master's site ---------------------------------------------------------------------------


def add_framework(core: MasterCore, fid: str, name: str, url: str | None, peer: bytes | None = b"peer") -> None:
    info = FrameworkInfo(user="u", name=name, id=fid, webui_url=url)
    record = FrameworkRecord(fid, info, peer, 0.0)
    record.active = peer is not None
    core.frameworks[fid] = record


def master_site(policy: HttpPolicy, reactor: Any = None) -> tuple[Any, MasterCore]:
    """``MasterShell.site`` on a shell-shaped object: the real composition, no ZeroMQ socket."""
    core = MasterCore(MasterConfig(master_id="m"))
    reactor = reactor or Clock()
    fake: Any = types.SimpleNamespace(core=core, reactor=reactor, registry=CollectorRegistry(),
                                      operator_call=lambda event: [], locate_task=lambda t, f: [], http_url=None)
    fake.site_root = lambda *args: MasterShell.site_root(fake, *args)
    site = MasterShell.site(fake, policy)
    site.reactor = reactor
    return site, core


def test_unknown_framework_is_404_listing_the_names_that_exist() -> None:
    site, core = master_site(HttpPolicy(token=TOKEN))
    answer = exchange(site, "GET", "/frameworks/nope/v1/apps")
    assert answer.code == 404 and answer.json()["reason"] == "UNKNOWN_FRAMEWORK"
    assert "no framework is subscribed" in answer.json()["error"]
    add_framework(core, "F1", "services", "http://127.0.0.1:5090")
    add_framework(core, "F2", "batch", "http://127.0.0.1:5091")
    document = exchange(site, "GET", "/frameworks/nope/v1/apps").json()
    assert document["frameworks"] == ["batch", "services"] and "'services'" in document["error"]
    for path in ("/frameworks", "/frameworks/"):
        answer = exchange(site, "GET", path)
        assert answer.code == 404 and answer.json()["reason"] == "NO_SUCH_ENDPOINT", path
        assert answer.json()["frameworks"] == ["batch", "services"]


def test_several_frameworks_of_one_name_and_none_or_several_connected_is_409() -> None:
    site, core = master_site(HttpPolicy(token=TOKEN))
    add_framework(core, "F1", "services", "http://127.0.0.1:5090")
    add_framework(core, "F2", "services", "http://127.0.0.1:5091")
    answer = exchange(site, "GET", "/frameworks/services/v1/apps")
    assert answer.code == 409 and answer.json()["reason"] == "AMBIGUOUS_FRAMEWORK"
    assert [c["framework_id"] for c in answer.json()["candidates"]] == ["F1", "F2"]


def test_a_framework_without_an_http_api_is_502() -> None:
    site, core = master_site(HttpPolicy(token=TOKEN))
    add_framework(core, "F1", "services", None)
    add_framework(core, "F2", "odd", "ftp://127.0.0.1/x")
    answer = exchange(site, "GET", "/frameworks/services/v1/apps")
    assert answer.code == 502 and answer.json()["reason"] == "FRAMEWORK_NO_API"
    assert answer.headers["x-tepui-framework-id"] == "F1"
    answer = exchange(site, "GET", "/frameworks/odd/v1/apps")
    assert answer.code == 502 and answer.json()["reason"] == "FRAMEWORK_BAD_URL"
    assert "ftp://127.0.0.1/x" in answer.json()["error"]


def test_a_path_that_is_not_ascii_is_400_not_a_500() -> None:
    """Twisted's parser refuses it already; the proxy's own check (``BAD_PATH``) is the second line."""
    site, core = master_site(HttpPolicy(token=TOKEN))
    add_framework(core, "F1", "services", "http://127.0.0.1:5090")
    assert exchange(site, "GET", "/frameworks/services/v1/apps/caf\u00e9").code == 400


def test_mutating_calls_need_the_token_and_reach_no_framework_without_it() -> None:
    site, core = master_site(HttpPolicy(token=TOKEN))
    add_framework(core, "F1", "services", "http://127.0.0.1:5090")
    calls: list[bytes] = []
    site.resource.children[b"frameworks"].http = types.SimpleNamespace(
        request=lambda method, url, headers=None, body=None: calls.append(url) or defer.Deferred())
    for method in ("POST", "PUT", "DELETE"):
        answer = exchange(site, method, "/frameworks/services/v1/apps", b"{}" if method != "DELETE" else None)
        assert answer.code == 401 and answer.json()["reason"] == "UNAUTHENTICATED", method
    assert calls == []
    exchange(site, "POST", "/frameworks/services/v1/apps", b"{}", token=TOKEN)
    assert calls == [b"http://127.0.0.1:5090/v1/apps"]
    answer = exchange(site, "PATCH", "/frameworks/services/v1/apps", b"x" * (1024 * 1024 + 1), token=TOKEN)
    assert answer.code == 413 and len(calls) == 1  # the site's body limit holds here too


# --- relaying over real sockets ----------------------------------------------------------------


class FakeFrameworkApi(resource.Resource):
    """A framework's API: JSON that echoes what it was sent, a 422, and an event stream that
    sends one event, waits for ``release``, then sends another."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []
        self.release: defer.Deferred[None] = defer.Deferred()
        self.sent_second = False
        self.stream_closed: defer.Deferred[None] = defer.Deferred()
        self.slow_arrived: defer.Deferred[None] = defer.Deferred()
        self.slow_closed: defer.Deferred[None] = defer.Deferred()

    def render(self, request: Any) -> Any:
        seen = {"method": request.method.decode(), "uri": request.uri.decode(),
                "authorization": (request.getHeader(b"authorization") or b"").decode(),
                "headers": {name.decode().lower(): [v.decode() for v in values]
                            for name, values in request.requestHeaders.getAllRawHeaders()},
                "content_type": (request.getHeader(b"content-type") or b"").decode(),
                "body": request.content.read().decode()}
        self.seen.append(seen)
        if request.path == b"/v1/events":
            return self._events(request)
        if request.path == b"/v1/slow":  # never answers
            request.notifyFinish().addBoth(lambda _: self.slow_closed.callback(None))
            self.slow_arrived.callback(None)
            return server.NOT_DONE_YET
        if request.method == b"PUT":
            request.setResponseCode(201)
            request.setHeader(b"location", b"/v1/apps/web")
            return b""
        if request.method == b"POST":
            request.setResponseCode(422)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"error": "bad app", "reason": "INVALID_APP", "field": "instances",
                               "got": seen}).encode()
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return json.dumps({"apps": [], "got": seen}).encode()

    def _events(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        request.write(b'event: app_changed\ndata: {"app": "one"}\n\n')

        def second(_: Any) -> None:
            if not request._disconnected:
                self.sent_second = True
                request.write(b'event: app_changed\ndata: {"app": "two"}\n\n')

        self.release.addCallback(second)
        request.notifyFinish().addBoth(lambda _: self.stream_closed.callback(None))
        return server.NOT_DONE_YET


class Cluster:
    """A fake framework API and the master's site, both listening on loopback. The proxy may
    relay to the fake API's port only (as `tepui up` allows its services framework's), and
    knows the master's own port."""

    def __init__(self, reactor: Any, policy: HttpPolicy) -> None:
        self.reactor = reactor
        self.api = FakeFrameworkApi()
        self.upstream = reactor.listenTCP(0, server.Site(self.api, reactor=reactor), interface="127.0.0.1")
        self.site, self.core = master_site(policy, reactor)
        self.master = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.proxy = self.site.resource.children[b"frameworks"]
        self.proxy.relay = RelayPolicy(allow=(parse_allow(f"127.0.0.1:{self.upstream.getHost().port}"),),
                                       own_ports=frozenset({self.master.getHost().port}))
        add_framework(self.core, "F1", "services", f"http://127.0.0.1:{self.upstream.getHost().port}")
        self.client = Agent(reactor)

    def url(self, path: str) -> bytes:
        return f"http://127.0.0.1:{self.master.getHost().port}{path}".encode()

    async def call(self, method: str, path: str, body: bytes | None = None,
                   headers: dict[bytes, list[bytes]] | None = None) -> tuple[Any, bytes]:
        producer = None
        if body is not None:  # scheduled on this reactor, not on the global one
            producer = FileBodyProducer(BytesIO(body), Cooperator(scheduler=lambda f: self.reactor.callLater(0, f)))
        response = await self.client.request(method.encode(), self.url(path), Headers(headers or {}), producer)
        reader = StreamReader()
        response.deliverBody(reader)
        await reader.closed
        return response, reader.data

    async def close(self) -> None:
        await defer.maybeDeferred(self.master.stopListening)
        await defer.maybeDeferred(self.upstream.stopListening)  # None when a test stopped it already


def with_cluster(scenario: Callable[[Cluster], Awaitable[T]], policy: HttpPolicy | None = None) -> T:
    async def main(reactor: Any) -> T:
        cluster = Cluster(reactor, policy or HttpPolicy(token=TOKEN))
        try:
            return await scenario(cluster)
        finally:
            await cluster.close()

    return run(main)


def test_get_with_query_is_relayed_with_the_masters_read_relay_token_not_the_clients() -> None:
    async def scenario(cluster: Cluster) -> None:
        response, body = await cluster.call("GET", "/frameworks/services/v1/apps?label=a=b,c",
                                            headers={b"authorization": [b"Bearer the-clients-own"]})
        assert response.code == 200
        assert response.headers.getRawHeaders(b"content-type") == [b"application/json; charset=utf-8"]
        assert response.headers.getRawHeaders(b"x-tepui-framework-id") == [b"F1"]
        got = json.loads(body)["got"]
        assert got["uri"] == "/v1/apps?label=a=b,c" and got["method"] == "GET"
        assert got["authorization"] == f"Bearer {relay_token(TOKEN, 'F1', 'read')}"  # tests/master/http/test_relay_tokens.py

    with_cluster(scenario)


def test_post_body_content_type_and_status_are_relayed() -> None:
    async def scenario(cluster: Cluster) -> None:
        spec = b"id: web\ninstances: -1\n"
        response, body = await cluster.call("POST", "/frameworks/services/v1/apps?force=true", spec, headers={
            b"authorization": [f"Bearer {TOKEN}".encode()], b"content-type": [b"application/yaml"],
            b"x-tepui-user": [b"ana"], b"x-other": [b"dropped"]})
        assert response.code == 422
        assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
        document = json.loads(body)
        assert (document["reason"], document["field"]) == ("INVALID_APP", "instances")
        assert document["got"]["body"] == spec.decode() and document["got"]["content_type"] == "application/yaml"
        assert document["got"]["uri"] == "/v1/apps?force=true"
        # the submitter a client names is relayed (batch fair share); other headers are not
        assert document["got"]["headers"]["x-tepui-user"] == ["ana"] and "x-other" not in document["got"]["headers"]

    with_cluster(scenario)


class StreamReader(protocol.Protocol):
    """Collects a streamed body and says when a given piece of it has arrived."""

    def __init__(self) -> None:
        self.data = b""
        self.waiting: list[tuple[bytes, defer.Deferred[None]]] = []
        self.closed: defer.Deferred[Any] = defer.Deferred()

    def until(self, needle: bytes) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.waiting.append((needle, d))
        self.dataReceived(b"")
        return d

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for needle, d in list(self.waiting):
            if needle in self.data:
                self.waiting.remove((needle, d))
                d.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(getattr(reason, "value", reason))  # why, as a value: the body ended either way


def test_server_sent_events_arrive_one_by_one_and_a_leaving_client_closes_the_framework_stream() -> None:
    async def scenario(cluster: Cluster) -> None:
        response = await cluster.client.request(b"GET", cluster.url("/frameworks/services/v1/events"),
                                                Headers({b"accept": [b"text/event-stream"]}))
        assert response.code == 200
        assert response.headers.getRawHeaders(b"content-type") == [b"text/event-stream"]
        assert response.headers.getRawHeaders(b"cache-control") == [b"no-cache"]
        reader = StreamReader()
        response.deliverBody(reader)
        await reader.until(b'"one"')
        assert not cluster.api.sent_second and b'"two"' not in reader.data  # not buffered
        cluster.api.release.callback(None)
        await reader.until(b'"two"')
        assert reader.data == (b'event: app_changed\ndata: {"app": "one"}\n\n'
                               b'event: app_changed\ndata: {"app": "two"}\n\n')
        assert not cluster.api.stream_closed.called
        reader.transport.stopProducing()  # the client leaves
        await reader.closed
        await cluster.api.stream_closed  # ... and the framework's stream is closed (else: watchdog)

    with_cluster(scenario)


def test_a_relative_location_is_made_relative_to_the_master() -> None:
    async def scenario(cluster: Cluster) -> None:
        response, body = await cluster.call("PUT", "/frameworks/services/v1/apps/web", b"{}",
                                            headers={b"authorization": [f"Bearer {TOKEN}".encode()]})
        assert response.code == 201 and body == b""
        assert response.headers.getRawHeaders(b"location") == [b"/frameworks/services/v1/apps/web"]

    with_cluster(scenario)


def test_a_client_that_leaves_before_the_answer_cancels_the_framework_call() -> None:
    async def scenario(cluster: Cluster) -> None:
        call = cluster.client.request(b"GET", cluster.url("/frameworks/services/v1/slow"))
        await cluster.api.slow_arrived
        call.cancel()  # the client gives up and closes its connection
        with pytest.raises(Exception):
            await call
        await cluster.api.slow_closed  # ... and so does the master's call to the framework (else: watchdog)

    with_cluster(scenario)


def test_a_framework_that_is_down_is_502_naming_its_url() -> None:
    async def scenario(cluster: Cluster) -> None:
        await cluster.upstream.stopListening()
        response, body = await cluster.call("GET", "/frameworks/services/v1/apps")
        document = json.loads(body)
        assert response.code == 502 and document["reason"] == "FRAMEWORK_UNREACHABLE"
        assert cluster.core.frameworks["F1"].info.webui_url in document["error"]
        assert "refused" in document["error"].lower()

    with_cluster(scenario)


def test_a_framework_that_does_not_answer_in_time_is_504(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framework_proxy, "ANSWER_TIMEOUT", 0.2)

    async def scenario(cluster: Cluster) -> None:
        response, body = await cluster.call("GET", "/frameworks/services/v1/slow")
        assert response.code == 504 and json.loads(body)["reason"] == "FRAMEWORK_TIMEOUT"

    with_cluster(scenario)

