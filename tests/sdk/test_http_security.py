"""The HTTP guard (sdk/http_security.py): tokens in constant time, read-auth modes, and a JSON
answer with the right status for every refusal — 401, 405, 413, 500 — over real HTTP bytes."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest
from twisted.web import resource

from tepui.sdk.http_security import (
    GuardedSite,
    HttpPolicy,
    TokenFileError,
    agent_relay_headers,
    basic_password,
    bearer,
    decide,
    load_token,
    policy_from_flags,
    relay_headers,
    relay_token,
    task_files_scope,
    task_files_token,
)
from tests.http_wire import clock, exchange

TOKEN = "s3cret-token-0123456789"


# --- the pure decision --------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), (b"", None), (b"Bearer", None), (b"Bearer   ", None), (b"Basic abc", None),
    (b"Bearer abc", "abc"), (b"bearer  abc ", "abc"), (b"\xff\xfe", None),
])
def test_bearer_parses_only_bearer_tokens(header: bytes | None, expected: str | None) -> None:
    assert bearer(header) == expected


def test_mutating_calls_need_the_token_and_reads_are_open_by_default() -> None:
    policy = HttpPolicy(token=TOKEN)
    assert decide(policy, b"GET", "/state", None) is None
    assert decide(policy, b"HEAD", "/metrics", None) is None
    for method in (b"PUT", b"POST", b"DELETE", b"PATCH", b"OPTIONS"):
        refusal = decide(policy, method, "/weights", None)
        assert refusal is not None and (refusal.code, refusal.reason) == (401, "UNAUTHENTICATED")
        assert "Authorization: Bearer" in refusal.message
        wrong = decide(policy, method, "/weights", b"Bearer " + TOKEN[:-1].encode() + b"X")
        assert wrong is not None and (wrong.code, wrong.reason) == (401, "BAD_TOKEN")
        assert decide(policy, method, "/weights", f"Bearer {TOKEN}".encode()) is None


def test_without_a_token_file_mutating_calls_are_refused_saying_how_to_configure_one() -> None:
    refusal = decide(HttpPolicy(), b"PUT", "/weights", b"Bearer anything")
    assert refusal is not None and (refusal.code, refusal.reason) == (401, "NO_TOKEN_CONFIGURED")
    assert "--http-token-file" in refusal.message
    assert decide(HttpPolicy(), b"GET", "/state", None) is None


def test_read_auth_token_protects_reads_but_never_health() -> None:
    policy = HttpPolicy(token=TOKEN, read_auth="token")
    for path in ("/state", "/metrics", "/roles", "/tasks/t/files/read", "/files/read", "/"):
        refusal = decide(policy, b"GET", path, None)
        assert refusal is not None and refusal.code == 401, path
        assert decide(policy, b"GET", path, f"Bearer {TOKEN}".encode()) is None
    assert decide(policy, b"GET", "/health", None) is None
    assert decide(policy, b"GET", "/health/", None) is None


def test_read_auth_token_without_a_token_refuses_every_read_but_health() -> None:
    """An agent's files API started without a token file is closed, not open (issue 15)."""
    policy = HttpPolicy(read_auth="token", service="agent")
    refusal = decide(policy, b"GET", "/files/read", b"Bearer anything")
    assert refusal is not None and (refusal.code, refusal.reason) == (401, "NO_TOKEN_CONFIGURED")
    assert "is token-protected" in refusal.message and "--http-token-file" in refusal.message
    assert "this agent has none configured" in refusal.message
    assert decide(policy, b"GET", "/health", None) is None


def test_read_auth_token_flag_without_a_token_file_and_unknown_modes_are_configuration_errors() -> None:
    with pytest.raises(ValueError, match="open, token"):
        HttpPolicy(token=TOKEN, read_auth="sometimes")
    with pytest.raises(SystemExit, match="--http-token-file"):
        policy_from_flags(None, "token", "agent")


def test_an_oversized_body_is_413_but_only_after_authentication() -> None:
    policy = HttpPolicy(token=TOKEN)
    refusal = decide(policy, b"PUT", "/weights", f"Bearer {TOKEN}".encode(), body_too_large=True)
    assert refusal is not None and (refusal.code, refusal.reason) == (413, "BODY_TOO_LARGE")
    unauthenticated = decide(policy, b"PUT", "/weights", None, body_too_large=True)
    assert unauthenticated is not None and unauthenticated.code == 401


