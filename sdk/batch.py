"""Batches: several envelopes in one ZeroMQ frame.

Why: under load every process here was spending most of its time in ZeroMQ sends, not in its
own logic. A Python ``send`` costs 15–20 µs whatever its size, plus a ``getsockopt(EVENTS)``
after it; a launch moves about seven messages through the master (RUN_TASK, three status
updates forwarded, three acknowledgements), so sends alone capped one core at a few thousand
launches a second (docs/performance.md, issue 8). Messages to the same peer that are produced
in the same turn of the event loop now leave as one frame.

The format stays plain MessagePack (docs/protocol.md "Frames"): a frame is either one envelope
(a map, as before) or an **array of envelopes**, which the receiver handles in order exactly as
if each had arrived in its own frame. A peer written in another language that never batches
keeps working; it only has to accept an array where it expected a map. Each element is decoded
and validated on its own, so one bad envelope is counted and answered like a bad frame, and its
neighbours are still handled. Limits stay part of decoding: the frame's byte ceiling is checked
first (by the codec and the socket's ``MAXMSGSIZE``), and a frame holds at most
:data:`MAX_ENVELOPES` envelopes, read from the array header before anything is decoded.
"""

from __future__ import annotations

from typing import Generic, Hashable, Sequence, TypeVar

import msgspec

MAX_ENVELOPES = 10_000
_ARRAY_HEADER_MAX = 5  # 0xdd + a 32-bit count

K = TypeVar("K", bound=Hashable)


class BatchError(ValueError):
    """A frame that claims to be a batch but is not a valid one; the text says why."""


def pack(payloads: Sequence[bytes]) -> bytes:
    """One frame for ``payloads`` (each an encoded envelope): the payload itself when there is
    one, else a MessagePack array of them (its header followed by the payloads as they are)."""
    count = len(payloads)
    if count == 1:
        return payloads[0]
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 0x10000:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(payloads)


_RAW_LIST = msgspec.msgpack.Decoder(list[msgspec.Raw])


def split(data: bytes | memoryview, max_envelopes: int = MAX_ENVELOPES) -> list[bytes | memoryview | msgspec.Raw]:
    """The envelopes of one frame, still encoded, in order: ``[data]`` for a single envelope
    (anything that is not an array is left for the codec to judge), the elements of an array.
    Raises :class:`BatchError` for an empty frame, an array of more than ``max_envelopes``
    elements, or an array that is not valid MessagePack."""
    if len(data) == 0:
        raise BatchError("empty message: expected a MessagePack map (one envelope) or an array of them")
    first = data[0]
    if 0x90 <= first <= 0x9F:
        count = first & 0x0F
    elif first == 0xDC:
        count = int.from_bytes(bytes(data[1:3]), "big")
    elif first == 0xDD:
        count = int.from_bytes(bytes(data[1:5]), "big")
    else:
        return [data]
    if count > max_envelopes:
        raise BatchError(f"a batch of {count} envelopes exceeds the limit of {max_envelopes} per message")
    if count == 0:
        raise BatchError("empty batch: an array must hold at least one envelope")
    try:
        return list(_RAW_LIST.decode(data))
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BatchError(f"malformed batch: {exc}") from None


class Outbox(Generic[K]):
    """Encoded envelopes waiting for the end of the current turn, per peer and in order; a
    transport drains it with :meth:`take` into as few frames as the limits allow."""

    __slots__ = ("max_bytes", "max_envelopes", "_queued", "_count")

    def __init__(self, max_bytes: int, max_envelopes: int = MAX_ENVELOPES) -> None:
        self.max_bytes = max_bytes
        self.max_envelopes = max_envelopes
        self._queued: dict[K, list[bytes]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, peer: K, payload: bytes) -> None:
        queued = self._queued.get(peer)
        if queued is None:
            self._queued[peer] = [payload]
        else:
            queued.append(payload)
        self._count += 1

    def take(self) -> list[tuple[K, bytes, int]]:
        """Everything queued, as ``(peer, frame, envelopes in it)``: peers in the order they
        were first sent to, each peer's envelopes in order, split so that no frame passes
        ``max_bytes`` or ``max_envelopes`` (an envelope too large on its own still goes alone:
        the codec refused it at encoding if it was over the limit)."""
        frames: list[tuple[K, bytes, int]] = []
        limit = self.max_bytes - _ARRAY_HEADER_MAX
        for peer, payloads in self._queued.items():
            if len(payloads) == 1:
                frames.append((peer, payloads[0], 1))
                continue
            start, size = 0, 0
            for index, payload in enumerate(payloads):
                if index > start and (size + len(payload) > limit or index - start >= self.max_envelopes):
                    frames.append((peer, pack(payloads[start:index]), index - start))
                    start, size = index, 0
                size += len(payload)
            frames.append((peer, pack(payloads[start:]), len(payloads) - start))
        self._queued = {}
        self._count = 0
        return frames
