"""How ``tepui`` commands call a master's HTTP API: with the cluster's bearer token when one is
configured, over TLS when the address says ``https://``.

Why one helper: ``tepui state``, ``tepui logs`` and whatever comes next must find the token the
same way, and a 401 must read the same everywhere. The token comes from ``$TEPUI_HTTP_TOKEN``
(an explicit override), else from ``http_token`` in the client configuration that ``tepui up``
writes (``tepui.sdk.config.load_client_config()``, when that module exists). A private CA for
``https://`` masters comes from ``$TEPUI_HTTP_CA`` (a PEM file), else ``http_ca`` in that config.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any

TOKEN_ENV = "TEPUI_HTTP_TOKEN"
CA_ENV = "TEPUI_HTTP_CA"


def _config_value(name: str) -> str | None:
    try:
        from tepui.sdk.config import load_client_config  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        config = load_client_config()
    except Exception:  # noqa: BLE001 - no or unreadable config: the commands still work without a token
        return None
    value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
    return str(value) if value else None


def http_token() -> str | None:
    return os.environ.get(TOKEN_ENV) or _config_value("http_token")


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ.get(CA_ENV) or _config_value("http_ca"))


def open_url(url: str, timeout: float, method: str = "GET", body: Any = None, *, data: bytes | None = None,
             content_type: str | None = None) -> Any:
    """``urllib.request.urlopen`` with the token and, for https, the configured CA. ``body`` is
    sent as JSON; ``data`` is sent as it is, with ``content_type`` (e.g. ``application/yaml``)."""
    headers = {"user-agent": "tepui-cli"}
    token = http_token()
    if token:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    elif data is not None:
        headers["content-type"] = content_type or "application/octet-stream"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = _tls_context() if url.startswith("https://") else None
    return urllib.request.urlopen(request, timeout=timeout, context=context)


def unauthorized_hint(exc: urllib.error.HTTPError) -> str | None:
    """What to do about a 401, or None for any other error."""
    if exc.code != 401:
        return None
    try:
        message = json.loads(exc.read() or b"{}").get("error", "")
    except ValueError:
        message = ""
    return unauthorized_message(message)


def request_json(url: str, timeout: float, method: str = "GET", body: Any = None, *, data: bytes | None = None,
                 content_type: str | None = None) -> tuple[int, Any]:
    """Like :func:`open_url`, but an HTTP error answer is returned rather than raised: ``(status,
    decoded JSON body)``, the body ``None`` when it is empty or not JSON. Raises
    ``urllib.error.URLError``/``OSError`` only when no answer came at all."""
    try:
        with open_url(url, timeout, method, body, data=data, content_type=content_type) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def unauthorized_message(message: str = "") -> str:
    """What to do about a 401 whose JSON ``error`` was ``message`` (for :func:`request_json` users)."""
    where = "the token in $TEPUI_HTTP_TOKEN was refused" if os.environ.get(TOKEN_ENV) else (
        "the token from the client config was refused" if http_token() else "no token was sent")
    return (f"the master wants a bearer token and {where}{': ' + message if message else ''}. Set "
            f"{TOKEN_ENV} to the contents of the master's --http-token-file (`tepui up` writes it to the client "
            "config for you).")
