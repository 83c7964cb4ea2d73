"""The thin-shell helpers every process shares: timers keyed like the cores ask, and
structured logging. Cores return ``ScheduleTimer``/``CancelTimer``/``Log`` effects; every shell
performs them alike, through :class:`TimersAndLogs` (on a :class:`TimerBook`, or on the
simulator's heap), and performs the rest of its effects itself."""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Hashable, Protocol

from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, escape_controls

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


class Timers(Protocol):
    """One pending timer per key, scheduling a key again replaces it: :class:`TimerBook`, or
    ``sim.shell.TimerHeap`` when there are hundreds of thousands of keys."""

    def schedule(self, at: float, key: Hashable) -> None: ...

    def cancel(self, key: Hashable) -> None: ...

    def cancel_all(self) -> None: ...


class TimersAndLogs:
    """The effects every shell performs the same way — ``ScheduleTimer``, ``CancelTimer`` and
    ``Log`` — in one place; the master's, the agent's and the simulator's shells each had their
    own copy. A shell's effect loop handles its own effects and hands every other one to
    :meth:`perform`, which says whether it was one of these."""

    def __init__(self, timers: Timers, logger: logging.Logger) -> None:
        self.timers = timers
        self._logger = logger

    def perform(self, effect: object) -> bool:
        """Performs a timer or log effect; False, doing nothing, for any other effect."""
        if isinstance(effect, ScheduleTimer):
            self.timers.schedule(effect.at, effect.key)
        elif isinstance(effect, CancelTimer):
            self.timers.cancel(effect.key)
        elif isinstance(effect, Log):
            log_effect(self._logger, effect)
        else:
            return False
        return True


def log_effect(logger: logging.Logger, effect: Log) -> None:
    level = _LEVELS.get(effect.level, logging.INFO)
    if logger.isEnabledFor(level):  # rendered only when written: cores log per task and update
        logger.log(level, effect.render())


MAX_LINE = 16384


class OneLineFormatter(logging.Formatter):
    """One record, one line: control characters in the message are escaped and a message over
    :data:`MAX_LINE` characters is cut — also for values formatted in with ``%s``, outside
    :meth:`Log.render <tepui.sdk.effects.Log.render>` — and every line of a traceback is
    indented. So a line that starts at column 0 is always a record's own: no value a client
    chose (a framework's name, an id, a decoder's error quoting the bad value) can forge one."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        if len(text) > MAX_LINE:
            text = f"{text[:MAX_LINE]}...[{len(text) - MAX_LINE} more characters]"
        return escape_controls(text)

    def format(self, record: logging.LogRecord) -> str:
        # The message is one line by now; what follows it is a traceback or a stack (which
        # another handler's formatter may have rendered and cached on the record).
        line, more, rest = super().format(record).partition("\n")
        return line + "".join("\n  " + escape_controls(part) for part in rest.split("\n")) if more else line


def configure_logging(level: str = "info", name: str = "tepui") -> None:
    """One event per line: ``time level logger event=... key=value`` (:class:`OneLineFormatter`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(f"%(asctime)s %(levelname)s {name} %(name)s %(message)s"))
    logging.basicConfig(level=_LEVELS.get(level, logging.INFO), handlers=[handler])
