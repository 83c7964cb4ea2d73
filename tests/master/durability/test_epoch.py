"""The master's epoch in its registry (master/durability/epoch.py) and the shell's fence on it: claimed,
incremented and persisted at every start, distinct for two masters starting at the same
moment, and checked before every registry write."""

from __future__ import annotations

import socket
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from tepui.master.core import MasterConfig, MasterCore
from tepui.master.durability.epoch import Superseded, check_epoch, claim_epoch, next_epoch, stored_epoch
from tepui.master.events import Send
from tepui.master.durability.registry import AGENTS, Persist
from tepui.master.shell import MasterShell
from tepui.sdk.protocol import agent as am
from tepui.sdk.store import Entry, SQLiteStore


def test_every_start_claims_the_next_epoch_and_persists_it(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with SQLiteStore(path) as first:
        assert stored_epoch(first) is None
        assert claim_epoch(first, now_ms=0) == 1
        assert claim_epoch(first, now_ms=0) == 2
    with SQLiteStore(path) as restarted:  # a new master process on the same registry
        assert stored_epoch(restarted) == 2
        assert claim_epoch(restarted, now_ms=0) == 3
    with SQLiteStore(path) as reader:
        assert stored_epoch(reader) == 3


def test_the_epoch_never_falls_below_the_clock_nor_goes_back_with_it() -> None:
    # Clock term: a master on a fresh registry outranks an earlier in-memory master (whose epoch
    # was its start time in ms); stored + 1: a clock set back never lowers the epoch.
    assert next_epoch(0, now_ms=1_700_000_000_000) == 1_700_000_000_000
    assert next_epoch(1_700_000_000_000, now_ms=5) == 1_700_000_000_001


class _SlowReadStore(SQLiteStore):
    """A registry whose reads take a while: two claims that were not atomic would both read the
    same epoch in that window and write the same next one."""

    def get(self, ns: str, key: str) -> Entry | None:
        entry = super().get(ns, key)
        time.sleep(0.2)
        return entry


def test_two_masters_starting_at_the_same_moment_get_distinct_increasing_epochs(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    stores = [_SlowReadStore(path), _SlowReadStore(path)]
    start = threading.Barrier(len(stores))
    claimed: list[int] = []
    errors: list[BaseException] = []

    def master(store: SQLiteStore) -> None:
        start.wait()
        try:
            claimed.append(claim_epoch(store, now_ms=0))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=master, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for store in stores:
        store.close()
    assert errors == []
    assert sorted(claimed) == [1, 2]
    with SQLiteStore(path) as reader:
        assert stored_epoch(reader) == 2


def test_check_epoch_refuses_an_epoch_the_registry_does_not_hold(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "registry.db") as store:
        with pytest.raises(Superseded):
            check_epoch(store, 1)  # nobody claimed one: not ours either
        own = claim_epoch(store, now_ms=0)
        check_epoch(store, own)
        claim_epoch(store, now_ms=0)  # another master starts on the registry
        with pytest.raises(Superseded) as raised:
            check_epoch(store, own)
        assert (raised.value.stored, raised.value.own) == (own + 1, own)


class _ShellParts(types.SimpleNamespace):
    """The parts of :class:`MasterShell` its registry paths use, without sockets or a reactor."""

    def _die(self, reason: str, event: str = "registry_failed") -> None:
        self.failed = True
        self.died.append((event, reason))

    def _send(self, peer: bytes, body: Any) -> None:
        self.sent.append((peer, body))


def shell_on(store: SQLiteStore, epoch: int) -> Any:
    core = MasterCore(MasterConfig(master_id="m", epoch=epoch))
    return _ShellParts(store=store, core=core, failed=False, died=[], sent=[], _held=None)


WRITE = Persist(AGENTS, "m-S0001", b'{"hostname":"h"}')


def test_a_master_writes_while_the_registry_holds_its_epoch(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "registry.db") as store:
        shell = shell_on(store, claim_epoch(store, now_ms=0))
        assert MasterShell._persist(shell, [WRITE]) is True
        assert store.get(AGENTS, "m-S0001") is not None
        MasterShell._check_epoch(shell)
        assert shell.died == [] and not shell.failed


def test_a_superseded_master_writes_nothing_sends_nothing_and_exits(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "registry.db") as store:
        old = shell_on(store, claim_epoch(store, now_ms=0))
        new_epoch = claim_epoch(store, now_ms=0)  # a new master started on the same registry
        assert MasterShell._persist(old, [WRITE]) is False
        assert store.get(AGENTS, "m-S0001") is None, "the write was rolled back with the check"
        assert [event for event, _ in old.died] == ["master_superseded"]
        assert f"epoch {new_epoch}" in old.died[0][1]
        MasterShell._perform(old, [Send(b"agent", am.Ping(1))])
        assert old.sent == [], "a master on its way out acts on nothing more"
        assert stored_epoch(store) == new_epoch


def test_a_superseded_master_with_nothing_to_write_exits_at_its_next_check(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "registry.db") as store:
        old = shell_on(store, claim_epoch(store, now_ms=0))
        claim_epoch(store, now_ms=0)
        MasterShell._check_epoch(old)
        assert [event for event, _ in old.died] == ["master_superseded"]


def test_a_master_whose_port_is_taken_stops_before_it_claims_the_registry() -> None:
    """Claiming supersedes the serving master, so a second master started by mistake on the same
    work dir and port must fail before the claim, not at its bind after it."""
    from tepui.master.main import _refuse_ports_in_use

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            free = other.getsockname()[1]
        _refuse_ports_in_use("127.0.0.1", free)
        with pytest.raises(SystemExit, match=f"port {taken}: it is in use"):
            _refuse_ports_in_use("127.0.0.1", free, taken)