def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    import tepui.sdk.http_security as guard

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(guard.hmac, "compare_digest", spy)
    assert decide(HttpPolicy(token=TOKEN), b"PUT", "/quota", b"Bearer nope") is not None
    assert calls == [(b"nope", TOKEN.encode())]


# --- relay tokens (the master's framework proxy; issue 15) --------------------------------------

READ_F1 = "01f8d036093fc4d21a80ce1937e15d66df0176a45d3f0bd88e1cc1e4a15ab6b8"
WRITE_F1 = "661cb8135981cd08b662af3f70521d8cc177d2c08e46acb67d72a900c75a11a4"


def test_relay_tokens_are_the_documented_hmac_of_the_cluster_token_framework_id_and_access() -> None:
    """The vector docs/security.md gives framework authors in other languages (and the openssl
    one-liner there computes): HMAC-SHA256(token, "tepui-relay\\0F1\\0read"), hex."""
    assert relay_token(TOKEN, "F1", "read") == READ_F1
    assert relay_token(TOKEN, "F1", "write") == WRITE_F1
    assert relay_token(TOKEN, "F2", "write") != WRITE_F1
    with pytest.raises(ValueError, match="read, write"):
        relay_token(TOKEN, "F1", "admin")


def test_the_master_relays_reads_with_the_read_token_and_everything_else_with_the_write_token() -> None:
    assert relay_headers(TOKEN, "F1", b"GET") == {b"authorization": [f"Bearer {READ_F1}".encode()]}
    assert relay_headers(TOKEN, "F1", b"HEAD") == {b"authorization": [f"Bearer {READ_F1}".encode()]}
    for method in (b"POST", b"PUT", b"PATCH", b"DELETE"):
        assert relay_headers(TOKEN, "F1", method) == {b"authorization": [f"Bearer {WRITE_F1}".encode()]}
    assert relay_headers(None, "F1", b"POST") == {}


def test_a_frameworks_site_takes_its_write_relay_token_as_the_masters_authenticated_caller() -> None:
    policy = HttpPolicy(token=TOKEN, read_auth="token", service="services")
    for method in (b"POST", b"PUT", b"DELETE", b"GET"):
        assert decide(policy, method, "/v1/apps", f"Bearer {WRITE_F1}".encode(), relay_scope="F1") is None
    assert decide(policy, b"GET", "/v1/apps", f"Bearer {READ_F1}".encode(), relay_scope="F1") is None
    assert decide(policy, b"POST", "/v1/apps", f"Bearer {TOKEN}".encode(), relay_scope="F1") is None


def test_a_read_relay_token_is_refused_for_a_mutating_call() -> None:
    """Reads are relayed open by default, so any framework receives its read token: it must not
    be able to replay it as a write."""
    refusal = decide(HttpPolicy(token=TOKEN), b"POST", "/v1/apps", f"Bearer {READ_F1}".encode(), relay_scope="F1")
    assert refusal is not None and (refusal.code, refusal.reason) == (403, "READ_RELAY_TOKEN")
    assert "write relay token" in refusal.message


def test_relay_tokens_of_another_framework_and_relay_tokens_at_the_master_are_refused() -> None:
    policy = HttpPolicy(token=TOKEN, read_auth="token")
    other = relay_token(TOKEN, "F2", "write")
    for method in (b"POST", b"GET"):
        refusal = decide(policy, method, "/v1/apps", f"Bearer {other}".encode(), relay_scope="F1")
        assert refusal is not None and (refusal.code, refusal.reason) == (401, "BAD_TOKEN")
        for given in (READ_F1, WRITE_F1):  # a site without a relay scope: the master, an agent
            refused = decide(policy, method, "/weights", f"Bearer {given}".encode())
            assert refused is not None and (refused.code, refused.reason) == (401, "BAD_TOKEN")
    # A framework that has no id yet (before its first SUBSCRIBED) accepts no relay token.
    assert decide(policy, b"POST", "/v1/apps", f"Bearer {WRITE_F1}".encode(), relay_scope=None) is not None


