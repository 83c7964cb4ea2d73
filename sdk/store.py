"""The state store: a small, synchronous, versioned key-value interface (DESIGN §6).

The master persists its registry (admitted, unreachable and gone agents; frameworks with their
failover timeouts; weights, quotas, reservations) through a :class:`Store`, and frameworks persist
their own state through the same interface, which is why it lives in ``tepui.sdk``.
:class:`SQLiteStore` is the default implementation (one file in the owner's state dir); a
ZooKeeper implementation comes with highly available masters and honours the same contract.

The contract, and why:

- **Durable on return.** A write that returns has been committed and fsynced. The master tells an
  agent or framework something only after recording it, so a crash right after a reply never
  forgets what the reply promised.
- **Namespaces and versions.** Every key lives in a namespace (``"agents"``, ``"frameworks"``,
  ``"quotas"``, an app id...) and carries a version that starts at 1 and grows by one on every
  put. As in ZooKeeper, deleting a key forgets its version; a re-created key starts at 1 again.
- **Compare-and-set.** ``put``/``delete`` accept ``expected_version`` (0 means "must not
  exist"). A writer that read version *n* and writes with ``expected_version=n`` cannot silently
  overwrite a newer write — e.g. by a master that took over while this one was partitioned away.
  Single-writer safety across failovers rests on this check, not on timing.
- **Transactions.** :meth:`Store.transaction` batches several writes atomically: all or nothing,
  one commit (one fsync) for the batch. CAS checks inside it run against the batch's own view.
- **Fail loudly.** Any storage failure is a :class:`StoreError` whose message names the file and
  the operation. The master treats it as fatal and exits rather than run unpersisted.

Typed values: :func:`put_json` and :func:`get_json` store msgspec Structs (or any
msgspec-encodable value) as JSON, so registries keep their records as typed values::

    version = put_json(store, "frameworks", fw.id, fw, expected_version=0)
    found = get_json(store, "frameworks", fw.id, FrameworkRecord)   # (record, version) | None
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

import msgspec

__all__ = [
    "MAX_NAME_CHARS",
    "Entry",
    "SQLiteStore",
    "Store",
    "StoreError",
    "VersionConflict",
    "get_json",
    "put_json",
]

MAX_NAME_CHARS = 1024
"""Longest namespace or key accepted, in characters (ZooKeeper paths stay well under its limits)."""

T = TypeVar("T")


class StoreError(Exception):
    """The store could not do what was asked; the state on disk is unknown or unchanged.

    The master logs it and exits (DESIGN §6: never run unpersisted)."""


class VersionConflict(StoreError):
    """A compare-and-set write found another version than the caller expected.

    ``actual`` is 0 when the key does not exist. Another writer got there first (or this writer
    is stale): re-read, and decide again."""

    def __init__(self, ns: str, key: str, expected: int, actual: int) -> None:
        self.ns, self.key, self.expected, self.actual = ns, key, expected, actual
        want = "absent" if expected == 0 else f"at version {expected}"
        found = "absent" if actual == 0 else f"at version {actual}"
        super().__init__(f"Version conflict on {ns}/{key!r}: expected it {want}, but it is {found}.")


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value and its version (≥ 1)."""

    value: bytes
    version: int


@runtime_checkable
class Store(Protocol):
    """A synchronous, versioned key-value store with namespaces.

    Calls block until done; the master calls them from a thread pool so its reactor never waits
    on a disk or a ZooKeeper round trip. Invalid arguments raise ``ValueError``; storage failures
    raise :class:`StoreError`; failed compare-and-set raises :class:`VersionConflict`.
    """

    def get(self, ns: str, key: str) -> Entry | None:
        """The entry at ``ns``/``key``, or None when absent."""
        ...

    def list(self, ns: str, prefix: str = "") -> dict[str, Entry]:
        """Every entry in ``ns`` whose key starts with ``prefix``, in key order."""
        ...

    def put(self, ns: str, key: str, value: bytes, expected_version: int | None = None) -> int:
        """Store ``value`` and return its new version; with ``expected_version``, only if the
        current version equals it (0: only if absent), else raise :class:`VersionConflict`."""
        ...

    def delete(self, ns: str, key: str, expected_version: int | None = None) -> bool:
        """Remove ``ns``/``key``; True if it existed. ``expected_version`` as in :meth:`put`."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Batch the puts and deletes made inside the ``with`` block: all of them are committed
        together when it ends normally, none if it raises. Transactions do not nest."""
        ...

    def close(self) -> None:
        """Release the store; further calls raise :class:`StoreError`. Idempotent."""
        ...


