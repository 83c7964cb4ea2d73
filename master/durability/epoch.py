"""The master's leader epoch: claimed in the registry at every start, checked before every write.

Every envelope the master sends carries its epoch, and agents, the agent simulator and SDK
drivers drop messages from an epoch older than the newest they have seen (DESIGN §4,
RELIABILITY scenario 27). That only fences a stale master off if a newer master always has a
larger epoch, so:

- **With a registry** (``--work-dir``), the epoch lives in it (``master/epoch``) and every start
  claims ``max(stored + 1, wall-clock milliseconds)`` and persists it, in one ``BEGIN
  IMMEDIATE`` transaction, *before* the master serves anyone: two masters starting on one
  registry at the same moment take turns on SQLite's write lock and get distinct, increasing
  epochs. ``stored + 1`` makes it strictly increasing whatever the clock does.
- **Without a registry** there is nothing to read, so the epoch is the wall clock in
  milliseconds at start: a master restarted without a work dir still gets a larger epoch than
  the one before it (unless the clock went back). The clock term in the registry rule serves
  the same purpose across modes: an agent that last served an in-memory master (epoch ≈ its
  start time in ms) is not deaf for ever to a master started later on a fresh registry, which
  a plain counter starting at 1 would be.
- **A superseded master exits.** A paused master (SIGSTOP, a long GC, a VM migration) resumes
  believing it leads; receivers drop what it sends, and the registry is the other resource it
  must not touch (Kleppmann's fencing token: the resource rejects older tokens). So every write
  transaction first checks that the registry still holds this master's epoch, and the shell
  also checks it every second; either way a master that finds another epoch there exits
  (RELIABILITY: a master that loses leadership exits at once; a supervisor restarts it).
"""

from __future__ import annotations

import time

from tepui.sdk.store import Store, get_json, put_json

EPOCH_NS = "master"
EPOCH_KEY = "epoch"
CHECK_SECONDS = 1.0  # how often a serving master looks whether another one has claimed its registry


class Superseded(Exception):
    """The registry holds another master's epoch: this master must stop acting at once."""

    def __init__(self, stored: int | None, own: int) -> None:
        self.stored, self.own = stored, own
        super().__init__(f"the registry holds epoch {stored}, not this master's {own}: "
                         "another master has started on it")


def clock_epoch() -> int:
    """The epoch of a master without a registry: its start time, in milliseconds."""
    return time.time_ns() // 1_000_000


def next_epoch(stored: int, now_ms: int) -> int:
    """Strictly above the stored epoch, and not below the clock (see the module docstring)."""
    return max(stored + 1, now_ms)


def stored_epoch(store: Store) -> int | None:
    """The epoch the registry holds (None before any master claimed one)."""
    found: tuple[int, int] | None = get_json(store, EPOCH_NS, EPOCH_KEY, int)
    return None if found is None else found[0]


def claim_epoch(store: Store, now_ms: int) -> int:
    """Reads, increments and persists the epoch in one transaction (SQLite: ``BEGIN IMMEDIATE``
    takes the write lock before the read, so a second master starting at the same moment waits
    and reads this one's value). The put is also a compare-and-set on the version read, so a
    store whose transactions do not lock still cannot hand two masters one epoch: it raises
    ``VersionConflict`` instead. Raises ``StoreError`` — the caller exits — when it fails."""
    with store.transaction():
        found: tuple[int, int] | None = get_json(store, EPOCH_NS, EPOCH_KEY, int)
        stored, version = found if found is not None else (0, 0)
        epoch = next_epoch(stored, now_ms)
        put_json(store, EPOCH_NS, EPOCH_KEY, epoch, expected_version=version)
    return epoch


def check_epoch(store: Store, own: int) -> None:
    """Raises :class:`Superseded` unless the registry still holds ``own``. Called inside every
    write transaction, so the check and the writes are one atomic step."""
    stored = stored_epoch(store)
    if stored != own:
        raise Superseded(stored, own)
