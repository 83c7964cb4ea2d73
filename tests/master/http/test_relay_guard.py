"""Where the master's framework proxy may connect, and how often (issue 15, bug 4: a ``webui_url``
naming the master's own ``/frameworks/<name>/`` made one unauthenticated GET loop through it,
open files 36 → 19,237 in 20 s).

The rules are pure functions (``parse_allow``, ``refusal``) tested with exact answers; the loop,
the caps and name resolution are tested over real loopback sockets with the master's real site
(the ``Cluster`` of test_framework_proxy.py) on a private reactor.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

import msgspec
import pytest
from twisted.internet import defer, protocol, task
from twisted.web import resource, server
from twisted.web.client import Agent

from tepui.master.http.relay_guard import GuardedEndpoints, RelayPolicy, parse_allow, refusal
from tepui.sdk.http_security import HttpPolicy
from tests.http_wire import exchange
from tests.master.http.test_framework_proxy import TOKEN, Cluster, add_framework, master_site, with_cluster

# --- the rules (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "network", "port"), [
    ("127.0.0.1:5090", "127.0.0.1/32", 5090), ("10.1.0.0/16", "10.1.0.0/16", None), ("::1", "::1/128", None),
    ("[::1]:5090", "::1/128", 5090), ("fd00::/8", "fd00::/8", None), ("127.0.0.0/8:80", "127.0.0.0/8", 80),
])
def test_proxy_allow_entries_are_addresses_or_networks_with_an_optional_port(text: str, network: str,
                                                                              port: int | None) -> None:
    rule = parse_allow(text)
    assert (rule.network, rule.port) == (ipaddress.ip_network(network), port)


@pytest.mark.parametrize(("text", "complaint"), [
    ("localhost:5090", "not a host name"), ("127.0.0.1:http", "port must be a number"),
    ("127.0.0.1:0", "port must be a number"), ("", "not a host name"),
])
def test_a_bad_proxy_allow_entry_says_what_to_give(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_allow(text)


def nothing_local(address: Any) -> bool:
    return False


OWN = RelayPolicy(own_ports=frozenset({5080, 5050}), is_local=nothing_local)


@pytest.mark.parametrize(("address", "port", "what"), [
    ("127.0.0.1", 5090, "a loopback address"), ("127.3.2.1", 80, "a loopback address"),
    ("::1", 5090, "a loopback address"), ("::ffff:127.0.0.1", 5090, "a loopback address"),
    ("0.0.0.0", 5090, "the unspecified address"), ("::", 5090, "the unspecified address"),
    ("169.254.169.254", 80, "a link-local address"), ("fe80::1", 80, "a link-local address"),
    ("127.0.0.1", 5080, "the master itself"), ("0.0.0.0", 5050, "the master itself"),
])
def test_loopback_link_local_and_the_masters_own_ports_are_refused_by_default(address: str, port: int,
                                                                               what: str) -> None:
    refused = refusal(OWN, address, port)
    assert refused is not None and refused.why.startswith(what)
    assert refused.allowable == (what != "the master itself")


def test_other_addresses_are_relayed_to_and_this_hosts_own_only_when_allowed() -> None:
    assert refusal(OWN, "10.0.0.7", 5090) is None
    assert refusal(OWN, "2001:db8::7", 5080) is None  # the master's port on another host is not the master
    mine = RelayPolicy(own_ports=frozenset({5080}), is_local=lambda a: str(a) == "10.0.0.5")
    refused = refusal(mine, "10.0.0.5", 5090)
    assert refused is not None and refused.why.startswith("an address of the master's own host")
    assert refusal(mine, "10.0.0.5", 5080).why.startswith("the master itself")  # type: ignore[union-attr]


def test_an_allow_rule_opens_its_addresses_and_ports_but_never_the_master_itself() -> None:
    policy = RelayPolicy(allow=(parse_allow("127.0.0.1:5090"), parse_allow("169.254.0.0/16")),
                         own_ports=frozenset({5080}), is_local=nothing_local)
    assert refusal(policy, "127.0.0.1", 5090) is None
    assert refusal(policy, "127.0.0.1", 5091) is not None  # another port of that address
    assert refusal(policy, "169.254.3.4", 8080) is None
    everything = RelayPolicy(allow=(parse_allow("0.0.0.0/0"), parse_allow("::/0")), own_ports=frozenset({5080}),
                             is_local=nothing_local)
    refused = refusal(everything, "127.0.0.1", 5080)
    assert refused is not None and not refused.allowable


def test_the_real_local_address_check_knows_loopback_and_not_a_documentation_address() -> None:
    """The default ``is_local`` asks the kernel (can a socket bind there?)."""
    policy = RelayPolicy(own_ports=frozenset({5080}))
    assert refusal(policy, "127.0.0.1", 5080) is not None
    assert refusal(policy, "192.0.2.1", 5080) is None  # TEST-NET-1: never an address of this host


def test_a_call_that_was_relayed_already_is_refused_as_a_loop() -> None:
    site, core = master_site(HttpPolicy(token=TOKEN))
    add_framework(core, "F1", "services", "http://10.0.0.7:5090")
    calls: list[bytes] = []
    site.resource.children[b"frameworks"].http = type(
        "Http", (), {"request": lambda self, *a, **k: calls.append(a[1]) or defer.Deferred()})()
    answer = exchange(site, "GET", "/frameworks/services/v1/apps", headers={"X-Tepui-Relay": "1"})
    assert answer.code == 508 and answer.json()["reason"] == "RELAY_LOOP"
    assert "point webui_url at the framework's own API" in answer.json()["error"]
    assert calls == []


# --- over real sockets --------------------------------------------------------------------------


def point(cluster: Cluster, webui_url: str) -> None:
    """Framework F1 announces another webui_url."""
    record = cluster.core.frameworks["F1"]
    record.info = msgspec.structs.replace(record.info, webui_url=webui_url)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle(reactor: Any, until: Any, rounds: int = 200) -> None:
    """Lets the reactor close what it is closing, until ``until()`` holds (a bound, not a timing)."""
    for _ in range(rounds):
        if until():
            return
        await task.deferLater(reactor, 0.01, lambda: None)


class CountingFactory(protocol.Factory):
    """The master's site on a second port (a port forward, a proxy in front of it): a way back
    to the master that no address check can know of. Counts the connections it gets."""

    def __init__(self, site: server.Site) -> None:
        self.site, self.connections = site, 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return self.site.buildProtocol(addr)


def test_a_webui_url_naming_the_masters_own_port_is_refused_without_a_connection() -> None:
    async def scenario(cluster: Cluster) -> None:
        own = cluster.master.getHost().port
        cluster.proxy.relay = RelayPolicy(allow=(parse_allow("127.0.0.0/8"),), own_ports=frozenset({own}))
        point(cluster, f"http://127.0.0.1:{own}/frameworks/services/")
        before = open_fds()
        response, body = await cluster.call("GET", "/frameworks/services/v1/apps")
        document = json.loads(body)
        assert response.code == 502 and document["reason"] == "FRAMEWORK_URL_REFUSED"
        assert f"127.0.0.1:{own} is the master itself" in document["error"]
        assert "--proxy-allow" not in document["error"]  # nothing the operator could allow
        await settle(cluster.reactor, lambda: open_fds() <= before)
        assert open_fds() == before

    with_cluster(scenario)


def test_a_loop_through_another_way_to_the_master_ends_after_one_hop_and_leaves_no_open_files() -> None:
    async def scenario(cluster: Cluster) -> None:
        alias = CountingFactory(cluster.site)
        forward = cluster.reactor.listenTCP(0, alias, interface="127.0.0.1")
        try:
            cluster.proxy.relay = RelayPolicy(allow=(parse_allow("127.0.0.0/8"),),
                                              own_ports=frozenset({cluster.master.getHost().port}))
            point(cluster, f"http://127.0.0.1:{forward.getHost().port}/frameworks/services/")
            before = open_fds()
            response, body = await cluster.call("GET", "/frameworks/services/v1/apps")
            assert response.code == 508 and json.loads(body)["reason"] == "RELAY_LOOP"
            assert alias.connections == 1  # one hop, refused there
            assert cluster.api.seen == []
            await settle(cluster.reactor, lambda: open_fds() <= before and not cluster.proxy.relaying)
            assert open_fds() == before
            assert not cluster.proxy.relaying
        finally:
            await defer.maybeDeferred(forward.stopListening)

    with_cluster(scenario)


def test_loopback_that_the_operator_did_not_allow_is_refused_naming_the_flag() -> None:
    async def scenario(cluster: Cluster) -> None:
        cluster.proxy.relay = RelayPolicy(own_ports=frozenset({cluster.master.getHost().port}))
        response, body = await cluster.call("GET", "/frameworks/services/v1/apps")
        document = json.loads(body)
        port = cluster.upstream.getHost().port
        assert response.code == 502 and document["reason"] == "FRAMEWORK_URL_REFUSED"
        assert f"127.0.0.1:{port} is a loopback address" in document["error"]
        assert f"--proxy-allow 127.0.0.1:{port}" in document["error"]
        assert cluster.api.seen == []

    with_cluster(scenario)


class Holding(resource.Resource):
    """A framework API that answers nothing until ``release``."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.held.append(request)
        return server.NOT_DONE_YET

    def release(self) -> None:
        for request in self.held:
            request.write(b"{}")
            request.finish()
        self.held = []


