"""A leader's epoch in its own store, and a store that writes only while that epoch is current.

Why: ZooKeeper's election tells an instance that it leads, but not that it *still* leads when
its next write lands — a paused leader (SIGSTOP, a long GC, a VM migration) resumes believing
it leads while a standby has taken over. The store is the resource both would write, so the
store must reject the older one (Kleppmann's fencing token). Every new leader claims an epoch —
a counter in the store, read and bumped with compare-and-set in one transaction, so it only
ever grows and no two leaders share one — and :class:`FencedStore` checks inside every write
transaction that the store still holds it. The check and the writes commit together (SQLite:
``BEGIN IMMEDIATE``; ZooKeeper: the read is validated by the multi's ``check``), so a superseded
leader writes nothing: its transaction raises :class:`Superseded`, a ``StoreError``, and the
framework shell treats that as every store failure — it exits, and writes nothing more.

The same rules as the master's registry epoch (master/durability/epoch.py), which frameworks
cannot import (they import only ``tepui.sdk``): there, ``max(stored + 1, clock)``, because its
epoch also orders envelopes across registries; here a plain counter, because a framework's epoch
only orders the leaders of one store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tepui.sdk.store import Entry, Store, StoreError, get_json, put_json

__all__ = ["EPOCH_KEY", "EPOCH_NS", "FencedStore", "Superseded", "claim_epoch", "stored_epoch"]

EPOCH_NS = "leader"
EPOCH_KEY = "epoch"


class Superseded(StoreError):
    """The store holds another leader's epoch (or this leader gave up): it must write nothing more."""

    def __init__(self, stored: int | None, own: int, why: str = "") -> None:
        self.stored, self.own = stored, own
        super().__init__(why or f"the store holds leader epoch {stored}, not this instance's {own}: "
                                "another instance leads now")


def stored_epoch(store: Store) -> int | None:
    """The epoch the store holds (None before any leader claimed one)."""
    found: tuple[int, int] | None = get_json(store, EPOCH_NS, EPOCH_KEY, int)
    return None if found is None else found[0]


def claim_epoch(store: Store) -> int:
    """Reads, increments and persists the epoch in one transaction; the put is a compare-and-set
    on the version read, so two instances claiming at once cannot both succeed (the loser gets
    ``VersionConflict``, a ``StoreError``, and exits). Returns the new epoch (≥ 1)."""
    with store.transaction():
        found: tuple[int, int] | None = get_json(store, EPOCH_NS, EPOCH_KEY, int)
        stored, version = found if found is not None else (0, 0)
        epoch = stored + 1
        put_json(store, EPOCH_NS, EPOCH_KEY, epoch, expected_version=version)
    return epoch


class FencedStore:
    """A :class:`Store` whose every write commits only while ``inner`` holds ``epoch``.

    Reads pass through. A write outside a transaction gets a transaction of its own (so it is
    checked too). :meth:`revoke` — the leader lost its ZooKeeper session — makes every later write
    fail at once without asking the store."""

    def __init__(self, inner: Store, epoch: int) -> None:
        self.inner, self.epoch = inner, epoch
        self._in_transaction = False
        self._revoked: str | None = None

    def __repr__(self) -> str:
        return f"FencedStore({self.inner!r}, epoch={self.epoch})"

    def revoke(self, why: str) -> None:
        """No write may commit any more (this instance no longer leads)."""
        self._revoked = why

    def _check(self) -> None:
        if self._revoked is not None:
            raise Superseded(None, self.epoch, f"this instance no longer leads ({self._revoked}); it writes nothing")
        stored = stored_epoch(self.inner)
        if stored != self.epoch:
            raise Superseded(stored, self.epoch)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:
            raise RuntimeError("store transactions do not nest")
        if self._revoked is not None:
            self._check()
        with self.inner.transaction():
            self._in_transaction = True
            try:
                self._check()
                yield
            finally:
                self._in_transaction = False

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        if self._in_transaction:
            yield
        else:
            with self.transaction():
                yield

    def get(self, ns: str, key: str) -> Entry | None:
        return self.inner.get(ns, key)

    def list(self, ns: str, prefix: str = "") -> dict[str, Entry]:
        return self.inner.list(ns, prefix)

    def put(self, ns: str, key: str, value: bytes, expected_version: int | None = None) -> int:
        with self._write():
            return self.inner.put(ns, key, value, expected_version)

    def delete(self, ns: str, key: str, expected_version: int | None = None) -> bool:
        with self._write():
            return self.inner.delete(ns, key, expected_version)

    def close(self) -> None:
        self.inner.close()
