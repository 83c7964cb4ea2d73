"""The thin-shell helpers every process shares: timers keyed like the cores ask, and
structured logging. Cores return ``ScheduleTimer``/``CancelTimer``/``Log`` effects; shells hand
them to a :class:`TimerBook` and :func:`log_effect`."""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Hashable

from tepui.sdk.effects import Log

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class TimerBook:
    """One pending reactor call per key; scheduling a key again replaces it."""

    def __init__(self, reactor: Any, fire: Callable[[Hashable], None]) -> None:
        self._reactor = reactor
        self._fire = fire
        self._calls: dict[Hashable, Any] = {}

    def schedule(self, at: float, key: Hashable) -> None:
        now = self._reactor.seconds()
        call = self._calls.get(key)
        if call is not None and at <= now and call.active() and call.getTime() <= now:
            return  # already due: it fires at the next turn either way (a core asking "now" per message)
        self.cancel(key)
        self._calls[key] = self._reactor.callLater(max(0.0, at - now), self._expire, key)

    def cancel(self, key: Hashable) -> None:
        call = self._calls.pop(key, None)
        if call is not None and call.active():
            call.cancel()

    def cancel_all(self) -> None:
        for key in list(self._calls):
            self.cancel(key)

    def _expire(self, key: Hashable) -> None:
        self._calls.pop(key, None)
        self._fire(key)


def log_effect(logger: logging.Logger, effect: Log) -> None:
    level = _LEVELS.get(effect.level, logging.INFO)
    if logger.isEnabledFor(level):  # rendered only when written: cores log per task and update
        logger.log(level, effect.render())


def configure_logging(level: str = "info", name: str = "tepui") -> None:
    """One event per line: ``time level logger event=... key=value``."""
    logging.basicConfig(
        level=_LEVELS.get(level, logging.INFO),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {name} %(name)s %(message)s",
    )
