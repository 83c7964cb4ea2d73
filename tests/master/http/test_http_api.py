"""The master's HTTP API as the shell builds it (``MasterShell.site``), over real HTTP bytes:
every bad-input class gets its status code and a JSON body — 400 bad JSON, 422 naming the field,
404 unknown path, 405 wrong method, 401 missing or wrong token, 413 too large, 500 without a
traceback — and nothing is changed by a refused call. The files proxy sends the master's token
to the agent."""

from __future__ import annotations

import json
import types
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.task import Clock

from tepui.master.core import MasterConfig, MasterCore
from tepui.master.events import OperatorError
from tepui.master.http.files_proxy import Located
from tepui.master.http.api import HttpCollector
from tepui.master.shell import MasterShell
from tepui.sdk.http_security import HttpPolicy, relay_token
from tests.http_wire import exchange

TOKEN = "cluster-token-0123456789abcdef"


class FakeHttp:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def request(self, method: bytes, url: bytes, headers: Any = None) -> Any:
        from twisted.internet import defer

        self.calls.append((url.decode(), headers))
        return defer.Deferred()


def master_site(policy: HttpPolicy) -> tuple[Any, MasterCore, Any]:
    """``MasterShell.site`` on a shell-shaped object: the real composition, no ZeroMQ socket."""
    core = MasterCore(MasterConfig(master_id="m"))
    fake: Any = types.SimpleNamespace(core=core, reactor=Clock(), registry=CollectorRegistry())

    def operator_call(event: Any) -> list[OperatorError]:
        return [e for e in core.handle(event, 0.0) if isinstance(e, OperatorError)]

    fake.operator_call = operator_call
    fake.locate_task = lambda task_id, framework_id: [Located("F1", task_id, "TASK_RUNNING", "S1", "a1",
                                                              "http://127.0.0.1:5051")]
    fake.http_url = "http://127.0.0.1:5080"
    fake.site_root = lambda *args: MasterShell.site_root(fake, *args)
    site = MasterShell.site(fake, policy)
    site.reactor = Clock()
    fake.registry.register(HttpCollector(site.counters))
    return site, core, fake


@pytest.fixture
def site() -> Any:
    return master_site(HttpPolicy(token=TOKEN))[0]


def put_weights(site: Any, body: bytes, token: str | None = TOKEN) -> Any:
    return exchange(site, "PUT", "/weights", body, token=token)


def test_weights_with_the_token_and_reads_without(site: Any) -> None:
    answer = put_weights(site, b'[{"role": "eng", "weight": 2}]')
    assert (answer.code, answer.json()) == (200, [{"role": "eng", "weight": 2.0}])
    assert exchange(site, "GET", "/weights").json() == [{"role": "eng", "weight": 2.0}]
    assert exchange(site, "GET", "/state").code == 200 and exchange(site, "GET", "/health").code == 200


@pytest.mark.parametrize(("token", "reason"), [(None, "UNAUTHENTICATED"), ("nope-" * 5, "BAD_TOKEN")])
def test_401_for_a_missing_or_wrong_token_changes_nothing(site: Any, token: str | None, reason: str) -> None:
    for method, path, body in (("PUT", "/weights", b'[{"role": "eng", "weight": 3}]'),
                               ("POST", "/quota", b'{"role": "eng", "limit": {"cpus": 1}}'),
                               ("DELETE", "/quota/eng", None)):
        answer = exchange(site, method, path, body, token=token)
        assert answer.code == 401 and answer.json()["reason"] == reason, (method, path)
    assert exchange(site, "GET", "/weights").json() == []
    assert exchange(site, "GET", "/quota").json() == {"infos": []}


def test_without_a_token_file_mutating_calls_are_refused_with_how_to_fix_it() -> None:
    site = master_site(HttpPolicy())[0]
    answer = put_weights(site, b'[{"role": "eng", "weight": 3}]', token="anything-at-all-123")
    assert answer.code == 401
    document = answer.json()
    assert document["reason"] == "NO_TOKEN_CONFIGURED" and "--http-token-file" in document["error"]
    assert exchange(site, "GET", "/state").code == 200


def test_read_auth_token_protects_state_metrics_roles_and_files_but_not_health() -> None:
    site = master_site(HttpPolicy(token=TOKEN, read_auth="token"))[0]
    for path in ("/state", "/metrics", "/roles", "/weights", "/quota", "/tasks/t1/files/read?path=stdout", "/"):
        assert exchange(site, "GET", path).code == 401, path
    assert exchange(site, "GET", "/state", token=TOKEN).code == 200
    assert exchange(site, "GET", "/health").code == 200


