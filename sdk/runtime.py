"""Process-level runtime: installing Twisted's asyncio reactor, exactly once.

Twisted must run on its asyncio reactor (DESIGN §3) so that pyzmq's asyncio integration and
Twisted's timers, HTTP and process handling share one event loop. The reactor can be chosen
only before anything imports ``twisted.internet.reactor``; entry points call
:func:`install_reactor` first and pass the reactor it returns down to everything else.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


def install_reactor() -> Any:
    """Installs (or returns the already installed) asyncio reactor."""
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        if isinstance(reactor, AsyncioSelectorReactor):
            return reactor
        raise RuntimeError(
            f"Tepui needs Twisted's asyncio reactor, but {type(reactor).__name__} was installed "
            "first: call tepui.sdk.runtime.install_reactor() before importing twisted.internet.reactor"
        )
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    return reactor


def event_loop(reactor: Any) -> asyncio.AbstractEventLoop:
    """The asyncio loop under a Twisted asyncio reactor."""
    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None:
        raise RuntimeError("this reactor is not Twisted's asyncio reactor; see install_reactor()")
    return loop
