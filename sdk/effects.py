"""Effects shared by every pure core (DESIGN §2): a core returns them, its shell performs them.

Timers are effects so that a core never reads a clock: it asks to be woken at ``at`` with a
``key`` and the shell feeds ``TimerFired(key)`` back. Scheduling a key again replaces the
earlier timer of that key, so cores can re-arm without bookkeeping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Hashable


@dataclass(frozen=True)
class ScheduleTimer:
    at: float
    key: Hashable


@dataclass(frozen=True)
class CancelTimer:
    key: Hashable


@dataclass(frozen=True)
class TimerFired:
    key: Hashable


@dataclass(frozen=True)
class Log:
    """A structured log line: one event, key=value fields."""

    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """``event=NAME key=value ...`` on one line, whatever the values hold: a value with a
        space, ``"``, ``=``, a backslash or a control character is quoted, its ``\\`` and ``"``
        escaped, control characters written as ``\\n``, ``\\x1b``...; one over
        :data:`MAX_LOG_VALUE` characters is cut. Values are often a client's (a framework's name):
        none may forge a line or a field, nor make a line megabytes long."""
        parts = [f"event={self.event}"]
        for key, value in self.fields.items():
            text = str(value)
            if len(text) > MAX_LOG_VALUE:
                text = f"{text[:MAX_LOG_VALUE]}...[{len(text) - MAX_LOG_VALUE} more characters]"
            if not text or any(c in text for c in ' "=\\') or CONTROL.search(text):
                text = '"' + escape_controls(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
            parts.append(f"{key}={text}")
        return " ".join(parts)


MAX_LOG_VALUE = 4096
# C0, DEL, C1 and the Unicode line and paragraph separators: whatever can end or bend a line.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return CONTROL.sub(_escaped, text) if CONTROL.search(text) else text
