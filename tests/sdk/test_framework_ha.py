"""tepui.sdk.framework_ha.FrameworkInstance in-process, ZooKeeper replaced by fakes (the real
thing runs in tests/e2e/test_framework_ha.py): the standby answers on the API port, what
election does (epoch claimed, store fenced, API swapped in, driver and hub started, epoch
published), and how leadership ends — lost: revoked store, exit 1, the election not left;
stopped: the driver fails over and the instance leaves the election."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.web import resource

from tepui.sdk import zk_store
from tepui.sdk.fencing import FencedStore, Superseded
from tepui.sdk.framework_ha import FrameworkInstance
from tepui.sdk.framework_shell import FrameworkOptions, Running
from tepui.sdk.leadership import LeaderInfo
from tepui.sdk.store import SQLiteStore, Store, StoreError
from tests.http_wire import exchange


class Reactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.running, self.stops = True, 0

    def stop(self) -> None:
        self.stops += 1


class FakeContender:
    def __init__(self) -> None:
        self.leader: LeaderInfo | None = None
        self.published: list[LeaderInfo] = []
        self.closed = 0

    def start(self) -> None:
        pass

    def publish(self, info: LeaderInfo) -> None:
        self.published.append(info)

    def close(self) -> None:
        self.closed += 1


class Api(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"served by the leader"


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> tuple[FrameworkInstance, Any]:
    shared = SQLiteStore(tmp_path / "shared.sqlite")
    roots: list[str] = []

    def store(client: Any, root: str) -> Store:
        roots.append(root)
        if fail:
            raise StoreError("ZooKeeper store at /t/frameworks/services/store: cannot read")
        return shared

    monkeypatch.setattr(zk_store, "ZooKeeperStore", store)
    built: list[tuple[Store, str]] = []
    parts = types.SimpleNamespace(calls=[], roots=roots, built=built, shared=shared)

    def build(store: Store, where: str) -> Running:
        built.append((store, where))
        driver: Any = types.SimpleNamespace(framework_id="F1", start=lambda: parts.calls.append("driver.start"),
                                            stop=lambda failover: parts.calls.append(f"driver.stop({failover})"))
        hub: Any = types.SimpleNamespace(start=lambda: parts.calls.append("hub.start"),
                                         stop=lambda: parts.calls.append("hub.stop"))
        shell: Any = types.SimpleNamespace(failed=False)
        return Running(shell, driver, hub, Api(), lambda: None)

    options = FrameworkOptions(name="services", http_port=6001, zk="zk://127.0.0.1:1/t")
    client = FakeClient()
    made = FrameworkInstance(Reactor(), options, "services framework", build, client, "/t/frameworks/services")
    made.contender = FakeContender()  # type: ignore[assignment]
    made.serve()
    parts.client = client
    return made, parts


def test_a_standby_redirects_to_the_leader_and_serves_once_elected(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    made, parts = instance(tmp_path, monkeypatch)
    assert made.own.id == "services@127.0.0.1:6001" and made.own.http == "http://127.0.0.1:6001"
    assert exchange(made.site, "GET", "/v1/apps").code == 503
    made.contender.leader = LeaderInfo(id="services@127.0.0.1:6000", http="http://127.0.0.1:6000", epoch=4)
    answer = exchange(made.site, "GET", "/v1/apps?a=b")
    assert (answer.code, answer.headers["location"]) == (307, "http://127.0.0.1:6000/v1/apps?a=b")
    assert made.relay_scope() is None

    made.elected_now()

    assert parts.roots == ["/t/frameworks/services/store"]
    [(store, where)] = parts.built
    assert isinstance(store, FencedStore) and store.epoch == 1
    assert where == "zookeeper:/t/frameworks/services/store epoch=1"
    assert parts.calls == ["hub.start", "driver.start"]
    assert made.contender.published == [LeaderInfo(id=made.own.id, http=made.own.http, epoch=1,
                                                   hostname=made.own.hostname, pid=made.own.pid)]
    assert exchange(made.site, "GET", "/v1/apps").body == b"served by the leader"
    assert made.relay_scope() == "F1"

    made.stopping()  # SIGTERM: the driver leaves with failover, the instance leaves the election
    made.stopped()
    assert parts.calls[2:] == ["driver.stop(True)", "hub.stop"]
    assert made.contender.closed == 1 and parts.client.calls == ["stop", "close"]
    assert made.status() == 0


def test_a_lost_leader_writes_nothing_more_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made, parts = instance(tmp_path, monkeypatch)
    made.elected_now()
    assert made.store is not None
    made.store.put("apps", "a", b"1")

    made.lost("the ZooKeeper session expired")

    assert made.reactor.stops == 1 and made.status() == 1
    assert made.running is not None and made.running.shell.failed is True
    with pytest.raises(Superseded, match="no longer leads"):
        made.store.put("apps", "b", b"2")
    made.stopping()
    assert made.contender.closed == 0  # its node went with the session; no round trip to a lost ensemble
    assert parts.calls[-1] == "driver.stop(True)"


def test_a_store_that_cannot_be_taken_over_exits_1_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made, parts = instance(tmp_path, monkeypatch, fail=True)
    made.elected_now()
    assert (made.status(), made.reactor.stops, parts.built, parts.calls) == (1, 1, [], [])
    assert made.contender.published == []
