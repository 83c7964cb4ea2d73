"""The HTTP side of a framework's Python client (the batch and cron clients): where the master's
API is, which token, CA and user go with each call, one exchange, and reading a spec given as a
path or as text.

Why in the SDK: both clients found the master, the token (``$TEPUI_HTTP_TOKEN``, else the client
configuration's ``http_token``), the CA for ``https://`` (``$TEPUI_HTTP_CA``, else ``http_ca``)
and the user (``$TEPUI_USER``, else the login name) the same way, and made the same urllib
exchange, line for line. Each client keeps its own error class and the sentences that name what
to do, which are its framework's. Only the standard library: a notebook should not need Twisted,
click or rich, and frameworks import only ``tepui.sdk``.
"""

from __future__ import annotations

import getpass
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["CA_ENV", "FrameworkClient", "TOKEN_ENV", "USER_ENV", "is_json", "json_object", "login", "quote", "spec_text"]

TOKEN_ENV, CA_ENV, USER_ENV = "TEPUI_HTTP_TOKEN", "TEPUI_HTTP_CA", "TEPUI_USER"


class FrameworkClient:
    """``MASTER/frameworks/<framework>/v1`` through the master's proxy. ``master``: HOST:PORT or a
    URL (default: ``$TEPUI_MASTER_HTTP``, else the client configuration's, else 127.0.0.1:5080);
    ``token``/``ca``: override the configuration's; ``user``: sent as ``X-Tepui-User``;
    ``timeout``: seconds one call may take (longer than the master proxy's 30 s, so its 504
    comes first)."""

    def __init__(self, framework: str, master: str | None = None, *, token: str | None = None,
                 ca: str | None = None, user: str | None = None, timeout: float = 35.0) -> None:
        from tepui.sdk.config import ClientConfig, ConfigError, load_client_config, resolve_master_http

        try:
            config = load_client_config()
        except ConfigError:  # as the CLI: a broken file is no reason to refuse a call needing none of it
            config = ClientConfig()
        master = master or resolve_master_http(None, config)
        self.framework = framework
        self.master = (master if master.startswith(("http://", "https://")) else f"http://{master}").rstrip("/")
        self.base = f"{self.master}/frameworks/{framework}/v1"
        self.token = token or os.environ.get(TOKEN_ENV) or getattr(config, "http_token", None)
        self.ca = ca or os.environ.get(CA_ENV) or getattr(config, "http_ca", None)
        self.user = user or os.environ.get(USER_ENV) or login()
        self.timeout = timeout

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        headers = {"user-agent": f"tepui-{self.framework}-client", "accept": accept, "x-tepui-user": self.user}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return headers

    def _tls(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca) if self.master.startswith("https://") else None

    def _exchange(self, method: str, path: str, query: Mapping[str, str] | None = None, data: bytes | None = None,
                  content_type: str | None = None) -> tuple[int, dict[str, Any]]:
        """``(status, JSON object answered)`` of one call; raises OSError (urllib's URLError is
        one) when nothing answered, for the client to say so in its own words."""
        headers = self._headers()
        if data is not None:
            headers["content-type"] = content_type or "application/json"
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        status, raw = self._send(method, url, data, headers)
        return status, json_object(raw)

    def _send(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """One HTTP exchange: ``(status, body)``; raises OSError/URLError when nothing answered."""
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers),
                                        timeout=self.timeout, context=self._tls()) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "anonymous"


def json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; ``{}`` for anything else (an empty body, a proxy's HTML page)."""
    try:
        document = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def quote(value: str) -> str:
    """One path segment (an id) of a URL."""
    return urllib.parse.quote(str(value), safe="")


def spec_text(spec: str | os.PathLike[str]) -> tuple[str, Path | None]:
    """A spec's document text and the file it came from (None: ``spec`` is the text itself). A
    string is a path when it is one line, not JSON, and names a file or a YAML/JSON file name.
    Raises OSError or UnicodeDecodeError when the file cannot be read."""
    path = Path(spec) if isinstance(spec, os.PathLike) else None
    if path is None and isinstance(spec, str) and "\n" not in spec and not spec.lstrip().startswith("{"):
        if Path(spec).is_file() or spec.lower().endswith((".yaml", ".yml", ".json")):
            path = Path(spec)
    return (path.read_text(), path) if path is not None else (str(spec), None)


def is_json(text: str, path: Path | None) -> bool:
    """Whether a spec document is JSON (a ``.json`` file, or text starting with ``{``) or YAML."""
    return (path is not None and path.suffix.lower() == ".json") or text.lstrip()[:1] == "{"
