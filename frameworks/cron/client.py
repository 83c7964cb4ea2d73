"""A small Python client for the cron framework's REST API, for notebooks and scripts::

    from tepui.frameworks.cron.client import CronClient

    cron = CronClient()                                   # the cluster `tepui up` wrote the config for
    schedule = cron.apply("examples/cron/nightly-report.yaml")   # create, or replace the spec
    for fire in cron.next("nightly-report", 5):
        print(fire.local, fire.utc)                       # 2026-03-29T03:00:00+02:00 2026-03-29T01:00:00Z
    print(cron.get("nightly-report").last_run)            # the last ended run: its key, state, when

It talks to ``MASTER/frameworks/cron/v1/...`` (docs/cron.md "CLI and API"): the master proxies
that prefix to the framework, so only the master's HTTP address is needed, found as every
``tepui`` command finds it (``master=``, else ``$TEPUI_MASTER_HTTP``, else ``master_http`` in
the client configuration ``tepui up`` writes, else 127.0.0.1:5080), with the same bearer token
(``$TEPUI_HTTP_TOKEN``, else ``http_token``) and private CA for ``https://`` (``$TEPUI_HTTP_CA``,
else ``http_ca``). Every failure is a :class:`CronError` whose message says what to do.

Why urllib and not ``tepui.cli.http_client`` (as the batch client): frameworks import only
``tepui.sdk``, and a script should not need click and rich. ``tepui cron`` calls this.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, TypeAlias

from tepui.frameworks.cron.client_values import CronError, Fire, NextFire, Schedule
from tepui.sdk.api_refusals import framework_missing, token_refused
from tepui.sdk.framework_client import FrameworkClient, is_json, quote, spec_text
from tepui.sdk.spec_documents import SpecError, decode_spec

__all__ = ["CronClient", "CronError", "Fire", "NextFire", "Schedule"]

FRAMEWORK = "cron"
Spec = str | os.PathLike[str] | Mapping[str, Any]
# Aliases: inside the class ``list`` is the method, not the builtin.
Schedules: TypeAlias = list[Schedule]
NextFires: TypeAlias = list[NextFire]
Fires: TypeAlias = list[Fire]
Keys: TypeAlias = list[str]

#: What a refusal's reason tells the user to do next (the API's sentence says what is wrong).
HINTS = {
    "SCHEDULE_EXISTS": "`tepui cron apply FILE` replaces its spec; `tepui cron show ID` shows the current one.",
    "INVALID_SPEC": "Fix that field of the schedule (docs/cron.md, 'Schedule spec') and try again.",
}


class CronClient(FrameworkClient):
    """The cron framework's ``/v1`` through the master. ``master``: HOST:PORT or a URL;
    ``token``/``ca``: override the configuration's; ``user``: sent as ``X-Tepui-User`` (default
    ``$TEPUI_USER``, else the login name); ``timeout``: seconds one call may take (longer than the
    master proxy's 30 s, so its 504 comes first)."""

    def __init__(self, master: str | None = None, *, token: str | None = None, ca: str | None = None,
                 user: str | None = None, timeout: float = 35.0) -> None:
        super().__init__(FRAMEWORK, master, token=token, ca=ca, user=user, timeout=timeout)

    # --- schedules --------------------------------------------------------------------------

    def create(self, spec: Spec) -> Schedule:
        """Creates a schedule from a dict, a path to a YAML/JSON file, or the document's text;
        refused (``SCHEDULE_EXISTS``) when its id is taken — :meth:`apply` replaces."""
        data, content_type, _ = _document(spec)
        return self._schedule(self._call("POST", "/schedules", data=data, content_type=content_type))

    def apply(self, spec: Spec) -> Schedule:
        """Creates the schedule, or replaces the spec of the one with its id (``kubectl apply``).
        ``.data["created"]`` says which."""
        data, content_type, schedule_id = _document(spec)
        answer = self._call("PUT", f"/schedules/{quote(schedule_id)}", data=data, content_type=content_type)
        schedule = answer.get("schedule")
        return Schedule.from_dict({**(schedule if isinstance(schedule, Mapping) else {}),
                                   "created": bool(answer.get("created"))})

    def list(self) -> Schedules:
        return [Schedule.from_dict(s) for s in self._call("GET", "/schedules").get("schedules") or []
                if isinstance(s, Mapping)]

    def get(self, schedule_id: str) -> Schedule:
        """The schedule with its whole ``spec``."""
        return self._schedule(self._call("GET", f"/schedules/{quote(schedule_id)}"))

    def next(self, schedule_id: str, n: int = 10) -> NextFires:
        """The next ``n`` (1 to 1000) fire times, in the schedule's zone and in UTC."""
        answer = self._call("GET", f"/schedules/{quote(schedule_id)}/next", query={"n": str(n)})
        return [NextFire.from_dict(f) for f in answer.get("next") or [] if isinstance(f, Mapping)]

    def fires(self, schedule_id: str) -> Fires:
        """The kept fire records and the ones in flight, newest first."""
        answer = self._call("GET", f"/schedules/{quote(schedule_id)}/fires")
        return [Fire.from_dict(f) for f in answer.get("fires") or [] if isinstance(f, Mapping)]

    def suspend(self, schedule_id: str) -> Schedule:
        """No fires until :meth:`resume`; running jobs go on."""
        return self._schedule(self._post(schedule_id, "suspend"))

    def resume(self, schedule_id: str) -> Schedule:
        """Fires again; those that fell in the suspension are one MISSED record, never a burst."""
        return self._schedule(self._post(schedule_id, "resume"))

    def trigger(self, schedule_id: str) -> Fire:
        """Runs the job now, outside the schedule (key ``<id>_manual_<unix>``)."""
        fire = self._post(schedule_id, "trigger").get("fire")
        return Fire.from_dict(fire if isinstance(fire, Mapping) else {})

    def rm(self, schedule_id: str) -> Keys:
        """Forgets the schedule and its records; returns the jobs still running, which go on in
        the batch framework (``tepui jobs cancel`` them)."""
        answer = self._call("DELETE", f"/schedules/{quote(schedule_id)}")
        return [str(key) for key in answer.get("running") or []]

    def health(self) -> dict[str, Any]:
        """``{"ok", "subscribed", "framework_id", "batch"}``."""
        return dict(self._call("GET", "/health"))

    # --- HTTP -------------------------------------------------------------------------------

    @staticmethod
    def _schedule(answer: Mapping[str, Any]) -> Schedule:
        schedule = answer.get("schedule")
        return Schedule.from_dict(schedule if isinstance(schedule, Mapping) else {})

    def _post(self, schedule_id: str, action: str) -> dict[str, Any]:
        return self._call("POST", f"/schedules/{quote(schedule_id)}/{action}", data=b"{}",
                          content_type="application/json")

    def _call(self, method: str, path: str, *, query: Mapping[str, str] | None = None, data: bytes | None = None,
              content_type: str | None = None) -> dict[str, Any]:
        try:
            status, document = self._exchange(method, path, query, data, content_type)
        except OSError as exc:  # urllib's URLError is one
            raise CronError(f"cannot reach the master's HTTP API at {self.master}: {getattr(exc, 'reason', exc)}.",
                            reason="UNREACHABLE", hint="Is a cluster running? Start one with `tepui up` (it starts "
                            "the cron framework too), or give the master's address (--http HOST:PORT, "
                            "CronClient(master=...), $TEPUI_MASTER_HTTP).") from None
        if 200 <= status < 300:
            return document
        raise self._refused(status, document, method, path)

    def _refused(self, status: int, document: Mapping[str, Any], method: str, path: str) -> CronError:
        reason, message, field = (_text(document.get(name)) for name in ("reason", "error", "field"))
        if status == 401 or reason == "UNKNOWN_FRAMEWORK":
            sentence, next_step = (token_refused(self.token, message) if status == 401 else
                                   framework_missing(self.master, FRAMEWORK, "tepui cron serve"))
            return CronError(sentence, status=status, reason=reason, hint=next_step)
        if message:
            hint = HINTS.get(reason or "")
            if reason is not None and reason.startswith(("FRAMEWORK_", "RELAY_")):
                hint = "Is `tepui cron serve` running and healthy? Its log says why; try again when it is."
            return CronError(message, status=status, reason=reason, field=field, hint=hint)
        return CronError(f"the master at {self.master} answered HTTP {status} to {method} "
                         f"/frameworks/{FRAMEWORK}/v1{path} without saying why.", status=status, reason=reason,
                         hint="Is the cron framework running (`tepui cron serve`)? Its log says more.")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)




