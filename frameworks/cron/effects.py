"""What the cron core asks its shell to do. Frozen values in one union, as the batch
framework's :mod:`tepui.frameworks.batch.effects`; the shell executes them in order.

The cron framework launches no task itself: each fire becomes a job of the batch framework,
submitted over its REST API (``POST /v1/jobs?id=<fire key>``), and a Replace cancels the running
one (``POST /v1/jobs/<id>/cancel``). Both calls are safe to repeat: the batch framework's submit
is idempotent on the id (same id and spec: 200 ``created: false``), and a cancel of an ended or
unknown job is a refusal the shell ignores.

Write-ahead: a batch that changed a record starts with one :class:`Persist`, and the shell
commits it before it executes anything after it — so a fire's INTENDED record is in the store
before its :class:`SubmitJob` is sent, and a restart re-submits it under the same id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from tepui.sdk.framework_effects import Publish

__all__ = ["CancelJob", "Effect", "Persist", "Publish", "SubmitJob"]


@dataclass(frozen=True)
class Persist:
    """Records to write and delete in one transaction. ``delete_prefixes``: every key of ``ns``
    starting with ``prefix`` (a removed schedule's fires)."""

    puts: tuple[tuple[str, str, msgspec.Struct | dict[str, Any] | str], ...]
    deletes: tuple[tuple[str, str], ...] = ()
    delete_prefixes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SubmitJob:
    """Submit ``spec`` (a batch job spec, as data) to the batch framework under ``job_id`` (the
    fire's key). The shell answers with ``CronCore.submitted`` or ``CronCore.submit_failed``."""

    job_id: str
    spec: dict[str, Any]
    schedule_id: str


@dataclass(frozen=True)
class CancelJob:
    """Cancel the batch job ``job_id`` (Replace); its end arrives as ``CronCore.job_ended``."""

    job_id: str


Effect = Persist | SubmitJob | CancelJob | Publish
