"""The HTTP guard (sdk/http_security.py): tokens in constant time, read-auth modes, and a JSON
answer with the right status for every refusal — 401, 405, 413, 500 — over real HTTP bytes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from twisted.web import resource

from tepui.sdk.http_security import (
    GuardedSite,
    HttpPolicy,
    TokenFileError,
    bearer,
    decide,
    load_token,
    policy_from_flags,
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


def _site(**policy: Any) -> GuardedSite:
    root = resource.Resource()
    root.putChild(b"echo", _Echo())
    root.putChild(b"broken", _Broken())
    root.putChild(b"health", _Echo())
    return GuardedSite(root, HttpPolicy(**policy), reactor=clock())


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
