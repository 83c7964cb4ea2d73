"""The master never sends the cluster token to a framework (issue 15: anyone holding a framework
key could announce a ``webui_url`` of their own, GET ``/frameworks/<name>/`` — open by default —
and receive the token that opens ``/weights``, ``/quota`` and every sandbox).

Over real loopback sockets with the master's real site (the ``Cluster`` of
test_framework_proxy.py, whose fake framework API records every header it receives) and a second
framework whose API is a real :class:`GuardedSite` with the same token file, as the services
framework runs it: the relay tokens it gets work only at itself, and a read's token never for a
write.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Cooperator
from twisted.web import resource
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers

from tepui.master.http.relay_guard import RelayPolicy, parse_allow
from tepui.sdk.http_security import GuardedSite, HttpPolicy, relay_token
from tests.master.http.test_framework_proxy import TOKEN, Cluster, StreamReader, add_framework, with_cluster


class _Apps(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b'{"apps":[]}'

    def render_POST(self, request: Any) -> bytes:
        return json.dumps({"created": json.loads(request.content.read())["id"]}).encode()


class Guarded:
    """Framework F2 (``guarded``): its API behind ``GuardedSite`` with the cluster's token and
    its own framework id as relay scope — tepui.sdk's way, as frameworks/services/main.py does."""

    def __init__(self, cluster: Cluster, read_auth: str = "open") -> None:
        self.cluster = cluster
        self.site = GuardedSite(_Apps(), HttpPolicy(token=TOKEN, read_auth=read_auth, service="guarded"),
                                relay_scope=lambda: "F2", reactor=cluster.reactor)
        self.port = cluster.reactor.listenTCP(0, self.site, interface="127.0.0.1")
        ports = [cluster.upstream.getHost().port, self.port.getHost().port]
        cluster.proxy.relay = RelayPolicy(allow=tuple(parse_allow(f"127.0.0.1:{p}") for p in ports),
                                          own_ports=frozenset({cluster.master.getHost().port}))
        add_framework(cluster.core, "F2", "guarded", f"http://127.0.0.1:{self.port.getHost().port}")

    async def direct(self, method: str, token: str, body: bytes | None = None) -> tuple[int, Any]:
        """A call straight to F2's API, as a framework replaying a token it received would make."""
        return await _call(self.cluster, f"http://127.0.0.1:{self.port.getHost().port}/v1/apps", method, token,
                           body)

    async def close(self) -> None:
        await defer.maybeDeferred(self.port.stopListening)


async def _call(cluster: Cluster, url: str, method: str, token: str | None, body: bytes | None = None
                ) -> tuple[int, Any]:
    producer = None
    if body is not None:
        producer = FileBodyProducer(BytesIO(body), Cooperator(scheduler=lambda f: cluster.reactor.callLater(0, f)))
    headers = Headers({b"authorization": [f"Bearer {token}".encode()]} if token else {})
    response = await cluster.client.request(method.encode(), url.encode(), headers, producer)
    reader = StreamReader()
    response.deliverBody(reader)
    await reader.closed
    return response.code, json.loads(reader.data) if reader.data else None


def bearer(token: str) -> dict[bytes, list[bytes]]:
    return {b"authorization": [f"Bearer {token}".encode()]}


def test_the_cluster_token_reaches_no_framework_only_relay_tokens_for_it_and_for_reads_or_writes() -> None:
    async def scenario(cluster: Cluster) -> None:
        for method, body in (("GET", None), ("HEAD", None), ("POST", b"{}"), ("PUT", b"{}"), ("DELETE", None)):
            response, _ = await cluster.call(method, "/frameworks/services/v1/apps", body, headers=bearer(TOKEN))
            assert response.code in (200, 201, 422), method
        seen = cluster.api.seen
        assert [call["method"] for call in seen] == ["GET", "HEAD", "POST", "PUT", "DELETE"]
        for call in seen:
            for name, values in call["headers"].items():
                assert not any(TOKEN in value for value in values), (call["method"], name)
        read, write = relay_token(TOKEN, "F1", "read"), relay_token(TOKEN, "F1", "write")
        assert [call["authorization"] for call in seen] == [f"Bearer {read}"] * 2 + [f"Bearer {write}"] * 3

    with_cluster(scenario)


