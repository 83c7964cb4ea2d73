"""What the batch core asks its shell to do. Frozen values in one union, as
:mod:`tepui.frameworks.services.effects`; the shell executes them in order.

Write-ahead: a batch that changed a record starts with one :class:`Persist`, and the shell
commits it before it executes anything after it — so an attempt is in the store before its task
is launched, and an index's success is stored before its update is acknowledged. The shell may
merge the Persists of several batches that arrive in one reactor turn into one commit (group
commit) as long as nothing that follows any of them runs before that commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from tepui.sdk.framework_effects import Decline, Demand, Kill, Launch, Publish, Reconcile

__all__ = ["Decline", "Demand", "Effect", "Kill", "Launch", "Persist", "Publish", "Reconcile"]


@dataclass(frozen=True)
class Persist:
    """Records to write and delete in one transaction. ``delete_prefixes``: every key of ``ns``
    starting with ``prefix`` (a job's attempts when its record expires)."""

    puts: tuple[tuple[str, str, msgspec.Struct | dict[str, Any] | str], ...]
    deletes: tuple[tuple[str, str], ...] = ()
    delete_prefixes: tuple[tuple[str, str], ...] = ()


Effect = Persist | Launch | Decline | Kill | Reconcile | Demand | Publish
