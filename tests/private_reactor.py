"""Real sockets in a unit test without a global reactor: ``run(scenario)`` runs one scenario on
a fresh, never-installed ``SelectReactor`` until it ends, so pytest's process keeps no running
global reactor (a Twisted reactor runs once per process) and each test starts clean."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.selectreactor import SelectReactor

T = TypeVar("T")


def run(scenario: Callable[[Any], Awaitable[T]], timeout: float = 10.0) -> T:
    """Runs ``scenario(reactor)`` on a fresh private reactor; its result, or its exception.
    ``timeout`` is a watchdog against a hung scenario, not a timing assertion."""
    reactor = SelectReactor()
    outcome: dict[str, Any] = {}

    def go() -> None:
        d = defer.ensureDeferred(scenario(reactor))  # type: ignore[arg-type]
        d.addBoth(lambda result: (outcome.setdefault("result", result), reactor.running and reactor.stop()))

    def watchdog() -> None:
        outcome.setdefault("result", TimeoutError(f"the scenario did not end within {timeout:g} s"))
        reactor.stop()

    reactor.callWhenRunning(go)
    guard = reactor.callLater(timeout, watchdog)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    for reader in list(getattr(reactor, "_internalReaders", ())):  # the waker's pipe
        reactor.removeReader(reader)
        reader.connectionLost(None)
    result = outcome["result"]
    if isinstance(result, BaseException):
        raise result
    if hasattr(result, "raiseException"):  # a Failure
        result.raiseException()
    return result  # type: ignore[no-any-return]
