"""tepui.sdk.fencing on the SQLite store (the ZooKeeper store honours the same contract):
epochs only grow, and a superseded or revoked leader's writes commit nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tepui.sdk.fencing import EPOCH_KEY, EPOCH_NS, FencedStore, Superseded, claim_epoch, stored_epoch
from tepui.sdk.store import SQLiteStore, StoreError, VersionConflict


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "s.sqlite")


def test_each_claim_is_one_more_than_the_last(store: SQLiteStore) -> None:
    assert stored_epoch(store) is None
    assert [claim_epoch(store) for _ in range(3)] == [1, 2, 3]
    assert stored_epoch(store) == 3
    assert store.get(EPOCH_NS, EPOCH_KEY) is not None and store.get(EPOCH_NS, EPOCH_KEY).version == 3  # type: ignore[union-attr]


def test_a_current_leader_writes_in_and_out_of_transactions(store: SQLiteStore) -> None:
    fenced = FencedStore(store, claim_epoch(store))
    with fenced.transaction():
        fenced.put("apps", "a", b"1")
        fenced.put("apps", "b", b"2")
    assert fenced.put("apps", "c", b"3") == 1
    assert fenced.delete("apps", "b") is True
    assert list(fenced.list("apps")) == ["a", "c"]
    assert fenced.get("apps", "a").value == b"1"  # type: ignore[union-attr]


def test_a_superseded_leader_commits_nothing(store: SQLiteStore) -> None:
    old = FencedStore(store, claim_epoch(store))
    old.put("apps", "a", b"old")
    new = FencedStore(store, claim_epoch(store))
    with pytest.raises(Superseded) as raised:
        with old.transaction():
            old.put("apps", "a", b"stale")
    assert (raised.value.stored, raised.value.own) == (2, 1)
    assert str(raised.value) == ("the store holds leader epoch 2, not this instance's 1: another instance leads now")
    with pytest.raises(Superseded):
        old.put("apps", "b", b"stale")
    with pytest.raises(Superseded):
        old.delete("apps", "a")
    assert {k: e.value for k, e in store.list("apps").items()} == {"a": b"old"}
    new.put("apps", "a", b"new")
    assert store.get("apps", "a").value == b"new"  # type: ignore[union-attr]


def test_a_revoked_leader_fails_before_asking_the_store(store: SQLiteStore) -> None:
    fenced = FencedStore(store, claim_epoch(store))
    fenced.revoke("the ZooKeeper session expired")
    with pytest.raises(Superseded, match=r"^this instance no longer leads \(the ZooKeeper session expired\); "
                                         r"it writes nothing$"):
        fenced.put("apps", "a", b"1")
    assert isinstance(Superseded(None, 1), StoreError)
    assert store.list("apps") == {}


def test_two_claims_from_one_read_cannot_both_win(store: SQLiteStore) -> None:
    """The claim's put is a compare-and-set: a store without locking transactions still cannot
    hand out one epoch twice."""
    claim_epoch(store)
    with pytest.raises(VersionConflict):
        store.put(EPOCH_NS, EPOCH_KEY, b"2", expected_version=0)


def test_transactions_do_not_nest(store: SQLiteStore) -> None:
    fenced = FencedStore(store, claim_epoch(store))
    with fenced.transaction():
        with pytest.raises(RuntimeError, match="do not nest"):
            with fenced.transaction():
                pass
