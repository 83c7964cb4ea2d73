"""A fake of the cron framework's REST API behind the master's ``/frameworks/cron`` prefix (the
contract of docs/cron.md "CLI and API"), on loopback in a thread, for the client and CLI tests.

Why the real core behind a fake HTTP shell: the answers (summaries, fire records, refusals) are
then the core's own — a test drives time with :meth:`FakeCron.advance` (ticks, the batch
framework's confirmations and job ends) and reads exactly what ``tepui cron`` prints of them —
while the test needs no Twisted, no store and no batch framework. Specs are parsed by the real
parser (a 422 names the field), ``next`` is the real :class:`~tepui.frameworks.cron.fires.
Schedule`'s. Served, and every request recorded, by the batch fake's ``serve``.
"""

from __future__ import annotations

import urllib.parse
from contextlib import AbstractContextManager
from typing import Any, cast

from tepui.frameworks.cron import commands
from tepui.frameworks.cron.catch_up import iso
from tepui.frameworks.cron.core import CronCore, ScheduleEntry
from tepui.frameworks.cron.definition import definition_of
from tepui.frameworks.cron.effects import SubmitJob
from tepui.frameworks.cron.spec import load_schedule, parse_schedule, schedule_of
from tepui.sdk.framework_effects import CommandError
from tepui.sdk.spec_documents import SpecError
from tests.frameworks.batch.fake_batch_api import serve as _serve

__all__ = ["PREFIX", "T0", "FakeCron", "serve"]

PREFIX = "/frameworks/cron/v1"
T0 = 1_774_600_000.0  # 2026-03-27T08:26:40Z: two nights before Berlin's 2026 spring-forward


class FakeCron:
    def __init__(self, now: float = T0) -> None:
        self.core = CronCore()
        self.now = now
        self.requests: list[dict[str, Any]] = []
        self.framework_running = True

    # --- time ----------------------------------------------------------------------------------

    def advance(self, to: float, ends: dict[str, str] | None = None) -> list[str]:
        """Ticks the core at ``to``; the batch framework confirms every submit at once, then the
        jobs in ``ends`` end in the state given. Returns the keys submitted."""
        self.now = to
        submitted = [e.job_id for e in self.core.tick(to) if isinstance(e, SubmitJob)]
        for key in submitted:
            self.core.submitted(key, to)
        for key, state in (ends or {}).items():
            self.core.job_ended(key, state, to)
        return submitted

    # --- the API -------------------------------------------------------------------------------

    def summary(self, entry: ScheduleEntry) -> dict[str, Any]:
        spec = entry.record.spec
        return {**self.core.summary(entry), "cron": spec.get("cron"), "interval": spec.get("interval"),
                "time_zone": spec.get("time_zone", "UTC"), "concurrency_policy": spec.get("concurrency_policy", "Allow")}

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes,
               headers: dict[str, str]) -> tuple[int, Any]:
        """One request, as tests/frameworks/batch/fake_batch_api.py ``serve`` hands it over."""
        content_type = headers.get("content-type") or ""
        if not self.framework_running:
            return 404, {"error": "no framework named 'cron' is subscribed", "reason": "UNKNOWN_FRAMEWORK"}
        if not path.startswith(PREFIX + "/"):
            return 404, None
        parts = [urllib.parse.unquote(p) for p in path[len(PREFIX):].strip("/").split("/")]
        try:
            return self._route(method, parts, query, body, content_type)
        except CommandError as exc:
            return exc.status, exc.body()

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: bytes,
               content_type: str) -> tuple[int, Any]:
        if parts == ["health"]:
            return 200, {"ok": True, "subscribed": True, "framework_id": "F-cron", "batch": "reachable"}
        if parts == ["schedules"] and method == "GET":
            return 200, {"schedules": [self.summary(e) for _, e in sorted(self.core.schedules.items())]}
        if parts == ["schedules"] and method == "POST":
            answer, _ = commands.create(self.core, self._definition(body, content_type), self.now)
            return 201, {"schedule": self.summary(self.core.schedules[answer["schedule"]["id"]])}
        if parts[0] != "schedules" or len(parts) < 2:
            return 404, {"error": f"no route {method} /{'/'.join(parts)}", "reason": "NOT_FOUND"}
        schedule_id = parts[1]
        if len(parts) == 2 and method == "PUT":
            definition = self._definition(body, content_type)
            if definition.id != schedule_id:
                raise CommandError(422, "INVALID_SPEC", f"id: the body's id {definition.id!r} is not the URL's "
                                   f"{schedule_id!r}", "id")
            answer, _ = commands.apply(self.core, definition, self.now)
            return (201 if answer["created"] else 200), {"schedule": self.summary(self.core.schedules[schedule_id]),
                                                          "created": answer["created"]}
        if len(parts) == 2 and method == "DELETE":
            return 200, commands.rm(self.core, schedule_id, self.now)[0]
        entry = commands.entry_of(self.core, schedule_id)
        if len(parts) == 2:
            return 200, {"schedule": {**self.summary(entry), "spec": entry.record.spec}}
        action = parts[2]
        if action == "next":
            n = int(query.get("n", "10"))
            timeline = schedule_of(load_schedule(entry.record.spec))
            fires = timeline.next_fires(max(self.now, entry.record.checked_through), n)
            return 200, {"next": [{"at": f.at, "utc": iso(f.at), "local": f.local, "key": f.key} for f in fires]}
        if action == "fires":
            return 200, {"fires": [self.core.fire_view(f) for f in
                                   sorted(entry.fires.values(), key=lambda f: f.seq, reverse=True)]}
        if action in ("suspend", "resume"):
            getattr(commands, action)(self.core, schedule_id, self.now)
            return 200, {"schedule": self.summary(entry)}
        if action == "trigger":
            answer, effects = commands.trigger(self.core, schedule_id, self.now)
            return (201 if answer["created"] else 200), {"schedule": self.summary(entry), "fire": answer["fire"],
                                                          "created": answer["created"]}
        return 404, {"error": f"a schedule has no {action!r}", "reason": "NOT_FOUND"}

    def _definition(self, body: bytes, content_type: str) -> Any:
        try:
            return definition_of(parse_schedule(body, "json" if "json" in content_type else "yaml"))
        except SpecError as exc:
            raise CommandError(422, "INVALID_SPEC", str(exc), exc.field) from None


def serve(fake: FakeCron) -> AbstractContextManager[str]:
    """Serves ``fake`` on 127.0.0.1 (the batch fake's server: it hands any fake each request)."""
    return _serve(cast(Any, fake))
