"""The CLI's HTTP helper: the token from $TEPUI_HTTP_TOKEN, else from the client configuration,
on every call of `tepui state` and `tepui logs`; a 401 explains what to set."""

from __future__ import annotations

import io
import json
import urllib.error
from email.message import Message
from pathlib import Path
from typing import Any

import click
import pytest

from tepui.cli import http_client
from tepui.cli.logs import TaskFiles
from tepui.cli.state import fetch_state


class Captured:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def __call__(self, request: Any, timeout: float = 0, context: Any = None) -> Any:
        self.requests.append((request, context))
        return _Response(io.BytesIO(b'{"data": "hi", "next_offset": 2, "eof": true}'))


class _Response:
    def __init__(self, body: io.BytesIO) -> None:
        self.body, self.headers = body, Message()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def read(self, *args: Any) -> bytes:
        return self.body.read(*args)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Captured:
    capture = Captured()
    monkeypatch.setattr(http_client.urllib.request, "urlopen", capture)
    monkeypatch.setenv("TEPUI_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.delenv("TEPUI_HTTP_TOKEN", raising=False)
    return capture


def test_the_env_token_is_sent_by_state_and_logs(captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEPUI_HTTP_TOKEN", "from-the-env-0123456789")
    fetch_state("127.0.0.1:5080")
    TaskFiles("127.0.0.1:5080", "t1", None).read("stdout", 0)
    assert [r.get_header("Authorization") for r, _ in captured.requests] == ["Bearer from-the-env-0123456789"] * 2


def test_the_config_token_is_used_without_the_env(captured: Captured, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("http_token: from-the-config-0123456789\n")
    config.chmod(0o600)
    monkeypatch.setenv("TEPUI_CONFIG", str(config))
    fetch_state("http://127.0.0.1:5080")
    [(request, context)] = captured.requests
    assert request.get_header("Authorization") == "Bearer from-the-config-0123456789" and context is None


def test_no_token_no_header_and_https_gets_a_tls_context(captured: Captured) -> None:
    fetch_state("https://127.0.0.1:5080")
    [(request, context)] = captured.requests
    assert request.get_header("Authorization") is None and context is not None


def test_a_401_says_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEPUI_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.delenv("TEPUI_HTTP_TOKEN", raising=False)

    def refuse(request: Any, timeout: float = 0, context: Any = None) -> Any:
        body = io.BytesIO(json.dumps({"error": "GET /state is token-protected", "reason": "UNAUTHENTICATED"}).encode())
        raise urllib.error.HTTPError(request.full_url, 401, "Unauthorized", Message(), body)

    monkeypatch.setattr(http_client.urllib.request, "urlopen", refuse)
    with pytest.raises(click.ClickException, match="TEPUI_HTTP_TOKEN") as info:
        fetch_state("127.0.0.1:5080")
    assert "no token was sent" in info.value.message and "token-protected" in info.value.message
    with pytest.raises(click.ClickException, match="TEPUI_HTTP_TOKEN"):
        TaskFiles("127.0.0.1:5080", "t1", None).read("stdout", 0)
