"""MessagePack codec with limits (DESIGN §4).

Limits are part of decoding, so no caller can forget them:

* a byte ceiling, checked before any parsing (and mirrored by the socket's ``MAXMSGSIZE``);
* one frame per message (the transport refuses multi-frame payloads before they get here);
* bounded nesting: the schema is fully typed and has no recursive type, so every container
  sits at a depth the schema fixes; deeper input inside a typed field fails at the first place
  where the schema expects something else. Input nested before msgspec knows what to expect
  (e.g. while looking for the ``type`` tag) meets msgspec's recursion guard, which we report as
  a ProtocolError too.

Every failure is one :class:`ProtocolError` whose message names the offending field
(``Expected `str`, got `int` - at `$.body.framework_info.name```). Decoding never raises
anything else for bad bytes.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Generic, TypeVar

import msgspec

from tepui.sdk.batch import BatchError, split
from tepui.sdk.protocol.envelope import MAX_CALL_ID, PROTOCOL_VERSION, Envelope

DEFAULT_MAX_BYTES = 4 * 1024 * 1024

B = TypeVar("B")


class ProtocolError(ValueError):
    """Bytes that are not a valid message for this endpoint; the text says what and where.

    ``field`` is the JSON path the decoder blamed (``$.body.filters.refuse_seconds``), and
    ``call_id`` and ``call_type`` the envelope's ``call_id`` and the body's ``type`` when they
    could still be read: the receiver's ERROR echoes them, so a client learns which of its calls
    failed even when the call could not be decoded."""

    def __init__(self, message: str, *, field: str | None = None, call_id: str | None = None,
                 call_type: str | None = None) -> None:
        super().__init__(_cut(message, ERROR_TEXT_LIMIT))
        self.field = None if field is None else _cut(field, FIELD_LIMIT)
        self.call_id = call_id
        self.call_type = None if call_type is None else _cut(call_type, FIELD_LIMIT)


ERROR_TEXT_LIMIT = 2048
"""Characters of a decoding error kept: the decoder quotes the bad value (``Invalid value
'<the client's 3 MB type>'``), and the text goes back to the sender in an ERROR and into the
log — a megabyte value must not come back as a megabyte ERROR (issue 15)."""
FIELD_LIMIT = 256  # a path may hold a client's map key; a type is the client's string


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class _Readable(msgspec.Struct):
    """What a lenient second look at an undecodable envelope may still recover."""

    call_id: Any = None
    body: msgspec.Raw = msgspec.Raw(b"\xc0")  # nil when absent


class _Tag(msgspec.Struct):
    type: Any = None


_READABLE = msgspec.msgpack.Decoder(_Readable)
_TAG = msgspec.msgpack.Decoder(_Tag)
_AT = re.compile(r" - at `(\$[^`]*)`$")
# "Object contains unknown field `x` - at `$.body`": the field at fault is `$.body.x`.
_NAMED = re.compile(r"Object (?:contains unknown|missing required) field `([A-Za-z_][A-Za-z0-9_]*)`")


def _explained(message: str, data: bytes | memoryview) -> ProtocolError:
    """A ProtocolError for ``data`` with whatever can be told about the failed call: the field
    the decoder named, and the envelope's ``call_id`` and body ``type`` read leniently (only
    when they are well-formed: a ``call_id`` over its bound is the fault, not an id to echo)."""
    field = error_field(message)
    readable = _lenient(_READABLE, data)
    call_id = readable.call_id if readable is not None and _short_str(readable.call_id) else None
    tag = _lenient(_TAG, readable.body) if readable is not None else None
    call_type = tag.type if tag is not None and _short_str(tag.type) else None
    return ProtocolError(message, field=field, call_id=call_id, call_type=call_type)


def error_field(message: str) -> str | None:
    """The JSON path of the field a decoder's message blames (``$.body.offer_ids[0]``), down to
    the field itself when an object misses it or has it unknown; None when none is named."""
    at, named = _AT.search(message), _NAMED.search(message)
    field = at.group(1) if at else "$" if named else None
    if field is not None and named is not None:
        field += f".{named.group(1)}"
    return field


def rooted(message: str, root: str) -> str:
    """A decoder's message about a part decoded on its own (paths from its ``$``), with its
    paths from ``root`` instead — where the part sits in the whole message."""
    if _AT.search(message) is None:
        return f"{message} - at `{root}`"
    return message.replace(" - at `$", f" - at `{root}")


def _lenient(decoder: Any, data: Any) -> Any:
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError, MemoryError):
        return None  # not even a map with readable fields: nothing to echo


def _short_str(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_CALL_ID


class Codec(Generic[B]):
    """Encodes any envelope; decodes envelopes whose body is one of ``body_type``'s members."""

    def __init__(self, body_type: Any, max_bytes: int = DEFAULT_MAX_BYTES,
                 salvage: Callable[[bytes | memoryview, ProtocolError], Envelope[Any] | None] | None = None) -> None:
        """``salvage`` is asked for what can still be done with a message that fails validation
        (the master's: an ACCEPT with one invalid task launches the others); None: nothing."""
        self.max_bytes = max_bytes
        self._salvage = salvage
        self._decoder = msgspec.msgpack.Decoder(Envelope[body_type])
        self._encoder = msgspec.msgpack.Encoder()

    def encode(self, envelope: Envelope[Any]) -> bytes:
        data = self._encoder.encode(envelope)
        if len(data) > self.max_bytes:
            raise ProtocolError(
                f"message of {len(data)} bytes exceeds the {self.max_bytes}-byte limit "
                f"({type(envelope.body).__name__}); split it or raise the limit"
            )
        return data

    def decode(self, data: bytes | memoryview) -> Envelope[B]:
        if len(data) > self.max_bytes:
            raise ProtocolError(f"message of {len(data)} bytes exceeds the {self.max_bytes}-byte limit")
        try:
            envelope = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            error = _explained(f"invalid message: {exc}", data)
            salvaged = self._salvage(data, error) if self._salvage is not None else None
            if salvaged is None:
                raise error from None
            return salvaged
        except msgspec.DecodeError as exc:
            raise _explained(f"malformed MessagePack: {exc}", data) from None
        except UnicodeDecodeError as exc:
            raise _explained(f"malformed MessagePack: a string is not valid UTF-8 ({exc.reason})", data) from None
        except RecursionError:
            raise ProtocolError("message rejected: nested too deeply before any typed field") from None
        except MemoryError:
            raise ProtocolError("message rejected: too large to decode") from None
        if envelope.v != PROTOCOL_VERSION:
            raise ProtocolError(
                f"unsupported protocol version {envelope.v} at `$.v` (this side speaks {PROTOCOL_VERSION})",
                field="$.v", call_id=envelope.call_id, call_type=_type_of(envelope.body),
            )
        return envelope

    def envelopes(self, data: bytes | memoryview) -> list[Envelope[B] | ProtocolError]:
        """Every envelope of one frame — a single envelope, or a batch (:mod:`tepui.sdk.batch`)
        — each decoded on its own, in order; a bad one is its :class:`ProtocolError` in its place,
        so that the caller counts and answers it and still handles the others."""
        if len(data) > self.max_bytes:
            return [ProtocolError(f"message of {len(data)} bytes exceeds the {self.max_bytes}-byte limit")]
        try:
            parts = split(data)
        except BatchError as exc:
            return [ProtocolError(str(exc))]
        if len(parts) == 1:
            try:
                return [self.decode(parts[0])]
            except ProtocolError as exc:
                return [exc]
        out: list[Envelope[B] | ProtocolError] = []
        for index, part in enumerate(parts):
            try:
                out.append(self.decode(part))
            except ProtocolError as exc:
                out.append(ProtocolError(f"envelope {index} of a batch of {len(parts)}: {exc}", field=exc.field,
                                         call_id=exc.call_id, call_type=exc.call_type))
        return out


def envelope(body: Any, msg_id: int, epoch: int = 0, incarnation: str | None = None,
             call_id: str | None = None) -> Envelope[Any]:
    """Wraps a message body for sending."""
    return Envelope(v=PROTOCOL_VERSION, id=msg_id, body=body, epoch=epoch, incarnation=incarnation, call_id=call_id)


def _type_of(body: Any) -> str | None:
    tag = type(body).__struct_config__.tag if isinstance(body, msgspec.Struct) else None
    return tag if isinstance(tag, str) else None
