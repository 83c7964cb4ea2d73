"""The :class:`~tepui.sdk.store.Store` on ZooKeeper, for highly available masters and frameworks.

A standby master (or framework instance) must find every record the leader wrote the moment it
takes over, so the registry cannot live in one machine's file: it lives in the ZooKeeper ensemble
that also elects the leader (issue 19). :class:`ZooKeeperStore` keeps :class:`SQLiteStore`'s
contract (sdk/store.py) exactly, so the master, ``claim_epoch``/``check_epoch`` and the framework
shells run unchanged on either.

Layout and why:

- **One znode per entity**, ``<root>/<ns>/<escaped key>``: ZooKeeper refuses a znode (and a
  request) over ``jute.maxbuffer`` ≈ 1 MiB, so a registry of 10,000 agents (≈ 600 bytes each,
  6 MB) can only be stored spread out; a write touches only its own entity.
- **Version = znode version + 1**, so versions start at 1 as on SQLite; deleting a znode forgets
  its version, and a re-created key starts over at 1 (ZooKeeper semantics, which the Store
  contract copied).
- **Compare-and-set is ZooKeeper's own version check** (``set``/``delete`` with a version,
  ``create`` for "must not exist"), so it holds across machines without a lock.

Transactions: writes inside :meth:`ZooKeeperStore.transaction` are buffered and committed as one
ZooKeeper ``multi``. ZooKeeper has no read lock to hold like SQLite's ``BEGIN IMMEDIATE``, so
every ``get`` made inside the transaction is *validated at commit*: a ``check`` of the version
read, or, for a key that was absent, a ``create`` + ``delete`` of it in the same multi (ZooKeeper
has no "check absent" op). A write's own version check validates what the transaction knew of
that key. So ``claim_epoch``/``check_epoch`` fence exactly as on SQLite: a master whose epoch
changed under it commits nothing.

**Multi size and key names**: sdk/zk_ops.py (why 512 KiB per multi, how keys are escaped).

**Connection trouble.** ``ConnectionLoss``, an operation time-out, or a request waiting in
kazoo's queue while the client is SUSPENDED (reconnecting) is retried with kazoo's ``KazooRetry``
(50 ms doubling to 500 ms) until ``retry_seconds`` (default: the client's requested session
timeout — longer than that, the session is gone anyway) have passed since the call began; then
:class:`StoreError`. kazoo's synchronous calls would wait for ever while it reconnects (a request
queued then stays queued), which would hang the master's store thread; so each answer is awaited
in 100 ms slices, giving up at the deadline only while the client is not connected. While it is
connected a slow answer is waited for (a 10,000-entry list() on a loaded machine takes seconds;
a dead link is kazoo's to detect: its read timeout, ⅔ of the session timeout, fails every pending
request with ``ConnectionLoss``, which is then retried). A session expiry,
missing authorisation, a stopped client or anything else is a :class:`StoreError` at once, naming
the znode and the operation. A write that timed out may still be applied later, when the queued
request reaches the server; a :class:`StoreError` means "unknown", as on SQLite, and the master
exits on it. A multi whose answer was lost (``ConnectionLoss`` after sending it: the server the client was
talking to died) is first looked up before it is resent — if every path it wrote already holds
the version and bytes it leaves, it was applied — so a transaction does not report a
:class:`VersionConflict` against itself (the master would exit on it). A single CAS put or
delete retried that way still can: the caller re-reads, as for any conflict.

Measured (tests/sdk/test_zk_store.py, loopback, 2 cores shared with other test runs, load ≈ 5): a
put made during a 1 s network outage (the client SUSPENDED, same session after) returned after
1.27 s; with the link kept down, a call failed 1.0 s after it began with ``retry_seconds=1``.

**list()** fetches the children once and then all values pipelined (``get_async`` for each, then
the answers): 10,000 entries of 600 bytes took 1.6–3.1 s, where one ``get`` at a time cost
1.8 ms each (18 s). A key deleted between the two steps is left out. Inside a transaction,
list() shows the transaction's own writes but is not validated at commit (only get() is: the
Store has no way to name "this set of keys" to check).

**Transactions pay one round trip per key they first touch** (an ``exists`` to learn the
version ``put`` returns and the commit checks): 10,000 puts in one transaction took 4–6.4 s
in all, of which 0.33 s was committing its 14 multis. The master's batches are tens of keys.
A transaction ensures the namespace znodes it creates in once per store, not on every commit:
the master's one-agent transactions (its epoch check and one put) went from 5 round trips to 3,
11.4 → 6.6 ms each on a loaded machine, 30% of a 1,000-agent re-registration (bench/failover.py).

Threading: calls hold one lock, as on SQLite, and a transaction holds it for its whole block.
The client belongs to its owner: :meth:`ZooKeeperStore.close` does not stop it.
"""

