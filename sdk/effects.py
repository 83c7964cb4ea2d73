"""Effects shared by every pure core (DESIGN §2): a core returns them, its shell performs them.

Timers are effects so that a core never reads a clock: it asks to be woken at ``at`` with a
``key`` and the shell feeds ``TimerFired(key)`` back. Scheduling a key again replaces the
earlier timer of that key, so cores can re-arm without bookkeeping.
"""

from __future__ import annotations

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
        parts = [f"event={self.event}"]
        for key, value in self.fields.items():
            text = str(value)
            if not text or any(c in text for c in ' "='):
                text = '"' + text.replace('"', '\\"') + '"'
            parts.append(f"{key}={text}")
        return " ".join(parts)