def test_concurrent_relays_are_capped_per_framework_and_in_all() -> None:
    async def scenario(cluster: Cluster) -> None:
        api = Holding()
        holding = cluster.reactor.listenTCP(0, server.Site(api, reactor=cluster.reactor), interface="127.0.0.1")
        try:
            url = f"http://127.0.0.1:{holding.getHost().port}"
            cluster.proxy.relay = RelayPolicy(allow=(parse_allow("127.0.0.1"),), max_per_framework=2, max_total=3,
                                              own_ports=frozenset({cluster.master.getHost().port}))
            add_framework(cluster.core, "F1", "services", url)
            add_framework(cluster.core, "F2", "batch", url)
            calls = [defer.ensureDeferred(cluster.call("GET", "/frameworks/services/v1/x")) for _ in range(2)]
            await settle(cluster.reactor, lambda: len(api.held) == 2)
            response, body = await cluster.call("GET", "/frameworks/services/v1/x")
            document = json.loads(body)
            assert response.code == 503 and document["reason"] == "RELAY_LIMIT"
            assert "2 calls to this framework are being relayed already" in document["error"]
            assert response.headers.getRawHeaders(b"retry-after") == [b"1"]
            calls.append(defer.ensureDeferred(cluster.call("GET", "/frameworks/batch/v1/x")))
            await settle(cluster.reactor, lambda: len(api.held) == 3)
            response, body = await cluster.call("GET", "/frameworks/batch/v1/x")
            assert response.code == 503 and "the master's limit" in json.loads(body)["error"]
            assert len(api.held) == 3  # the refused calls never reached the framework
            api.release()
            assert [response.code for response, _ in await defer.gatherResults(calls)] == [200, 200, 200]
            await settle(cluster.reactor, lambda: not cluster.proxy.relaying)
            assert not cluster.proxy.relaying  # every slot given back
        finally:
            await defer.maybeDeferred(holding.stopListening)

    with_cluster(scenario)