from __future__ import annotations

import builtins
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
)
from kazoo.retry import ForceRetryError, KazooRetry, RetryFailedError

from tepui.sdk.store import (
    Entry,
    StoreError,
    VersionConflict,
    _check_expected,
    _check_name,
    _check_value,
)

from tepui.sdk.zk_ops import MAX_VALUE_BYTES, MULTI_LIMIT_BYTES, Batch, Op, escape_name, unescape_name

__all__ = ["MAX_VALUE_BYTES", "MULTI_LIMIT_BYTES", "ZooKeeperStore", "escape_name", "unescape_name"]

_POLL_SECONDS = 0.1  # how often a waiting call looks whether the client is still connected
_CONFLICTS = (BadVersionError, NodeExistsError, NoNodeError)

R = TypeVar("R")


class ZooKeeperStore:
    """A :class:`~tepui.sdk.store.Store` under ``root`` in ZooKeeper (see the module docstring).

    ``client`` is a started kazoo ``KazooClient`` owned by the caller (kazoo has no type stubs, so
    mypy sees it as ``Any``). ``retry_seconds`` bounds how long a call retries while the
    connection is down; by default the client's requested session timeout."""

    def __init__(self, client: KazooClient, root: str, *, retry_seconds: float | None = None) -> None:
        if not isinstance(root, str) or not root.startswith("/") or root.rstrip("/") == "":
            raise ValueError(f"ZooKeeper store root must be an absolute path below /, not {root!r}")
        self.client = client
        self.root = root.rstrip("/")
        if retry_seconds is None:
            retry_seconds = getattr(client, "_session_timeout", 10_000) / 1000.0
        if retry_seconds <= 0:
            raise ValueError(f"retry_seconds must be > 0, not {retry_seconds!r}")
        self.retry_seconds = float(retry_seconds)
        self._lock = threading.RLock()
        self._closed = False
        self._batch: Batch | None = None
        # Namespace znodes known to exist: a transaction's creates need their parent, and
        # ensuring it on every commit cost one or two round trips more per transaction.
        self._namespaces: set[str] = set()

    def __repr__(self) -> str:
        return f"ZooKeeperStore({self.root!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- paths and errors ---------------------------------------------------------------------

    def _path(self, ns: str, key: str | None = None) -> str:
        ns_path = f"{self.root}/{escape_name(ns)}"
        return ns_path if key is None else f"{ns_path}/{escape_name(key)}"

    def _error(self, operation: str, path: str, reason: object) -> StoreError:
        if isinstance(reason, BaseException):
            reason = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
        return StoreError(f"ZooKeeper store at {self.root} could not {operation} (znode {path}): {reason}.")

    def _call(self, operation: str, path: str, attempt: Callable[[float], R]) -> R:
        """Runs ``attempt(deadline)`` until it returns, retrying connection trouble until
        ``retry_seconds`` have passed; any other kazoo failure is a StoreError at once."""
        if self._closed:
            raise self._error(operation, path, "the store is closed")
        deadline = time.monotonic() + self.retry_seconds
        timeout_error = self.client.handler.timeout_exception

        def once() -> R:
            if self._closed:
                raise ConnectionClosedError("the store was closed")
            try:
                return attempt(deadline)
            except timeout_error as exc:  # waited in the queue while reconnecting
                raise ForceRetryError(str(exc)) from exc

        retry = KazooRetry(max_tries=-1, delay=0.05, backoff=2, max_delay=0.5, max_jitter=0.2,
                           deadline=self.retry_seconds, ignore_expire=False)
        try:
            return retry(once)
        except RetryFailedError as exc:
            raise self._error(operation, path, f"no answer from ZooKeeper within {self.retry_seconds:g} s "
                              f"(client state {self.client.state})") from exc
        except ConnectionClosedError as exc:
            raise self._error(operation, path, "the ZooKeeper client is stopped or the store closed") from exc
        except SessionExpiredError as exc:
            raise self._error(operation, path, "the ZooKeeper session expired") from exc
        except KazooException as exc:
            raise self._error(operation, path, exc) from exc

    def _wait(self, result: Any, deadline: float) -> Any:
        """The answer to one request. While the client is connected it waits however long the
        server takes (a big list() under load is slow, not broken; a dead link is kazoo's to
        detect: its read timeout, ⅔ of the session timeout, fails pending requests with
        ConnectionLoss). While it is not, the request waits in kazoo's queue for a reconnection:
        then it gives up at ``deadline``."""
        while True:
            try:
                return result.get(timeout=_POLL_SECONDS)
            except self.client.handler.timeout_exception:
                if not self.client.connected and time.monotonic() >= deadline:
                    raise

    def _version(self, path: str, deadline: float) -> int:
        stat = self._wait(self.client.exists_async(path), deadline)
        return 0 if stat is None else int(stat.version) + 1

    def _actual(self, path: str) -> int:
        """The current version after a conflict (for VersionConflict.actual)."""
        return self._call(f"read the version of {path}", path, lambda deadline: self._version(path, deadline))

    def _open(self, operation: str, path: str) -> None:
        if self._closed:
            raise self._error(operation, path, "the store is closed")

    # -- Store --------------------------------------------------------------------------------

    def get(self, ns: str, key: str) -> Entry | None:
        _check_name("namespace", ns)
        _check_name("key", key)
        path = self._path(ns, key)
        with self._lock:
            self._open(f"get {ns}/{key}", path)
            batch = self._batch
            if batch is not None and path in batch.view:
                _, _, value, version = batch.view[path]
                return None if value is None else Entry(value, version)
            try:
                found = self._call(f"get {ns}/{key}", path, lambda deadline: self._read(path, deadline))
            except StoreError:
                if batch is not None:
                    batch.failed = True
                raise
            if batch is not None:  # validated at commit
                batch.base[path] = 0 if found is None else found.version
                batch.view[path] = (ns, key, None, 0) if found is None else (ns, key, found.value, found.version)
                batch.namespaces.add(ns)
            return found

    def _read(self, path: str, deadline: float) -> Entry | None:
        try:
            data, stat = self._wait(self.client.get_async(path), deadline)
        except NoNodeError:
            return None
        return Entry(bytes(data or b""), int(stat.version) + 1)

    def list(self, ns: str, prefix: str = "") -> dict[str, Entry]:
        _check_name("namespace", ns)
        _check_name("key prefix", prefix, allow_empty=True)
        ns_path = self._path(ns)
        operation = f"list {ns}/{prefix}*"
        with self._lock:
            self._open(operation, ns_path)
            try:
                found = self._call(operation, ns_path, lambda deadline: self._list(ns_path, prefix, deadline))
            except StoreError:
                if self._batch is not None:
                    self._batch.failed = True
                raise
            batch = self._batch
            if batch is not None:  # overlay the transaction's own writes
                for key, entry in found.items():
                    batch.known.setdefault(self._path(ns, key), entry.version)
                for _, (view_ns, key, value, version) in batch.view.items():
                    if view_ns != ns or not key.startswith(prefix):
                        continue
                    if value is None:
                        found.pop(key, None)
                    else:
                        found[key] = Entry(value, version)
        return dict(sorted(found.items()))

    def _list(self, ns_path: str, prefix: str, deadline: float) -> dict[str, Entry]:
        try:
            children = self._wait(self.client.get_children_async(ns_path), deadline)
        except NoNodeError:
            return {}
        try:
            keys = [key for key in map(unescape_name, children) if key.startswith(prefix)]
        except UnicodeDecodeError as exc:  # a znode someone else put there
            raise self._error("list its children", ns_path, f"a child's name is not one this store writes: {exc}") from exc
        pending = [(key, self.client.get_async(f"{ns_path}/{escape_name(key)}")) for key in keys]
        found: dict[str, Entry] = {}
        for key, result in pending:
            try:
                data, stat = self._wait(result, deadline)
            except NoNodeError:  # deleted since get_children
                continue
            found[key] = Entry(bytes(data or b""), int(stat.version) + 1)
        return found

    def put(self, ns: str, key: str, value: bytes, expected_version: int | None = None) -> int:
        _check_name("namespace", ns)
        _check_name("key", key)
        _check_value(value)
        expected = _check_expected(expected_version)
        if len(value) > MAX_VALUE_BYTES:
            raise ValueError(
                f"store value for {ns}/{key!r} is {len(value)} bytes; a ZooKeeper store takes at most "
                f"{MAX_VALUE_BYTES} bytes per value (ZooKeeper refuses requests over ≈1 MiB)"
            )
        path = self._path(ns, key)
        operation = f"put {ns}/{key}"
        with self._lock:
            self._open(operation, path)
            if self._batch is not None:
                return self._buffer(self._batch, operation, ns, key, path, value, expected)
            if expected is None:
                return self._call(operation, path, lambda deadline: self._put_any(path, value, deadline))
            if expected == 0:
                attempt: Callable[[float], int] = lambda deadline: self._create(path, value, deadline)  # noqa: E731
            else:
                attempt = lambda deadline: self._set(path, value, expected - 1, deadline)  # noqa: E731
            if self._call(operation, path, attempt):
                return expected + 1
            raise VersionConflict(ns, key, expected, self._actual(path))

    def _put_any(self, path: str, value: bytes, deadline: float) -> int:
        while True:
            try:
                stat = self._wait(self.client.set_async(path, value), deadline)
                return int(stat.version) + 1
            except NoNodeError:
                pass
            try:
                self._wait(self.client.create_async(path, value, makepath=True), deadline)
                return 1
            except NodeExistsError:  # created meanwhile: set it
                continue

    def _create(self, path: str, value: bytes, deadline: float) -> int:
        try:
            self._wait(self.client.create_async(path, value, makepath=True), deadline)
        except NodeExistsError:
            return 0
        return 1

    def _set(self, path: str, value: bytes, zk_version: int, deadline: float) -> int:
        try:
            self._wait(self.client.set_async(path, value, version=zk_version), deadline)
        except (BadVersionError, NoNodeError):
            return 0
        return 1

    def delete(self, ns: str, key: str, expected_version: int | None = None) -> bool:
        _check_name("namespace", ns)
        _check_name("key", key)
        expected = _check_expected(expected_version)
        path = self._path(ns, key)
        operation = f"delete {ns}/{key}"
        with self._lock:
            self._open(operation, path)
            if self._batch is not None:
                return self._buffer(self._batch, operation, ns, key, path, None, expected) == 0
            if expected == 0:
                actual = self._actual(path)
                if actual:
                    raise VersionConflict(ns, key, 0, actual)
                return False
            zk_version = -1 if expected is None else expected - 1

            def attempt(deadline: float) -> bool | None:
                try:
                    self._wait(self.client.delete_async(path, version=zk_version), deadline)
                except NoNodeError:
                    return False if expected is None else None
                except BadVersionError:
                    return None
                return True

            deleted = self._call(operation, path, attempt)
            if deleted is None:
                raise VersionConflict(ns, key, expected or 0, self._actual(path))
            return deleted

    # -- transactions -------------------------------------------------------------------------

    def _buffer(self, batch: Batch, operation: str, ns: str, key: str, path: str,
                value: bytes | None, expected: int | None) -> int:
        """A put (value) or delete (None) inside a transaction, checked against the batch's view;
        returns the version it leaves (0: deleted)."""
        if path in batch.view:
            current = batch.view[path][3]
        else:
            if path in batch.known:
                current = batch.known[path]
            else:
                try:
                    current = self._call(operation, path, lambda deadline: self._version(path, deadline))
                except StoreError:
                    batch.failed = True
                    raise
            batch.base[path] = current
        if expected is not None and expected != current:
            raise VersionConflict(ns, key, expected, current)
        batch.namespaces.add(ns)
        if value is None:
            if current:
                batch.ops.append(Op("delete", path, ns, key, current))
            batch.view[path] = (ns, key, None, 0)
            return 0
        batch.ops.append(Op("create" if current == 0 else "set", path, ns, key, current, value))
        batch.view[path] = (ns, key, value, current + 1)
        return current + 1

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Buffer the writes of the block and commit them as ZooKeeper multis when it ends (see
        the module docstring: reads validated at commit, atomic per multi of ≤ 512 KiB). If the
        block raises, or a store call inside it failed even if the caller caught it, nothing is
        written."""
        with self._lock:
            self._open("begin a transaction", self.root)
            if self._batch is not None:
                raise RuntimeError("store transactions do not nest")
            batch = self._batch = Batch()
            try:
                yield
            finally:
                self._batch = None
            if batch.failed:
                raise self._error("commit a transaction", self.root,
                                  "a store call inside it failed, so nothing was written")
            self._commit(batch)

    def _commit(self, batch: Batch) -> None:
        written = {op.path for op in batch.ops}
        checks = []
        for path, version in batch.base.items():
            if path in written:
                continue  # the first write of the path checks this version itself
            ns, key = batch.view[path][0], batch.view[path][1]
            checks.append(Op("check" if version else "absent", path, ns, key, version))
        if not batch.ops:
            return  # nothing to write: there is nothing for the reads to protect
        checks_size = sum(op.size for op in checks)
        chunks: builtins.list[builtins.list[Op]] = []
        size = 0
        for op in batch.ops:
            if checks_size + op.size > MULTI_LIMIT_BYTES:
                raise ValueError(
                    f"a transaction validating {len(checks)} reads ({checks_size} bytes) cannot also "
                    f"carry a {op.size}-byte write of {op.ns}/{op.key!r} in one {MULTI_LIMIT_BYTES}-byte multi"
                )
            if not chunks or size + op.size > MULTI_LIMIT_BYTES:
                chunks.append([])
                size = checks_size
            chunks[-1].append(op)
            size += op.size
        # Only a create needs its parent; a namespace seen once is not looked at again (a master
        # re-registering 1,000 agents spent 30% of its registry time here: 2 of 5 round trips
        # per transaction). One deleted by hand since is made again by _commit_multi.
        creating = {op.ns for op in checks + batch.ops if op.kind in ("create", "absent")}
        for ns in sorted(creating - self._namespaces):
            self._ensure(ns)
        for number, chunk in enumerate(chunks, start=1):
            try:
                self._commit_multi(checks + chunk, number, len(chunks))
            except StoreError as exc:
                if number == 1:
                    raise
                raise StoreError(
                    f"{exc} The first {number - 1} of this transaction's {len(chunks)} multis were "
                    "committed before it: atomicity holds per multi."
                ) from exc

    def _ensure(self, ns: str) -> None:
        """Creates the namespace's znode: a multi's creates need their parent to exist."""
        path = self._path(ns)
        self._call(f"create namespace {ns}", path, lambda deadline: self._wait(self.client.ensure_path_async(path), deadline))
        self._namespaces.add(ns)

    def _commit_multi(self, ops: Sequence[Op], number: int, total: int) -> None:
        operation = f"commit multi {number} of {total} ({len(ops)} ops)"
        first = ops[0].path if ops else self.root

        sent = False

        def attempt(deadline: float) -> Op | None:
            nonlocal sent
            if sent and self._applied(ops, deadline):
                return None  # the answer was lost, not the multi
            sent = True
            multi = self.client.transaction()
            owners: builtins.list[Op] = []
            for op in ops:
                owners.extend([op] * op.add_to(multi))
            results = self._wait(multi.commit_async(), deadline)
            for op, result in zip(owners, results, strict=False):
                if isinstance(result, (RolledBackError, RuntimeInconsistency)):
                    continue
                if isinstance(result, NoNodeError) and op.kind in ("create", "absent") and op.ns in self._namespaces:
                    # Its namespace znode was deleted (by hand) since this store ensured it:
                    # make it again and resend (nothing of a failed multi was applied).
                    self._namespaces.discard(op.ns)
                    parent = self._path(op.ns)
                    self._wait(self.client.ensure_path_async(parent), deadline)
                    self._namespaces.add(op.ns)
                    sent = False
                    raise ForceRetryError(f"namespace znode {parent} was re-created")
                if isinstance(result, _CONFLICTS):
                    return op
                if isinstance(result, Exception):
                    raise result
            return None

        op = self._call(operation, first, attempt)
        if op is not None:
            actual = self._actual(op.path)
            if actual == op.expected:  # e.g. the namespace vanished: not a version conflict
                raise self._error(operation, op.path, f"ZooKeeper refused the {op.kind} of {op.ns}/{op.key}")
            raise VersionConflict(op.ns, op.key, op.expected, actual)

    def _applied(self, ops: Sequence[Op], deadline: float) -> bool:
        """Whether a multi whose answer was lost (ConnectionLoss after sending it) was applied:
        every path it wrote holds the version and bytes the multi leaves, or is gone if it
        deleted it. Resending an applied multi would fail on its own version checks and report
        a VersionConflict against itself — and the master exits on that."""
        final: dict[str, tuple[bytes, int] | None] = {}
        for op in ops:
            if op.kind in ("create", "set"):  # the znode version after it: 0, or the Store version before it
                final[op.path] = (op.value, 0 if op.kind == "create" else op.expected)
            elif op.kind == "delete":
                final[op.path] = None
        pending = [(path, self.client.get_async(path)) for path in final]
        for path, result in pending:
            try:
                data, stat = self._wait(result, deadline)
            except NoNodeError:
                if final[path] is not None:
                    return False
                continue
            if final[path] != (bytes(data or b""), int(stat.version)):
                return False
        return True

    def close(self) -> None:
        """Further calls raise StoreError. Does not stop the client: its owner does. Idempotent."""
        with self._lock:
            if self._batch is not None:
                raise RuntimeError("cannot close a store inside its own transaction")
            self._closed = True
