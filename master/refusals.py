"""Which call an ERROR answers (issue 15): every ERROR a scheduler call causes carries the
call's ``type`` and the ``call_id`` its envelope had, so a client that has several calls in
flight tells which one was refused.

Why one stamp after the handler rather than the id threaded into every refusal: ERRORs are
built in a dozen places (the core, offers, admission, identity, validation), and any place
added later would have to remember the id; here none can forget it. A refusal names its
``field`` itself (only it knows which one is at fault). Errors to a different peer than the
caller's, and ones already stamped, are left as they are.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tepui.master.events import Received, Send
from tepui.sdk.protocol import scheduler as sm


def call_type(body: Any) -> str | None:
    """The wire ``type`` of a message (``DECLINE``), None for anything that is not a message."""
    tag = type(body).__struct_config__.tag if isinstance(body, msgspec.Struct) else None
    return tag if isinstance(tag, str) else None


def correlate(event: Received, out: list[Any]) -> None:
    """Stamps ``event``'s call id and type on every ERROR in ``out`` that answers its sender."""
    stamp: dict[str, Any] | None = None
    for index, effect in enumerate(out):
        if type(effect) is Send and type(effect.body) is sm.Error and effect.peer == event.peer \
                and effect.body.call_type is None:
            stamp = stamp or {"call_id": event.call_id, "call_type": call_type(event.body)}
            out[index] = Send(effect.peer, msgspec.structs.replace(effect.body, **stamp))
