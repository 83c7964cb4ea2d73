"""Checks of what a framework says about itself (``FrameworkInfo`` on SUBSCRIBE and
UPDATE_FRAMEWORK), and of the framework ids a client may claim (issue 15, bugs 1-3 and 5).

Why bounds here: every field of a FrameworkInfo is the client's choice, and the master keeps it
(memory, the registry), shows it (``/state``, logs) and repeats it (to an agent in every
RUN_TASK, into the agent's checkpoint). A 3 MB name became a 3 MB log line, 3 MB of ``/state``
per framework (50 completed frameworks are kept), and an id over the registry's 1,024-character
key limit failed the registry write after the framework was already in memory. So every string
is bounded, and ids and names that reach paths or log lines carry no control characters.

Why not msgspec ``Meta`` constraints on the Struct: FrameworkInfo is also read back from the
master's registry and from agents' checkpoints, which an older master may have filled with a
value a constraint would now refuse; a constraint would make that registry or checkpoint
unreadable (the master or agent would not start) instead of refusing one call.

Each check returns ``None`` or a :data:`Problem`: the JSON path of the field at fault, as the
decoder names fields (``$.body.framework_info.name``), and one sentence saying what is wrong and
what to do — the ``field`` and ``message`` of the ERROR that refuses the call.
"""

from __future__ import annotations

import math
import re

from tepui.master.admission.refusals import shown
from tepui.master.admission.ids import validate_id
from tepui.master.admission.validation import roles_problem
from tepui.sdk.effects import CONTROL
from tepui.sdk.protocol.values import FrameworkInfo

Problem = tuple[str, str]  # (field, message)

MAX_NAME = 1024
MAX_TOKEN = 255  # user, hostname, principal: one word each
MAX_URL = 2048
MAX_ROLES = 128
MAX_CAPABILITIES = 32
MAX_LABELS = 32
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 1024
# Ten years: any real framework's "forever"; Mesos refuses what overflows its Duration (~292 years).
MAX_FAILOVER_TIMEOUT = 10 * 365 * 86400.0

INFO = "$.body.framework_info"
_CAPABILITY = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


def text_problem(field: str, value: str, limit: int, *, spaces: bool = True) -> str | None:
    """``value`` at most ``limit`` characters, without control characters (nor whitespace
    unless ``spaces``)."""
    if len(value) > limit:
        return f"{field} is {len(value)} characters long; the limit is {limit}"
    if CONTROL.search(value):
        return f"{field} {shown(value)} must not contain control characters"
    if not spaces and any(c.isspace() for c in value):
        return f"{field} {shown(value)} must not contain whitespace"
    return None


def framework_id_problem(framework_id: str) -> Problem | None:
    """A framework id becomes a path component (agents' sandboxes) and a registry key: the
    rules of every id (:func:`tepui.master.admission.ids.validate_id`), at most 255 characters."""
    problem = validate_id("framework_info.id", framework_id)  # quotes it only within 255 characters
    return (f"{INFO}.id", problem) if problem else None


def claimed_id_problem(framework_id: str, master_id: str, durable_registry: bool, removed: bool) -> Problem | None:
    """Whether a SUBSCRIBE may claim ``framework_id``, an id this master does not hold.

    The master issues framework ids (``<master id>-F<n>``, the master id new on every start);
    a client's id is accepted only as a re-subscription to one a master issued (Mesos). This
    master knows what it issued, so an unknown id under its own prefix is refused: claimed, it
    would be handed out again to a newcomer. With a durable registry every framework a
    previous master admitted and did not remove is recovered, so any other unknown id was never
    issued or was removed: refused too (the SDK driver keeps re-subscribing, and an agent that
    re-registers with the framework's tasks makes it known). Without one, the previous master's
    frameworks are accepted under their ids, as Mesos accepts them after a failover — they
    never carry this master's prefix, so none can be issued again."""
    field = f"{INFO}.id"
    if removed:
        # Mesos: a framework removed (torn down, or its failover timeout expired) cannot come
        # back under its old id; its tasks are gone.
        return field, (f"framework {framework_id} was removed (torn down or its failover timeout expired); "
                       "subscribe without an id to start a new framework")
    if framework_id.startswith(master_id + "-"):
        return field, (f"framework id {framework_id!r} was not issued by this master (ids beginning with "
                       f"{master_id + '-'!r} are its own to issue); subscribe without an id to get one")
    if durable_registry:
        return field, (f"framework {framework_id!r} is unknown to this master, whose registry keeps every framework "
                       "it did not remove: the id was never issued, or the framework was removed; subscribe "
                       "without an id to start a new framework")
    return None


