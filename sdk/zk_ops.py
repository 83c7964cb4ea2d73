"""What one ZooKeeper ``multi`` of :class:`~tepui.sdk.zk_store.ZooKeeperStore` holds: the znode
name of each Store key, the buffered ops and their sizes, and a transaction's own view.

Apart from the store because it is a different question — how a Store transaction is spelt in
ZooKeeper's terms and kept under its request limit — from how the store talks to ZooKeeper
(retries, waiting, conflicts), which is sdk/zk_store.py.

- **Keys are escaped** so that any key the Store accepts (``/``, ``%``, ``.``, ``..``, control
  and private-use characters, characters outside the BMP, 1024 characters) is one valid znode
  name: ``%``, ``/`` and every character ZooKeeper's ``PathUtils.validatePath`` rejects become
  ``%XX`` UTF-8 escapes, and a name that is exactly ``.`` or ``..`` is spelt ``%2E``/``%2E%2E``.
  Characters ZooKeeper accepts are kept, so ``zkCli`` shows readable names. Keys outside the BMP
  are escaped because ZooKeeper validates UTF-16 code units, and their surrogates are refused.

**Multi size.** A multi is one request, bounded by ``jute.maxbuffer`` (0xfffff ≈ 1 MiB; client
and server defaults have differed, ZOOKEEPER-1295), and kazoo #630 reports commits failing at
≈ 930 KB with a bare ``ConnectionLoss``. Measured here (ZooKeeper 3.8.0, kazoo 2.11, loopback):
a multi of 1,040,000 bytes of values committed in 18 ms, one of 1,048,000 failed with
``ConnectionLoss``, and a single create of 1,048,000 bytes passed where 1,048,500 failed. The
failure is not local: ZooKeeper drops the whole connection, so every other request on that
client — the leader election's included — fails too and the session goes SUSPENDED. So a
transaction is cut into multis of at most :data:`MULTI_LIMIT_BYTES` = 512 KiB: half the hard
limit, whatever the ensemble's exact ``jute.maxbuffer`` and the ops' overhead, and short (a
512 KiB multi committed in 9 ms) so it does not hold the server's request pipeline, and the
sessions' pings behind it, for long. A bigger transaction is committed as several multis in order, each
carrying all the validated reads: **atomicity then holds per multi** — a failure in the second
leaves the first committed (the :class:`StoreError` says how many were). The master's transactions
(one batch of effects plus its epoch check) stay far below one multi. A single value over
:data:`MAX_VALUE_BYTES` (448 KiB, leaving room for its path and the validated reads) is a
``ValueError`` naming its size, raised before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

__all__ = ["MAX_VALUE_BYTES", "MULTI_LIMIT_BYTES", "Batch", "Op", "escape_name", "unescape_name"]

MULTI_LIMIT_BYTES = 512 * 1024
"""Most bytes one committed multi carries (see the module docstring: half of jute.maxbuffer)."""

MAX_VALUE_BYTES = 448 * 1024
"""Largest value accepted: it must fit in one multi with its path (≤ 12.3 KB escaped) and the
transaction's validated reads."""

_OP_OVERHEAD = 64  # bytes per op beyond path and value: multi header, lengths, version, ACL


def _needs_escape(ch: str) -> bool:
    """True for '%', '/' and what ZooKeeper's PathUtils.validatePath refuses in a name (checked on
    UTF-16 code units, so every character outside the BMP is refused as a surrogate)."""
    cp = ord(ch)
    return (
        ch in "%/"
        or cp < 0x20
        or 0x7F <= cp <= 0x9F
        or 0xD800 <= cp <= 0xF8FF
        or cp >= 0xFFF0
    )


def escape_name(name: str) -> str:
    """The znode name for a Store namespace or key (one-to-one; see the module docstring)."""
    escaped = "".join(
        "".join(f"%{b:02X}" for b in ch.encode()) if _needs_escape(ch) else ch for ch in name
    )
    return escaped.replace(".", "%2E") if escaped in (".", "..") else escaped


def unescape_name(znode: str) -> str:
    """The namespace or key a znode name spells (inverse of :func:`escape_name`)."""
    return unquote(znode, errors="strict")


@dataclass(slots=True)
class Op:
    """One buffered multi op, with what a conflict on it means for the Store's caller."""

    kind: Literal["create", "set", "delete", "check", "absent"]
    path: str
    ns: str
    key: str
    expected: int  # the Store version this op assumes (0: absent)
    value: bytes = b""

    @property
    def size(self) -> int:
        return len(self.path.encode()) * (2 if self.kind == "absent" else 1) + len(self.value) + _OP_OVERHEAD

    def add_to(self, multi: Any) -> int:
        """Adds this op to a kazoo TransactionRequest; returns how many ops it took."""
        if self.kind == "create":
            multi.create(self.path, self.value)
        elif self.kind == "set":
            multi.set_data(self.path, self.value, version=self.expected - 1)
        elif self.kind == "delete":
            multi.delete(self.path, version=self.expected - 1)
        elif self.kind == "check":
            multi.check(self.path, self.expected - 1)
        else:  # "absent": ZooKeeper has no check for absence; create it and delete it again
            multi.create(self.path, b"")
            multi.delete(self.path, version=0)
            return 2
        return 1


@dataclass(slots=True)
class Batch:
    """A transaction's buffer: its own view of every key it touched, the ops to commit, and the
    reads to validate."""

    view: dict[str, tuple[str, str, bytes | None, int]] = field(default_factory=dict)  # path -> (ns, key, value, version)
    known: dict[str, int] = field(default_factory=dict)  # versions seen by list(), not validated
    base: dict[str, int] = field(default_factory=dict)  # path -> version read from ZooKeeper (validated)
    ops: list[Op] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)
    failed: bool = False
