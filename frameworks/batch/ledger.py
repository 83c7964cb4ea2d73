"""The writes of one batch of the batch core, gathered into one :class:`~.effects.Persist`.

Why: the core decides, the ledger remembers what changed, so every batch ends with at most one
Persist (one store transaction, one fsync) holding the last value of each record it touched —
an attempt that was launched and found running in the same batch is written once.

The namespaces of the batch framework's store (keys in brackets):

- ``framework`` [``id``]: the framework id, so a restart re-subscribes as the same framework and
  its tasks are kept;
- ``specs`` [job id]: the job's spec as submitted (data, re-validated on load);
- ``jobs`` [job id]: :class:`~.records.JobRecord`;
- ``stages`` [``job/stage``]: :class:`~.records.StageRecord`, written when a stage or its job
  ends (what ``show`` and the history read of an ended job, whose run is not rebuilt);
- ``attempts`` [task id = ``job.stage.index.attempt``]: :class:`~.records.AttemptRecord`; a
  job's attempts share the prefix ``job.``, so they are listed and deleted by prefix.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tepui.frameworks.batch.effects import Persist

NS_FRAMEWORK, NS_SPECS, NS_JOBS, NS_STAGES, NS_ATTEMPTS = "framework", "specs", "jobs", "stages", "attempts"

Value = msgspec.Struct | dict[str, Any] | str


class Ledger:
    def __init__(self) -> None:
        self._puts: dict[tuple[str, str], Value] = {}
        self._deletes: set[tuple[str, str]] = set()
        self._prefixes: list[tuple[str, str]] = []

    def put(self, ns: str, key: str, value: Value) -> None:
        self._deletes.discard((ns, key))
        self._puts[(ns, key)] = value

    def delete(self, ns: str, key: str) -> None:
        self._puts.pop((ns, key), None)
        self._deletes.add((ns, key))

    def delete_prefix(self, ns: str, prefix: str) -> None:
        for known in [k for k in self._puts if k[0] == ns and k[1].startswith(prefix)]:
            del self._puts[known]
        self._prefixes.append((ns, prefix))

    def flush(self) -> Persist | None:
        """The batch's Persist (None: nothing changed); the ledger is empty again."""
        if not self._puts and not self._deletes and not self._prefixes:
            return None
        persist = Persist(tuple((ns, key, value) for (ns, key), value in self._puts.items()),
                          tuple(sorted(self._deletes)), tuple(self._prefixes))
        self._puts, self._deletes, self._prefixes = {}, set(), []
        return persist
