"""What the live fuzzer (``bench/fuzz.py --live``) reads in the master's and agents' logs after
(and during) an attack: tracebacks, ``event=handler_failed`` and every other ERROR or CRITICAL
record are crashes; lines forged by a hostile string with a raw newline are counted apart
(issue 15 bug 3: the log must escape control characters); and each crash is traced to the
hostile lives that were in flight when it was logged (the clients' journals), so that the seed
that reproduces it can be printed.

A record is a line that starts with the log format's timestamp and level (sdk/shell.py:
``%(asctime)s %(levelname)s ...``) plus the lines after it that do not (a traceback). Crashes are
grouped by signature — the event, or the traceback's last ``File`` line and exception with
digits blanked — so that one bug hit 500 times is one category with a count.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
TRACEBACK = "Traceback (most recent call last):"
# ERROR records that are the master doing its job under attack, not a fault: a spare key the
# master refused after its multi-frame message, reconnecting before the fuzzer closed it.
EXPECTED = ("event=handshake_failed",)
EXCERPT_LINES = 30


@dataclass
class Crash:
    log: str
    at: float | None  # seconds since the epoch, from the record's timestamp
    kind: str  # traceback | handler_failed | error
    signature: str
    excerpt: str


@dataclass
class Scan:
    crashes: list[Crash] = field(default_factory=list)
    forged: int = 0
    expected: int = 0
    forged_example: str = ""

    def categories(self) -> dict[str, list[Crash]]:
        groups: dict[str, list[Crash]] = {}
        for crash in self.crashes:
            groups.setdefault(f"{crash.log}: {crash.signature}", []).append(crash)
        return groups


def scan(logs: dict[str, Path], forged_marker: str) -> Scan:
    result = Scan()
    for name, path in logs.items():
        try:
            with open(path, errors="replace") as f:
                _scan_file(name, f, forged_marker, result)
        except OSError:
            continue
    return result


def _scan_file(name: str, lines: object, marker: str, result: Scan) -> None:
    header: str | None = None
    body: list[str] = []
    traceback = False
    at: float | None = None
    level = ""

    def close() -> None:
        if header is None and not traceback:
            return
        head = header or (body[0] if body else "")
        if level in ("ERROR", "CRITICAL") and any(e in head for e in EXPECTED):
            result.expected += 1
            return
        if level in ("ERROR", "CRITICAL") or traceback:
            kind = ("handler_failed" if "event=handler_failed" in head
                    else "error" if level in ("ERROR", "CRITICAL") else "traceback")
            excerpt = "\n".join([head.rstrip()] + [b.rstrip() for b in body[:EXCERPT_LINES]])
            result.crashes.append(Crash(name, at, kind, signature(head, body), excerpt))

    for line in lines:  # type: ignore[attr-defined]
        match = RECORD.match(line)
        if match:
            close()
            header, body, traceback, level = line, [], False, match.group(3)
            at = _seconds(match.group(1), match.group(2))
            continue
        if line.lstrip("\r").startswith(marker):
            result.forged += 1
            result.forged_example = result.forged_example or line.rstrip()[:200]
            continue
        if TRACEBACK in line:
            traceback = True
        if len(body) < 400:
            body.append(line)
    close()


def signature(head: str, body: list[str]) -> str:
    """What makes two crashes the same bug: the event and, for a traceback, where it was raised
    and what (numbers and quoted values blanked)."""
    event = re.search(r"event=(\S+)", head)
    files = [line.strip() for line in body if line.strip().startswith("File ")]
    last = next((line.strip() for line in reversed(body) if line.strip() and not line.startswith(" ")), "")
    parts = [event.group(1) if event else head.split(" ", 4)[-1][:60].strip()]
    if files:
        parts.append(files[-1])
        parts.append(last)
    text = " | ".join(parts)
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "#", text)[:300]


def _seconds(stamp: str, millis: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def lives_at(journals: list[Path], at: float | None, slack: float = 0.5, limit: int = 5) -> list[str]:
    """The hostile lives whose windows were in flight at ``at`` (seed and cases), from the
    clients' journals (``<send time> <barrier time> <life seed> <cases>``)."""
    if at is None:
        return []
    found: list[str] = []
    for index, path in enumerate(journals):
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split(" ", 3)
                    if len(parts) == 4 and float(parts[0]) - slack <= at <= float(parts[1]) + slack:
                        found.append(f"client {index} life {parts[2]} ({parts[3].strip()})")
                        if len(found) >= limit:
                            return found
        except (OSError, ValueError):
            continue
    return found
