"""Run as a subprocess by test_transport.py: a DEALER whose ROUTER goes away and comes back on
the same address (a restarted master) calls ``on_reconnect`` once it is connected again, and
not for its first connection."""

import json
import sys

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()

from tepui.sdk.dealer import DealerEndpoint  # noqa: E402
from tepui.sdk.router import RouterEndpoint  # noqa: E402

result: dict = {"reconnects": [], "got": []}
router = RouterEndpoint(reactor, "tcp://127.0.0.1:*", lambda peer, payload: result["got"].append(payload.decode()),
                        lambda peer: None)
address = router.address
dealer = DealerEndpoint(reactor, address, lambda payload: None,
                        on_reconnect=lambda: result["reconnects"].append(reactor.seconds()))


def restart_router() -> None:
    dealer.send(b"before")
    reactor.callLater(0.3, close_router)


def close_router() -> None:
    router.close()
    result["closed_at"] = reactor.seconds()
    reactor.callLater(0.5, reopen_router)


def reopen_router() -> None:
    global router
    router = RouterEndpoint(reactor, address, lambda peer, payload: result["got"].append(payload.decode()),
                            lambda peer: None)
    reactor.callLater(1.5, finish)


def finish() -> None:
    dealer.send(b"after")
    reactor.callLater(0.3, stop)


def stop() -> None:
    dealer.close()
    router.close()
    reactor.stop()


reactor.callLater(0.3, restart_router)
reactor.callLater(15, stop)
reactor.run()
result["reconnects"] = len(result["reconnects"])
json.dump(result, sys.stdout)
