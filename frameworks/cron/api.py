"""The cron framework's REST API (docs/cron.md "REST API"), served on its own port and proxied by
the master under ``/frameworks/cron/``.

A thin shell, as the batch API: it parses the request, calls a command (:mod:`.commands`, through
``run`` so its effects — the store's Persist first — are executed before the answer is written:
a 201 means the schedule is stored) or a read (:mod:`.views`), and writes JSON. Refusals are
``{"error", "reason", "field"}`` with a message saying what to do instead. Schedule ids are DNS
labels (no ``/``), so routes are read from the left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tepui.frameworks.cron import commands, views
from tepui.frameworks.cron.core import CronCore
from tepui.frameworks.cron.definition import ScheduleDef, definition_of
from tepui.frameworks.cron.spec import SpecError, parse_schedule
from tepui.sdk.event_stream import EventHub
from tepui.sdk.framework_api import VersionedApi, body_format, json_answer, query_arg
from tepui.sdk.framework_effects import CommandError

Run = Callable[..., dict[str, Any]]  # run(command, *args): executes its effects, returns the answer

ACTIONS = ("suspend", "resume", "trigger")
READS = ("next", "fires")
DOCS = "see docs/cron.md, 'REST API'"


class CronApi(VersionedApi):
    """``/v1/...``: every route, one leaf. ``batch()``: how the batch API answered last
    (``reachable`` or ``unreachable: why``)."""

    docs = DOCS

    def __init__(self, core: CronCore, run: Run, hub: EventHub, now: Callable[[], float],
                 subscribed: Callable[[], dict[str, Any]], batch: Callable[[], str]) -> None:
        super().__init__()
        self.core, self.run, self.hub, self.now, self.subscribed, self.batch = core, run, hub, now, subscribed, batch

    def _route(self, request: Any, method: str, parts: list[str]) -> Any:
        head, rest = (parts[0], parts[1:]) if parts else ("", [])
        if head == "health" and not rest:
            self._allow(method, "GET")
            return json_answer(request, 200, {"ok": True, "subscribed": False, "framework_id": None,
                                              **self.subscribed(), "batch": self.batch()})
        if head == "events" and not rest:
            self._allow(method, "GET")
            return self.hub.attach(request)
        if head == "schedules":
            return self._schedules(request, method, rest)
        raise CommandError(404, "NOT_FOUND", f"no route {request.path.decode()!r}: the routes are /v1/health, "
                           f"/v1/schedules, /v1/schedules/ID[/next|fires|suspend|resume|trigger], /v1/events ({DOCS})")

    # --- schedules ----------------------------------------------------------------------------

    def _schedules(self, request: Any, method: str, parts: list[str]) -> Any:
        if not parts:
            self._allow(method, "GET", "POST")
            if method == "GET":
                return json_answer(request, 200, {"schedules": [views.summary_view(self.core, e)
                                                          for _, e in sorted(self.core.schedules.items())]})
            answer = self.run(commands.create, self._definition(request), self.now())
            return json_answer(request, 201, {"schedule": self._summary(answer["schedule"]["id"])})
        if len(parts) > 2:
            raise CommandError(404, "NOT_FOUND", f"no route {request.path.decode()!r}: a schedule's routes are "
                               f"/v1/schedules/ID and /v1/schedules/ID/{{{'|'.join(READS + ACTIONS)}}} ({DOCS})")
        schedule_id = parts[0]
        if len(parts) == 1:
            self._allow(method, "GET", "PUT", "DELETE")
            if method == "PUT":
                definition = self._definition(request)
                if definition.id != schedule_id:
                    raise CommandError(422, "INVALID_SPEC", f"id: the body's id {definition.id!r} is not the URL's "
                                       f"{schedule_id!r}; PUT /v1/schedules/{definition.id}", "id")
                answer = self.run(commands.apply, definition, self.now())
                created = bool(answer["created"])
                return json_answer(request, 201 if created else 200,
                                   {"schedule": self._summary(schedule_id), "created": created})
            entry = commands.entry_of(self.core, schedule_id)
            if method == "GET":
                return json_answer(request, 200, {"schedule": views.schedule_view(self.core, entry)})
            return json_answer(request, 200, self.run(commands.rm, schedule_id, self.now()))
        action = parts[1]
        entry = commands.entry_of(self.core, schedule_id)
        if action in READS:
            self._allow(method, "GET")
            if action == "next":
                n = views.parse_n(query_arg(request, "n"))
                return json_answer(request, 200, {"next": views.next_view(entry, self.now(), n)})
            return json_answer(request, 200, {"fires": views.fires_view(self.core, entry)})
        if action in ACTIONS:
            self._allow(method, "POST")
            if action == "trigger":
                answer = self.run(commands.trigger, schedule_id, self.now())
                created = bool(answer["created"])
                return json_answer(request, 201 if created else 200, {
                    "schedule": self._summary(schedule_id), "fire": answer["fire"], "created": created})
            self.run(commands.suspend if action == "suspend" else commands.resume, schedule_id, self.now())
            return json_answer(request, 200, {"schedule": self._summary(schedule_id)})
        raise CommandError(404, "NOT_FOUND", f"a schedule has no {action!r}: use one of {', '.join(READS + ACTIONS)} "
                           f"(/v1/schedules/{schedule_id}/ACTION, {DOCS})")

    def _summary(self, schedule_id: str) -> dict[str, Any]:
        """The schedule as it is after a command."""
        return views.summary_view(self.core, commands.entry_of(self.core, schedule_id))

    def _definition(self, request: Any) -> ScheduleDef:
        raw = request.content.read() if request.content is not None else b""
        content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
        try:
            return definition_of(parse_schedule(raw, body_format(content_type)))
        except SpecError as exc:
            raise CommandError(422, "INVALID_SPEC", str(exc), exc.field) from None