def test_relay_tokens_are_compared_in_constant_time_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    import tepui.sdk.http_security as guard

    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(guard.hmac, "compare_digest", spy)
    assert decide(HttpPolicy(token=TOKEN), b"PUT", "/v1/apps", b"Bearer nope", relay_scope="F1") is not None
    assert compared == [TOKEN.encode(), READ_F1.encode(), WRITE_F1.encode()]


# --- agent relay tokens (the master's files proxy; issue 15) ------------------------------------

READ_S1 = "a020c342033f3dc05d562688fafe09a0b9c7bfeb5649083b8437b1792c775d80"
WRITE_S1 = "3e9d5c4a11044826141e03de8543bc9731c13a32ee3afb52b3dc8aead8eefda4"  # never sent, never accepted


def test_agent_relay_tokens_are_the_documented_hmac_in_their_own_domain() -> None:
    """docs/security.md's vector: HMAC-SHA256(token, "tepui-agent-relay\\0S1\\0read"), hex. Its
    own domain string, so no framework id — ``agent:S1``, or ``S1`` itself — names an agent's token."""
    assert relay_token(TOKEN, "S1", "read", "agent") == READ_S1
    assert relay_token(TOKEN, "S1", "write", "agent") == WRITE_S1
    framework_tokens = {relay_token(TOKEN, fid, access) for fid in ("S1", "agent:S1", "agent\0S1")
                        for access in ("read", "write")}
    assert not framework_tokens & {READ_S1, WRITE_S1}
    assert agent_relay_headers(TOKEN, "S1") == {b"authorization": [f"Bearer {READ_S1}".encode()]}
    assert agent_relay_headers(None, "S1") == {}
    with pytest.raises(ValueError, match="framework, agent"):
        relay_token(TOKEN, "S1", "read", "executor")


def test_an_agents_files_api_takes_its_own_read_token_and_no_other_relay_token() -> None:
    policy = HttpPolicy(token=TOKEN, read_auth="token", service="agent")

    def refused(method: bytes, token: str, scope: str | None) -> tuple[int, str] | None:
        refusal = decide(policy, method, "/files/read", f"Bearer {token}".encode(), relay_scope=scope,
                         relay_kind="agent")
        return None if refusal is None else (refusal.code, refusal.reason)

    assert refused(b"GET", READ_S1, "S1") is None
    assert refused(b"GET", TOKEN, "S1") is None and refused(b"GET", TOKEN, None) is None
    others = [relay_token(TOKEN, "S2", "read", "agent"),  # another agent's
              WRITE_S1,  # a write token, even its own: the files proxy relays reads only
              relay_token(TOKEN, "S1", "read"), relay_token(TOKEN, "S1", "write"),  # a framework's named S1
              relay_token(TOKEN, "agent:S1", "read")]
    for token in others:
        for method in (b"GET", b"POST"):
            assert refused(method, token, "S1") == (401, "BAD_TOKEN"), (token, method)
    assert refused(b"GET", READ_S1, None) == (401, "BAD_TOKEN")  # no id yet (not registered or recovered)
    assert refused(b"POST", READ_S1, "S1") == (403, "READ_RELAY_TOKEN")
    # And a framework's site or the master's (no scope) refuses the agent's token.
    for scope in ("S1", None):
        refusal = decide(policy, b"GET", "/v1/apps", f"Bearer {READ_S1}".encode(), relay_scope=scope)
        assert refusal is not None and refusal.reason == "BAD_TOKEN"


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), (b"Bearer abc", None), (b"Basic", None), (b"Basic !!!", None),
    (b"Basic " + base64.b64encode(b"artifact:tok:en"), "tok:en"), (b"basic " + base64.b64encode(b"u:p"), "p"),
    (b"Basic " + base64.b64encode(b"no-colon"), None), (b"Basic " + base64.b64encode(b"user:"), None),
    (b"Basic " + base64.b64encode(b"\xff:\xfe"), None),
])
def test_basic_password_parses_only_basic_credentials(header: bytes | None, expected: str | None) -> None:
    assert basic_password(header) == expected