def test_a_framework_guarded_with_its_relay_scope_serves_the_masters_relayed_reads_and_writes() -> None:
    async def scenario(cluster: Cluster) -> None:
        guarded = Guarded(cluster, read_auth="token")
        try:
            url = cluster.url("/frameworks/guarded/v1/apps").decode()
            assert await _call(cluster, url, "POST", TOKEN, b'{"id": "web"}') == (200, {"created": "web"})
            assert await _call(cluster, url, "GET", TOKEN) == (200, {"apps": []})
            # The master's own rule still holds first: no token, no relayed write.
            code, document = await _call(cluster, url, "POST", None, b'{"id": "web"}')
            assert (code, document["reason"]) == (401, "UNAUTHENTICATED")
        finally:
            await guarded.close()

    with_cluster(scenario)


def test_relay_tokens_a_hostile_framework_received_open_nothing_but_itself() -> None:
    """F1 is hostile: it announced a webui_url of its own (the recording fake) and got a read —
    open, no token needed — and a user's write relayed. It replays what it received."""

    async def scenario(cluster: Cluster) -> None:
        guarded = Guarded(cluster)
        try:
            await cluster.call("GET", "/frameworks/services/v1/apps")
            await cluster.call("POST", "/frameworks/services/v1/apps", b"{}", headers=bearer(TOKEN))
            received = [call["authorization"].removeprefix("Bearer ") for call in cluster.api.seen]
            assert len(received) == 2
            for token in received:  # at another framework's API (scoped by framework id)
                code, document = await guarded.direct("POST", token, b'{"id": "x"}')
                assert (code, document["reason"]) == (401, "BAD_TOKEN")
                # ... and at the master's own API, which accepts no relay token at all.
                code, document = await _call(cluster, cluster.url("/weights").decode(), "PUT", token,
                                             b'[{"role": "a", "weight": 9}]')
                assert (code, document["reason"]) == (401, "BAD_TOKEN")
            # F2's own read token — what every framework gets from an open read — is no write.
            code, document = await guarded.direct("POST", relay_token(TOKEN, "F2", "read"), b'{"id": "x"}')
            assert (code, document["reason"]) == (403, "READ_RELAY_TOKEN")
            assert await guarded.direct("POST", relay_token(TOKEN, "F2", "write"), b'{"id": "x"}') == (
                200, {"created": "x"})
        finally:
            await guarded.close()

    with_cluster(scenario)


def test_an_agents_relay_token_opens_nothing_at_the_masters_api() -> None:
    """The files proxy sends an agent its read relay token (tests/agent/sandbox/test_files_api_security.py);
    an agent key holder who registered an address of their own and replays it gets nowhere here."""

    async def scenario(cluster: Cluster) -> None:
        for access in ("read", "write"):
            token = relay_token(TOKEN, "S1", access, "agent")
            code, document = await _call(cluster, cluster.url("/state").decode(), "GET", token)
            assert (code, document["reason"]) == (401, "BAD_TOKEN")
            code, document = await _call(cluster, cluster.url("/weights").decode(), "PUT", token,
                                         b'[{"role": "a", "weight": 9}]')
            assert (code, document["reason"]) == (401, "BAD_TOKEN")
        assert (await _call(cluster, cluster.url("/state").decode(), "GET", TOKEN))[0] == 200

    with_cluster(scenario, HttpPolicy(token=TOKEN, read_auth="token"))


def test_a_task_files_token_opens_that_tasks_files_at_the_master_and_nothing_else() -> None:
    """The batch framework's artifact URIs carry one (frameworks/batch/artifacts.py): with the
    master's reads token-protected, it passes the guard for its own task's files (the proxy then
    answers: this master knows no such task) and nowhere else."""
    from tepui.sdk.http_security import task_files_token

    async def scenario(cluster: Cluster) -> None:
        token = task_files_token(TOKEN, "F1", "job.map.0.1")
        for action in ("read", "browse", "download"):
            url = cluster.url(f"/tasks/job.map.0.1/files/{action}?framework_id=F1&path=out.txt").decode()
            code, document = await _call(cluster, url, "GET", token)
            assert (code, document["reason"]) == (404, "UNKNOWN_TASK")
        for path in ("/tasks/job.map.0.1/files/read?framework_id=F2&path=x", "/tasks/job.map.0.1/files/read?path=x",
                     "/tasks/other/files/read?framework_id=F1&path=x", "/state", "/tasks/job.map.0.1/files/read"):
            code, document = await _call(cluster, cluster.url(path).decode(), "GET", token)
            assert (code, document["reason"]) == (401, "BAD_TOKEN"), path

    with_cluster(scenario, HttpPolicy(token=TOKEN, read_auth="token"))
