"""One rule for ids, wherever they appear (task, executor, framework, agent, volume ids):
imported by every check that reads one, so the rule cannot drift between them. Its own module
so that :mod:`~tepui.master.admission.validation` and
:mod:`~tepui.master.admission.task_checks` both use it without importing each other (they
used to, through a local import that broke the cycle).
"""

from __future__ import annotations

MAX_ID_LENGTH = 255


def validate_id(kind: str, value: str) -> str | None:
    """Ids become path components in sandboxes, so they are restricted accordingly."""
    if not value:
        return f"{kind} must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{kind} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
    if value in (".", ".."):
        return f"{kind} {value!r} is not allowed"
    if "/" in value or "\\" in value:
        return f"{kind} {value!r} must not contain '/' or '\\'"
    if value.isprintable() and " " not in value:
        # Every whitespace and control character is "not printable" (Unicode Other or
        # Separator; the space is the one printable exception): the common case in C.
        return None
    if any(ord(c) < 32 or 127 <= ord(c) < 160 or c.isspace() for c in value):  # C0, DEL, C1
        return f"{kind} {value!r} must not contain whitespace or control characters"
    return None