def test_task_files_tokens_are_the_read_relay_token_of_one_frameworks_task_in_their_own_domain() -> None:
    """docs/security.md: HMAC-SHA256(token, "tepui-task-files\0" + len(F) + ":" + F + "/" + T + "\0read")."""
    import hashlib
    import hmac

    expected = hmac.new(TOKEN.encode(), b"tepui-task-files\x002:F1/job.map.0.1\x00read", hashlib.sha256).hexdigest()
    assert task_files_token(TOKEN, "F1", "job.map.0.1") == expected
    assert expected == "0e62172c42ed0ec3684ca61887c2103014d4ab51d1b1e33512a1a45a8cdaa76e"  # docs/security.md's vector
    # The length prefix: no other split of the same characters names the same task.
    assert task_files_token(TOKEN, "F1/job", "map.0.1") != expected
    assert task_files_scope("F1", "t") != task_files_scope("F1/t", "")
    assert expected not in {relay_token(TOKEN, "2:F1/job.map.0.1", access, kind)
                            for kind in ("framework", "agent") for access in ("read", "write")}


def test_a_task_files_token_opens_reads_of_its_task_only_as_bearer_or_basic_password() -> None:
    policy = HttpPolicy(token=TOKEN, read_auth="token")
    scope = ("task-files", task_files_scope("F1", "t1"))
    token = task_files_token(TOKEN, "F1", "t1")
    basic = b"Basic " + base64.b64encode(f"artifact:{token}".encode())

    def refused(method: bytes, header: bytes, request_relay: tuple[str, str] | None = scope) -> tuple[int, str] | None:
        refusal = decide(policy, method, "/tasks/t1/files/download", header, request_relay=request_relay)
        return None if refusal is None else (refusal.code, refusal.reason)

    assert refused(b"GET", basic) is None
    assert refused(b"GET", f"Bearer {token}".encode()) is None
    assert refused(b"GET", b"Basic " + base64.b64encode(f"artifact:{TOKEN}".encode())) is None  # the cluster token
    assert refused(b"GET", basic, ("task-files", task_files_scope("F1", "t2"))) == (401, "BAD_TOKEN")
    assert refused(b"GET", basic, None) == (401, "UNAUTHENTICATED")  # Basic is read only for this token
    assert refused(b"GET", f"Bearer {token}".encode(), None) == (401, "BAD_TOKEN")  # elsewhere at the master
    assert refused(b"POST", f"Bearer {token}".encode()) == (403, "READ_RELAY_TOKEN")


def test_a_site_with_an_unknown_relay_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="relay_kind must be one of framework, agent"):
        GuardedSite(resource.Resource(), HttpPolicy(token=TOKEN), relay_scope=lambda: "S1", relay_kind="agents")


# --- the token file -----------------------------------------------------------------------------


def test_token_file_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = tmp_path / "token"
    good.write_text(f"  {TOKEN}\n")
    good.chmod(0o600)
    assert load_token(str(good)) == TOKEN
    with pytest.raises(TokenFileError, match="cannot read"):
        load_token(str(tmp_path / "missing"))
    for content, problem in (("\n", "is empty"), ("short", "at least 16"), ("two words here, long enough", "one word")):
        bad = tmp_path / "bad"
        bad.write_text(content)
        with pytest.raises(TokenFileError, match=problem):
            load_token(str(bad))
    good.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="tepui.http"):
        assert load_token(str(good)) == TOKEN
    assert "chmod 600" in caplog.text
    with pytest.raises(SystemExit, match="is empty"):
        policy_from_flags(str(_empty(tmp_path)), "open", "x")


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.write_text("")
    return path


# --- over real HTTP bytes -----------------------------------------------------------------------


