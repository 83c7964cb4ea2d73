"""The services framework's readiness prober (``frameworks/services/readiness.py``) against real
HTTP servers on 127.0.0.1, on a private reactor (tests/private_reactor.py).

Its contract (docs/services.md, ``effects.Probe``): GET ``url`` every ``interval`` until a status
in ``statuses`` comes back; each result goes to ``report(task_id, ready)``; any other status, a
refused connection or no complete answer within ``timeout`` is "not ready" and probed again;
probing stops once ready, or on ``stop``.

Each probe run's Deferred is captured (``Watched``), so a test waits for "the n-th probe has
finished" rather than for some time to pass.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer
from twisted.web import resource, server

from tepui.frameworks.services.effects import Probe
from tepui.frameworks.services.readiness import ReadinessProber
from tests.private_reactor import run


class Backend(resource.Resource):
    """Answers the statuses it is given, in order, then repeats the last; ``hold`` keeps every
    request open instead (never answered, or headers and part of a body, then nothing)."""

    isLeaf = True

    def __init__(self, codes: list[int], hold: str | None = None) -> None:
        super().__init__()
        self.codes, self.hold = list(codes), hold
        self.paths: list[bytes] = []
        self.held: list[Any] = []
        self.arrived: list[defer.Deferred[Any]] = []

    def render_GET(self, request: Any) -> Any:  # noqa: N802 (Twisted's name)
        self.paths.append(request.path)
        if self.hold is not None:
            self.held.append(request)
            if self.hold == "body":
                request.setHeader(b"content-length", b"100")
                request.write(b"0123456789")
        waiters, self.arrived = self.arrived, []
        for waiter in waiters:
            waiter.callback(request)
        if self.hold is not None:
            return server.NOT_DONE_YET
        code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
        request.setResponseCode(code)
        return b"state\n"

    def next_request(self) -> defer.Deferred[Any]:
        waiter: defer.Deferred[Any] = defer.Deferred()
        self.arrived.append(waiter)
        return waiter

    def close(self) -> None:
        for request in self.held:
            if request.channel is not None:  # the prober has not closed it already
                request.channel.transport.abortConnection()


class Watched(ReadinessProber):
    """The real prober; each probe run's Deferred is kept, and reports are recorded."""

    def __init__(self, reactor: Any) -> None:
        self.reports: list[tuple[str, bool]] = []
        super().__init__(reactor, lambda task_id, ready: self.reports.append((task_id, ready)))
        self.runs: list[defer.Deferred[Any]] = []
        self.waiting: list[tuple[int, defer.Deferred[None]]] = []

    def _probe(self, probe: Probe) -> Any:
        done = super()._probe(probe)
        self.runs.append(done)
        done.addBoth(self._finished)
        return done

    def _finished(self, result: Any) -> Any:
        finished = sum(1 for run_ in self.runs if run_.called)
        for entry in [w for w in self.waiting if w[0] <= finished]:
            self.waiting.remove(entry)
            entry[1].callback(None)
        return result

    def finished(self, count: int) -> defer.Deferred[None]:
        """Fires once ``count`` probe runs have finished (reported or not)."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self.waiting.append((count, waiter))
        self._finished(None)
        return waiter


Scenario = Callable[[Any, Watched, Callable[[Backend], str]], Awaitable[None]]


def with_prober(scenario: Scenario) -> None:
    """Runs ``scenario(reactor, prober, serve)``; ``serve(backend)`` listens and returns its URL.
    Listeners, held requests and probes are closed afterwards, whatever happened."""

    async def main(reactor: Any) -> None:
        prober = Watched(reactor)
        ports: list[Any] = []
        backends: list[Backend] = []

        def serve(backend: Backend) -> str:
            backends.append(backend)
            ports.append(reactor.listenTCP(0, server.Site(backend, reactor=reactor), interface="127.0.0.1"))
            return f"http://127.0.0.1:{ports[-1].getHost().port}/ready"

        try:
            await scenario(reactor, prober, serve)
        finally:
            prober.stop_all()
            for backend in backends:
                backend.close()
            for port in ports:
                await defer.maybeDeferred(port.stopListening)

    run(main, timeout=30.0)


def probe(url: str, task_id: str = "web.1", timeout: float = 5.0, statuses: tuple[int, ...] = (200,)) -> Probe:
    return Probe(task_id, url, interval=0.01, timeout=timeout, statuses=statuses)


def test_a_200_is_ready_at_once_and_probing_stops() -> None:
    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        backend = Backend([200])
        prober.start(probe(serve(backend)))
        await prober.finished(1)
        assert prober.reports == [("web.1", True)]
        assert backend.paths == [b"/ready"]
        assert prober.probes == {}  # no next probe scheduled

    with_prober(scenario)


def test_503_is_not_ready_and_probed_again_until_200() -> None:
    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        backend = Backend([503, 503, 200])
        prober.start(probe(serve(backend)))
        await prober.finished(3)
        assert prober.reports == [("web.1", False), ("web.1", False), ("web.1", True)]
        assert len(backend.paths) == 3 and prober.probes == {}

    with_prober(scenario)


def test_only_the_listed_statuses_mean_ready() -> None:
    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        prober.start(probe(serve(Backend([200, 204])), statuses=(204,)))
        await prober.finished(2)
        assert prober.reports == [("web.1", False), ("web.1", True)]

    with_prober(scenario)


def test_a_refused_connection_is_not_ready_and_probed_again() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there

    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        prober.start(probe(f"http://127.0.0.1:{port}/ready"))
        await prober.finished(2)
        prober.stop("web.1")
        assert prober.reports == [("web.1", False), ("web.1", False)]
        assert prober.probes == {}

    with_prober(scenario)


def test_no_answer_within_the_timeout_is_not_ready_and_probed_again() -> None:
    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        backend = Backend([200], hold="headers")
        prober.start(probe(serve(backend), timeout=0.2))
        await prober.finished(2)
        assert prober.reports[:2] == [("web.1", False), ("web.1", False)]
        assert len(backend.paths) >= 2

    with_prober(scenario)


def test_a_body_that_never_completes_is_not_ready_after_the_timeout() -> None:
    """The status line alone is not an answer: a server stuck after it must not hang the probe
    (which would then never be repeated, leaving the instance unready for ever)."""

    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        backend = Backend([200], hold="body")
        arrived = backend.next_request()
        prober.start(probe(serve(backend), timeout=0.2))
        closed = (await arrived).notifyFinish()
        await prober.finished(2)
        assert prober.reports[:2] == [("web.1", False), ("web.1", False)]
        await closed.addErrback(lambda _: None)  # the prober closed the stuck connection

    with_prober(scenario)


def test_a_probe_stopped_while_in_flight_reports_nothing_and_is_not_repeated() -> None:
    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        backend = Backend([200], hold="headers")
        arrived = backend.next_request()
        prober.start(probe(serve(backend)))
        request = await arrived
        prober.stop("web.1")
        backend.held.remove(request)
        request.setResponseCode(200)
        request.finish()
        await prober.finished(1)
        assert prober.reports == [] and prober.probes == {}
        assert len(prober.runs) == 1

    with_prober(scenario)


def test_a_probe_stopped_and_restarted_while_in_flight_leaves_one_loop() -> None:
    """The first loop's answer comes after its task was stopped and probed again: that loop is
    over (it neither reports nor reschedules), and only the new one probes the task."""

    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        backend = Backend([200], hold="headers")
        url = serve(backend)
        arrived = backend.next_request()
        prober.start(probe(url))
        old = await arrived
        prober.stop("web.1")
        arrived = backend.next_request()
        prober.start(probe(url))
        new = await arrived
        for finished, (request, code) in enumerate(((old, 503), (new, 200)), 1):
            backend.held.remove(request)
            request.setResponseCode(code)
            request.finish()
            await prober.finished(finished)
        assert prober.reports == [("web.1", True)]  # not the stopped loop's 503
        assert prober.probes == {} and len(prober.runs) == 2 and len(backend.paths) == 2

    with_prober(scenario)


def test_starting_a_probed_task_again_adds_no_second_probe() -> None:
    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        url = serve(Backend([503, 200]))
        prober.start(probe(url))
        prober.start(probe(url))
        await prober.finished(2)
        prober.start(probe(url, task_id="web.2"))
        await prober.finished(3)
        assert prober.reports == [("web.1", False), ("web.1", True), ("web.2", True)]

    with_prober(scenario)


def test_stop_all_ends_every_probe() -> None:
    async def scenario(reactor: Any, prober: Watched, serve: Callable[[Backend], str]) -> None:
        url = serve(Backend([503]))
        prober.start(probe(url, task_id="a"))
        prober.start(probe(url, task_id="b"))
        await prober.finished(2)
        prober.stop_all()
        assert prober.probes == {}
        assert sorted(prober.reports) == [("a", False), ("b", False)]

    with_prober(scenario)