def _document(spec: Spec) -> tuple[bytes, str, str]:
    """The request body, its type and the schedule's id, for a spec given as data, a path or the
    document's text. The id is read here because ``apply`` puts it in the URL; everything else
    is the API's to validate (its 422 names the field)."""
    if isinstance(spec, Mapping):
        data: object = spec
        body, content_type = json.dumps(spec).encode(), "application/json"
    else:
        try:
            text, path = spec_text(spec)
        except (OSError, UnicodeDecodeError) as exc:
            raise CronError(f"cannot read {spec}: {getattr(exc, 'strerror', None) or exc}.",
                            reason="UNREADABLE_SPEC", hint="Check the path, or pass the schedule as a dict or "
                            "as the document's text.") from None
        json_text = is_json(text, path)
        try:
            data = decode_spec(text, "json" if json_text else "yaml")
        except SpecError as exc:
            raise CronError(f"{path or 'the schedule'}: {exc.message}.", reason="INVALID_SPEC", field=exc.field,
                            hint=HINTS["INVALID_SPEC"]) from None
        body, content_type = text.encode(), "application/json" if json_text else "application/yaml"
    schedule_id = data.get("id") if isinstance(data, Mapping) else None
    if not isinstance(schedule_id, str) or not schedule_id:
        raise CronError("a schedule needs an id (a DNS label such as nightly-report).", reason="INVALID_SPEC",
                        field="id", hint=HINTS["INVALID_SPEC"])
    return body, content_type, schedule_id
