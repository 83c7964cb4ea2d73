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

from typing import Any, Generic, TypeVar

import msgspec

from tepui.sdk.batch import BatchError, split
from tepui.sdk.protocol.envelope import PROTOCOL_VERSION, Envelope

DEFAULT_MAX_BYTES = 4 * 1024 * 1024

B = TypeVar("B")


class ProtocolError(ValueError):
    """Bytes that are not a valid message for this endpoint; the text says what and where."""


class Codec(Generic[B]):
    """Encodes any envelope; decodes envelopes whose body is one of ``body_type``'s members."""

    def __init__(self, body_type: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._decoder = msgspec.msgpack.Decoder(Envelope[body_type])  # type: ignore[valid-type]
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
            raise ProtocolError(f"invalid message: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed MessagePack: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"malformed MessagePack: a string is not valid UTF-8 ({exc.reason})") from None
        except RecursionError:
            raise ProtocolError("message rejected: nested too deeply before any typed field") from None
        except MemoryError:
            raise ProtocolError("message rejected: too large to decode") from None
        if envelope.v != PROTOCOL_VERSION:
            raise ProtocolError(
                f"unsupported protocol version {envelope.v} at `$.v` (this side speaks {PROTOCOL_VERSION})"
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
                return [self.decode(parts[0])]  # type: ignore[arg-type]
            except ProtocolError as exc:
                return [exc]
        out: list[Envelope[B] | ProtocolError] = []
        for index, part in enumerate(parts):
            try:
                out.append(self.decode(part))  # type: ignore[arg-type]
            except ProtocolError as exc:
                out.append(ProtocolError(f"envelope {index} of a batch of {len(parts)}: {exc}"))
        return out


def envelope(body: Any, msg_id: int, epoch: int = 0, incarnation: str | None = None) -> Envelope[Any]:
    """Wraps a message body for sending."""
    return Envelope(v=PROTOCOL_VERSION, id=msg_id, body=body, epoch=epoch, incarnation=incarnation)
