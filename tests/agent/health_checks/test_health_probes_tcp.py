"""The agent's TCP health probe (``health_probes.probe`` with a TCP check) against real sockets
on 127.0.0.1: a listener (healthy), a closed port (unhealthy), and a listener whose accept queue
is full, so that a connection is never established (unhealthy once the check's timeout passes).
The probe runs as the agent runs it: through the reactor's thread pool, here a private reactor
(tests/private_reactor.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tepui.agent.health_checks import health_probes
from tepui.sdk.protocol.values import HealthCheck, TCPCheck
from tests.private_reactor import run


def tcp_probe(port: int, timeout: float = 5.0, kind: str = "TCP") -> tuple[bool, str]:
    check = HealthCheck(type=kind, tcp=TCPCheck(port=port), timeout_seconds=timeout)

    async def scenario(reactor: Any) -> tuple[bool, str]:
        return await health_probes.probe(reactor, check, "/nonexistent-sandbox", {}, None)

    return run(scenario, timeout=30.0)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


def closed_port() -> int:
    """A port nothing listens on: bound (so the kernel picked a free one), then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_listening_port_is_healthy(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    ok, detail = tcp_probe(port)
    assert ok, detail
    assert detail == f"TCP 127.0.0.1:{port} accepted a connection"
    accepted, _ = listener.accept()  # the probe really connected to this listener
    accepted.close()


def test_the_check_type_is_case_insensitive(listener: socket.socket) -> None:
    ok, detail = tcp_probe(listener.getsockname()[1], kind="tcp")
    assert ok, detail


def test_a_closed_port_is_unhealthy_with_the_reason() -> None:
    port = closed_port()
    ok, detail = tcp_probe(port)
    assert not ok
    assert detail == f"TCP 127.0.0.1:{port}: Connection refused"


def test_a_tcp_check_without_its_port_settings_fails_with_the_reason() -> None:
    async def scenario(reactor: Any) -> tuple[bool, str]:
        return await health_probes.probe(reactor, HealthCheck(type="TCP"), "/", {}, None)

    ok, detail = run(scenario)
    assert not ok and "lacks its settings" in detail


@pytest.fixture
def full_listener() -> Iterator[socket.socket]:
    """A listener that never accepts, its accept queue filled: Linux then drops new SYNs, so a
    connect neither succeeds nor is refused — it hangs, which only a timeout ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.settimeout(0.5)
            try:
                filler.connect(sock.getsockname())
            except TimeoutError:
                break  # this one hangs: the queue is full
        else:
            pytest.skip("the kernel kept accepting connections into a backlog of 0")
        yield sock
    finally:
        for filler in fillers:
            filler.close()
        sock.close()


def test_a_listener_that_never_answers_is_unhealthy_after_the_timeout(full_listener: socket.socket) -> None:
    port = full_listener.getsockname()[1]
    ok, detail = tcp_probe(port, timeout=0.5)
    assert not ok
    assert detail == f"TCP 127.0.0.1:{port}: timed out"