def test_a_host_name_is_checked_at_the_address_it_resolves_to_at_each_connection() -> None:
    """DNS rebinding: a name that resolved to an allowed address resolves to a forbidden one
    the next time; the proxy connects to the address it checked, and checks again each time."""
    async def scenario(cluster: Cluster) -> None:
        port = cluster.upstream.getHost().port
        answers = {"fw.example": ["127.0.0.1"]}
        asked: list[str] = []

        def resolver(reactor: Any, host: str, _port: int) -> defer.Deferred[list[str]]:
            asked.append(host)
            return defer.succeed(list(answers[host]))

        proxy = cluster.proxy
        proxy.http = Agent.usingEndpointFactory(cluster.reactor,
                                                GuardedEndpoints(cluster.reactor, lambda: proxy.relay, 5.0, resolver))
        point(cluster, f"http://fw.example:{port}")
        response, body = await cluster.call("GET", "/frameworks/services/v1/apps")
        assert response.code == 200 and json.loads(body)["got"]["uri"] == "/v1/apps"  # fw.example is no real name
        answers["fw.example"] = ["169.254.169.254"]
        response, body = await cluster.call("GET", "/frameworks/services/v1/apps")
        document = json.loads(body)
        assert response.code == 502 and document["reason"] == "FRAMEWORK_URL_REFUSED"
        assert f"fw.example (169.254.169.254):{port} is a link-local address" in document["error"]
        assert "--proxy-allow 169.254.169.254:" in document["error"]
        assert asked == ["fw.example", "fw.example"] and len(cluster.api.seen) == 1

    with_cluster(scenario)


def test_localhost_is_resolved_and_refused_as_loopback() -> None:
    async def scenario(cluster: Cluster) -> None:
        cluster.proxy.relay = RelayPolicy(own_ports=frozenset({cluster.master.getHost().port}))
        port = cluster.upstream.getHost().port
        point(cluster, f"http://localhost:{port}")
        response, body = await cluster.call("GET", "/frameworks/services/v1/apps")
        document = json.loads(body)
        assert response.code == 502 and document["reason"] == "FRAMEWORK_URL_REFUSED", document
        assert "localhost (" in document["error"] and "is a loopback address" in document["error"]
        assert cluster.api.seen == []

    with_cluster(scenario)