def failover_timeout_problem(seconds: float) -> Problem | None:
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_FAILOVER_TIMEOUT:
        return (f"{INFO}.failover_timeout",
                f"framework_info.failover_timeout must be a number of seconds from 0 to {MAX_FAILOVER_TIMEOUT:.0f} "
                f"(ten years), got {seconds!r}")
    return None


def framework_info_problem(info: FrameworkInfo, suppressed_roles: list[str]) -> Problem | None:
    """The first problem of a SUBSCRIBE's or UPDATE_FRAMEWORK's FrameworkInfo, or None."""
    if info.id is not None:
        problem = framework_id_problem(info.id)
        if problem:
            return problem
    texts = (("name", info.name, MAX_NAME, True), ("user", info.user, MAX_TOKEN, False),
             ("hostname", info.hostname, MAX_TOKEN, False), ("principal", info.principal, MAX_TOKEN, False),
             ("webui_url", info.webui_url, MAX_URL, False))
    for name, value, limit, spaces in texts:
        message = text_problem(f"framework_info.{name}", value, limit, spaces=spaces) if value is not None else None
        if message:
            return f"{INFO}.{name}", message
    return (failover_timeout_problem(info.failover_timeout) or _roles_problem(info.roles, suppressed_roles)
            or _capabilities_problem(info.capabilities) or _labels_problem(info.labels))


def _roles_problem(roles: list[str], suppressed_roles: list[str]) -> Problem | None:
    if len(roles) > MAX_ROLES:
        return f"{INFO}.roles", f"framework_info.roles holds {len(roles)} roles; the limit is {MAX_ROLES}"
    for i, role in enumerate(roles):
        message = (f"framework_info.roles[{i}] is {len(role)} characters long; the limit is {MAX_TOKEN}"
                   if len(role) > MAX_TOKEN else roles_problem([role]))
        if message:
            return f"{INFO}.roles[{i}]", message
    # Mesos: suppressed roles must be roles of the framework (otherwise the allocator would
    # keep, per framework, any number of strings that suppress nothing).
    for i, role in enumerate(suppressed_roles):
        if role not in roles:
            return (f"$.body.suppressed_roles[{i}]",
                    f"suppressed role {shown(role)} is not one of framework_info.roles; "
                    "suppress only roles the framework subscribes in")
    return None


def _capabilities_problem(capabilities: list[str]) -> Problem | None:
    if len(capabilities) > MAX_CAPABILITIES:
        return (f"{INFO}.capabilities",
                f"framework_info.capabilities holds {len(capabilities)} entries; the limit is {MAX_CAPABILITIES}")
    for i, capability in enumerate(capabilities):
        if not _CAPABILITY.match(capability):
            return (f"{INFO}.capabilities[{i}]",
                    f"capability {shown(capability)} must be 1 to 64 letters, digits or '_' "
                    "(the Mesos names, e.g. PARTITION_AWARE)")
    return None


def _labels_problem(labels: dict[str, str]) -> Problem | None:
    if len(labels) > MAX_LABELS:
        return f"{INFO}.labels", f"framework_info.labels holds {len(labels)} labels; the limit is {MAX_LABELS}"
    for key, value in labels.items():
        message = (("a framework_info.labels key must not be empty" if not key else None)
                   or text_problem("a framework_info.labels key", key, MAX_LABEL_KEY)
                   or text_problem(f"framework_info.labels[{shown(key)}]", value, MAX_LABEL_VALUE))
        if message:
            return f"{INFO}.labels", message
    return None
