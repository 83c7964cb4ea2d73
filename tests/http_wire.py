"""Real HTTP bytes through a real twisted.web Site, without sockets or a running reactor: the
request is fed to the site's HTTP channel and the answer parsed from its transport. Everything
from the HTTP parser to the resource (body limits, Authorization, 405, 500) runs as in
production; only the TCP connection is replaced."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport


@dataclass
class Answer:
    code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(site: Any, method: str, path: str, body: bytes | None = None, token: str | None = None,
             headers: dict[str, str] | None = None, chunked: bool = False) -> Answer:
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    payload = b""
    if body is not None:
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            step = 64 * 1024
            for i in range(0, len(body), step):
                part = body[i:i + step]
                payload += f"{len(part):x}\r\n".encode() + part + b"\r\n"
            payload += b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
    channel.dataReceived("\r\n".join(lines).encode() + b"\r\n\r\n" + payload)
    raw = transport.value()
    if not raw:  # the resource answers later (NOT_DONE_YET)
        return Answer(0, {}, b"")
    head, _, rest = raw.partition(b"\r\n\r\n")
    status, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        out, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, data = out + data[:size], data[size + 2:]
        rest = out
    return Answer(int(status.split()[1]), parsed, rest)


def clock() -> Clock:
    return Clock()