# Every invalid argument is a ValueError (wrong types included), so a caller validating untrusted
# names — an app id from the HTTP API — needs one except clause.


def _check_name(what: str, name: object, *, allow_empty: bool = False) -> str:
    if not isinstance(name, str):
        raise ValueError(f"store {what} must be a str, not {type(name).__name__}")  # noqa: TRY004
    if not name and not allow_empty:
        raise ValueError(f"store {what} must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"store {what} is {len(name)} characters long; the limit is {MAX_NAME_CHARS}")
    if "\x00" in name:
        raise ValueError(f"store {what} {name!r} contains a NUL character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"store {what} {name!r} is not valid Unicode text (lone surrogate)") from None
    return name


def _check_value(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError(f"store value must be bytes, not {type(value).__name__}")  # noqa: TRY004
    return value


def _check_expected(expected_version: object) -> int | None:
    if expected_version is None:
        return None
    if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
        raise ValueError(f"expected_version must be None or an int ≥ 0, not {expected_version!r}")
    return expected_version


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    ns      TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    value   BLOB    NOT NULL,
    version INTEGER NOT NULL,
    updated REAL    NOT NULL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID
"""


class SQLiteStore:
    """A :class:`Store` in one SQLite file, the default for a single master and for frameworks.

    - ``journal_mode=WAL``: readers (a second store on the same file, ``tepui`` inspecting a
      state dir) never block the writer, and a commit appends to the log instead of rewriting
      pages.
    - ``synchronous=FULL``: every commit is fsynced, so a write is durable when it returns — the
      promise the master makes to agents and frameworks depends on it.
    - Every write commits on its own unless made inside :meth:`transaction`, which commits once
      at the end: batched writes cost one fsync.
    - A busy timeout lets two stores on one file take turns; a writer still locked out after it
      gets a :class:`StoreError` (two masters writing one file is a deployment error to surface).

    Threading: one connection guarded by a lock, so calls from several threads are safe, but the
    intended use is one caller thread (the master's store thread). A transaction holds the lock
    for the whole ``with`` block, so other threads wait until it ends.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._in_transaction = False
        self._transaction_failed = False
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"SQLite store at {self.path} could not be opened: its directory "
                f"{self.path.parent} cannot be created ({exc.strerror or exc})."
            ) from exc
        conn = None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a commit happens exactly
            # where this class says it does.
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"SQLite store at {self.path} could not be opened: the file system refused "
                    f"write-ahead logging (journal_mode is {mode!r})."
                )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"SQLite store at {self.path} could not be opened: {exc}.") from exc
        except StoreError:
            if conn is not None:
                conn.close()
            raise
        self._conn = conn

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _error(self, operation: str, exc: BaseException) -> StoreError:
        return StoreError(f"SQLite store at {self.path} could not {operation}: {exc}.")

    @contextlib.contextmanager
    def _write(self, operation: str) -> Iterator[sqlite3.Connection]:
        """Run one write: inside a caller's transaction, or in a transaction of its own that
        commits (and fsyncs) before returning."""
        with self._lock:
            conn = self._open_conn(operation)
            if self._in_transaction:
                try:
                    yield conn
                except sqlite3.Error as exc:
                    self._transaction_failed = True
                    raise self._error(operation, exc) from exc
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(operation, exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(operation, exc) from exc
                raise

    def _open_conn(self, operation: str) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"SQLite store at {self.path} could not {operation}: it is closed.")
        return self._conn

    @staticmethod
    def _version(conn: sqlite3.Connection, ns: str, key: str) -> int:
        row = conn.execute("SELECT version FROM entries WHERE ns = ? AND key = ?", (ns, key)).fetchone()
        return 0 if row is None else int(row[0])

    # -- Store ---------------------------------------------------------------------------------

    def get(self, ns: str, key: str) -> Entry | None:
        _check_name("namespace", ns)
        _check_name("key", key)
        with self._lock:
            conn = self._open_conn(f"get {ns}/{key}")
            try:
                row = conn.execute(
                    "SELECT value, version FROM entries WHERE ns = ? AND key = ?", (ns, key)
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._error(f"get {ns}/{key}", exc) from exc
        return None if row is None else Entry(bytes(row[0]), int(row[1]))

    def list(self, ns: str, prefix: str = "") -> dict[str, Entry]:
        _check_name("namespace", ns)
        _check_name("key prefix", prefix, allow_empty=True)
        with self._lock:
            conn = self._open_conn(f"list {ns}/{prefix}*")
            try:
                # substr() compares characters exactly; LIKE would be case-insensitive and treat
                # '%' and '_' in keys as wildcards.
                rows = conn.execute(
                    "SELECT key, value, version FROM entries "
                    "WHERE ns = ? AND substr(key, 1, ?) = ? ORDER BY key",
                    (ns, len(prefix), prefix),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._error(f"list {ns}/{prefix}*", exc) from exc
        return {key: Entry(bytes(value), int(version)) for key, value, version in rows}

    def put(self, ns: str, key: str, value: bytes, expected_version: int | None = None) -> int:
        _check_name("namespace", ns)
        _check_name("key", key)
        _check_value(value)
        expected = _check_expected(expected_version)
        with self._write(f"put {ns}/{key}") as conn:
            current = self._version(conn, ns, key)
            if expected is not None and current != expected:
                raise VersionConflict(ns, key, expected, current)
            conn.execute(
                "INSERT INTO entries (ns, key, value, version, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
                "version = excluded.version, updated = excluded.updated",
                (ns, key, value, current + 1, time.time()),
            )
        return current + 1

    def delete(self, ns: str, key: str, expected_version: int | None = None) -> bool:
        _check_name("namespace", ns)
        _check_name("key", key)
        expected = _check_expected(expected_version)
        with self._write(f"delete {ns}/{key}") as conn:
            current = self._version(conn, ns, key)
            if expected is not None and current != expected:
                raise VersionConflict(ns, key, expected, current)
            if current:
                conn.execute("DELETE FROM entries WHERE ns = ? AND key = ?", (ns, key))
        return current != 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Batch writes: one ``BEGIN IMMEDIATE`` (the write lock is taken up front, so CAS checks
        inside see a state no one else can change until the commit), one fsynced ``COMMIT``.
        If the block raises — or a storage error happened inside it, even if the caller caught
        it — everything is rolled back."""
        with self._lock:
            conn = self._open_conn("begin a transaction")
            if self._in_transaction:
                raise RuntimeError("store transactions do not nest")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("begin a transaction", exc) from exc
            self._in_transaction, self._transaction_failed = True, False
            try:
                yield
                if self._transaction_failed:
                    raise StoreError(
                        f"SQLite store at {self.path} rolled back a transaction because a write "
                        "inside it failed."
                    )
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise self._error("commit a transaction", exc) from exc
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._in_transaction = False

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            if self._in_transaction:
                raise RuntimeError("cannot close a store inside its own transaction")
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise self._error("close", exc) from exc


# -- typed values ------------------------------------------------------------------------------


def put_json(
    store: Store, ns: str, key: str, obj: Any, expected_version: int | None = None
) -> int:
    """Store ``obj`` (a msgspec Struct, dataclass, dict, list... anything msgspec encodes) as
    JSON at ``ns``/``key`` and return the new version. JSON keeps the registry readable with
    ``sqlite3`` and ``zkCli`` when an operator has to look; msgspec keeps it typed."""
    try:
        data = msgspec.json.encode(obj)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValueError(f"cannot store {type(obj).__name__} at {ns}/{key!r} as JSON: {exc}") from exc
    return store.put(ns, key, data, expected_version)


def get_json(store: Store, ns: str, key: str, type: type[T] | Any = Any) -> tuple[T, int] | None:
    """Read ``ns``/``key`` stored by :func:`put_json`, decoded (and validated) as ``type``.

    Returns ``(value, version)`` — the version to pass back as ``expected_version`` — or None
    when absent. A stored value that does not decode as ``type`` raises :class:`StoreError`:
    state the owner cannot read is as fatal as state it cannot write."""
    entry = store.get(ns, key)
    if entry is None:
        return None
    try:
        return msgspec.json.decode(entry.value, type=type), entry.version
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise StoreError(f"The value stored at {ns}/{key!r} does not decode as {type!r}: {exc}.") from exc