class _Echo(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b'{"read":true}'

    def render_PUT(self, request: Any) -> bytes:
        return b'{"stored":' + str(len(request.content.read())).encode() + b"}"


class _Broken(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        raise RuntimeError("secret internals /etc/shadow")


def _site(relay_scope: Any = None, **policy: Any) -> GuardedSite:
    root = resource.Resource()
    root.putChild(b"echo", _Echo())
    root.putChild(b"broken", _Broken())
    root.putChild(b"health", _Echo())
    return GuardedSite(root, HttpPolicy(**policy), relay_scope=relay_scope, reactor=clock())


def test_http_token_missing_wrong_and_right() -> None:
    site = _site(token=TOKEN)
    missing = exchange(site, "PUT", "/echo", b"{}")
    assert missing.code == 401 and missing.json()["reason"] == "UNAUTHENTICATED"
    assert missing.headers["www-authenticate"] == 'Bearer realm="tepui"'
    assert missing.headers["content-type"] == "application/json"
    wrong = exchange(site, "PUT", "/echo", b"{}", token="x" * 20)
    assert wrong.code == 401 and wrong.json()["reason"] == "BAD_TOKEN"
    right = exchange(site, "PUT", "/echo", b"{}", token=TOKEN)
    assert (right.code, right.json()) == (200, {"stored": 2})
    assert exchange(site, "GET", "/echo").code == 200
    assert site.counters["refused_401"] == 2


def test_http_read_auth_token_mode() -> None:
    site = _site(token=TOKEN, read_auth="token")
    assert exchange(site, "GET", "/echo").code == 401
    assert exchange(site, "GET", "/echo", token=TOKEN).code == 200
    assert exchange(site, "GET", "/health").code == 200


def test_http_wrong_method_is_a_json_405_naming_the_allowed_ones() -> None:
    answer = exchange(_site(token=TOKEN), "DELETE", "/echo", token=TOKEN)
    assert answer.code == 405
    document = answer.json()
    assert document["reason"] == "METHOD_NOT_ALLOWED" and {"GET", "PUT"} <= set(document["allowed"])
    assert "GET" in answer.headers["allow"]
    head = exchange(_site(), "HEAD", "/echo")
    assert head.code == 200 and head.body == b""


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_http_too_large_a_body_is_413_and_is_not_stored(chunked: bool) -> None:
    site = _site(token=TOKEN, body_limit=1000)
    answer = exchange(site, "PUT", "/echo", b"x" * 5000, token=TOKEN, chunked=chunked)
    assert answer.code == 413 and answer.json()["reason"] == "BODY_TOO_LARGE"
    assert exchange(site, "PUT", "/echo", b"x" * 1000, token=TOKEN, chunked=chunked).json() == {"stored": 1000}


def test_http_a_bug_is_a_json_500_without_internals_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    site = _site()
    with caplog.at_level(logging.ERROR, logger="tepui.http"):
        answer = exchange(site, "GET", "/broken")
    assert answer.code == 500
    assert answer.json()["reason"] == "INTERNAL" and b"shadow" not in answer.body and b"Traceback" not in answer.body
    assert "event=http_internal_error" in caplog.text and "Traceback" in caplog.text and "shadow" in caplog.text
    assert site.counters["internal_errors"] == 1


def test_http_a_framework_site_follows_its_framework_id_for_relay_tokens() -> None:
    framework_id: list[str | None] = [None]
    site = _site(relay_scope=lambda: framework_id[0], token=TOKEN)
    assert exchange(site, "PUT", "/echo", b"{}", token=WRITE_F1).code == 401  # no id yet
    framework_id[0] = "F1"
    assert exchange(site, "PUT", "/echo", b"{}", token=WRITE_F1).json() == {"stored": 2}
    read = exchange(site, "PUT", "/echo", b"{}", token=READ_F1)
    assert read.code == 403 and read.json()["reason"] == "READ_RELAY_TOKEN"
    assert exchange(site, "PUT", "/echo", b"{}", token=relay_token(TOKEN, "F2", "write")).code == 401
    assert site.counters["refused_403"] == 1 and site.counters["refused_401"] == 2


def test_the_services_frameworks_refusals_name_it_in_plain_words() -> None:
    from tepui.frameworks.services.main import HTTP_SERVICE

    refusal = decide(HttpPolicy(token=TOKEN, service=HTTP_SERVICE), b"POST", "/v1/apps", None)
    assert refusal is not None and (refusal.code, refusal.reason) == (401, "UNAUTHENTICATED")
    assert "send `Authorization: Bearer <token>` with the token in the services framework's --http-token-file" \
        in refusal.message
    refusal = decide(HttpPolicy(service=HTTP_SERVICE), b"POST", "/v1/apps", None)
    assert refusal is not None and "but this services framework has none configured" in refusal.message