def test_400_for_a_body_that_is_not_json(site: Any) -> None:
    answer = put_weights(site, b"{not json")
    assert answer.code == 400 and "not valid JSON" in answer.json()["error"]
    assert exchange(site, "POST", "/quota", b"\xff\xfe", token=TOKEN).code == 400


def test_422_names_the_field(site: Any) -> None:
    assert put_weights(site, b'[{"role": "eng", "weight": -1}]').json()["field"] == "weights.eng"
    answer = put_weights(site, b'[{"weight": 1}]')
    assert answer.code == 422 and answer.json()["field"] == "[0].role"
    answer = exchange(site, "POST", "/quota", b'{"role": "eng", "limit": {"cpus": "lots"}}', token=TOKEN)
    assert answer.code == 422 and answer.json()["field"] == "limit.cpus"
    assert exchange(site, "GET", "/weights").json() == []


def test_404_for_an_unknown_path_lists_the_endpoints(site: Any) -> None:
    answer = exchange(site, "GET", "/nope")
    assert answer.code == 404 and "/weights" in answer.json()["endpoints"]
    answer = exchange(site, "DELETE", "/quota/unknown-role", token=TOKEN)
    assert answer.code == 404 and "no quota" in answer.json()["error"]


def test_405_for_a_wrong_method_is_json(site: Any) -> None:
    for method, path in (("DELETE", "/weights"), ("PUT", "/state"), ("POST", "/roles"), ("PUT", "/quota/eng")):
        answer = exchange(site, method, path, b"{}" if method != "DELETE" else None, token=TOKEN)
        assert answer.code == 405, (method, path, answer.body)
        assert answer.json()["reason"] == "METHOD_NOT_ALLOWED" and answer.headers["allow"]


def test_413_for_too_large_a_body(site: Any) -> None:
    answer = put_weights(site, b"[" + b'{"role": "eng", "weight": 1},' * 60_000 + b"]")
    assert answer.code == 413 and answer.json()["reason"] == "BODY_TOO_LARGE"


def test_500_is_json_without_a_traceback_and_counted_in_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    site, core, fake = master_site(HttpPolicy(token=TOKEN))

    def broken() -> Any:
        raise KeyError("internal detail")

    monkeypatch.setattr(core.allocator, "weights", broken)
    answer = exchange(site, "GET", "/weights")
    assert answer.code == 500 and answer.json()["reason"] == "INTERNAL"
    assert b"internal detail" not in answer.body and b"Traceback" not in answer.body
    assert b"tepui_master_http_internal_errors_total 1.0" in generate_latest(fake.registry)


def test_the_files_proxy_sends_the_agent_its_read_relay_token_not_the_masters_token() -> None:
    """Never the cluster token: the agent's address is whatever it registered (issue 15;
    tests/agent/sandbox/test_files_api_security.py has it over real sockets)."""
    site, _, _ = master_site(HttpPolicy(token=TOKEN))
    http = FakeHttp()
    site.resource.children[b"tasks"].http = http
    exchange(site, "GET", "/tasks/t1/files/read?path=stdout")
    [(url, headers)] = http.calls
    assert url.startswith("http://127.0.0.1:5051/files/read?")
    assert headers.getRawHeaders(b"authorization") == [f"Bearer {relay_token(TOKEN, 'S1', 'read', 'agent')}".encode()]
    unauthenticated_site, _, _ = master_site(HttpPolicy())
    unauthenticated_site.resource.children[b"tasks"].http = http
    exchange(unauthenticated_site, "GET", "/tasks/t1/files/read?path=stdout")
    assert http.calls[1][1].getRawHeaders(b"authorization") is None


def test_operator_api_refusals_are_all_json(site: Any) -> None:
    """Whatever the refusal, the body parses as JSON with an ``error`` sentence."""
    cases = [("PUT", "/weights", b"{", TOKEN), ("PUT", "/weights", b"{}", None), ("GET", "/x/y/z", None, None),
             ("PATCH", "/weights", b"[]", TOKEN), ("POST", "/quota", b"[]", TOKEN)]
    for method, path, body, token in cases:
        answer = exchange(site, method, path, body, token=token)
        assert answer.code >= 400
        assert answer.headers["content-type"] == "application/json"
        assert isinstance(json.loads(answer.body)["error"], str)
