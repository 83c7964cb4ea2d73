"""Several envelopes in one frame (tepui.sdk.batch) and their decoding (Codec.envelopes)."""

from __future__ import annotations

import msgpack
import msgspec
import pytest

from tepui.sdk.batch import MAX_ENVELOPES, BatchError, Outbox, pack, split
from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.envelope import MasterInbound

CODEC: Codec = Codec(MasterInbound)


def pong(seq: int) -> bytes:
    return CODEC.encode(envelope(am.Pong(seq), seq))


@pytest.mark.parametrize("count", [2, 15, 16, 65535, 65536])
def test_pack_is_a_plain_messagepack_array_of_the_envelopes_in_order(count: int) -> None:
    payloads = [msgspec.msgpack.encode({"n": i}) for i in range(count)]
    frame = pack(payloads)
    # Any MessagePack library reads it: the batch is an ordinary array of maps.
    assert msgpack.unpackb(frame) == [{"n": i} for i in range(count)]
    assert [bytes(part) for part in split(frame, max_envelopes=count)] == payloads


def test_one_payload_is_sent_as_it_is_and_a_map_is_one_envelope() -> None:
    payload = pong(1)
    assert pack([payload]) == payload
    assert split(payload) == [payload]


def test_codec_envelopes_decodes_each_element_and_names_the_bad_ones() -> None:
    frame = pack([pong(1), msgspec.msgpack.encode({"v": 1, "id": 2, "body": {"type": "NOPE"}}), pong(3)])
    got = CODEC.envelopes(frame)
    assert [env.body for env in got if not isinstance(env, ProtocolError)] == [am.Pong(1), am.Pong(3)]
    bad = got[1]
    assert isinstance(bad, ProtocolError)
    assert "envelope 1 of a batch of 3" in str(bad) and "NOPE" in str(bad)


def test_a_single_envelope_decodes_as_before() -> None:
    got = CODEC.envelopes(pong(7))
    assert len(got) == 1 and not isinstance(got[0], ProtocolError) and got[0].body == am.Pong(7)


@pytest.mark.parametrize("frame, words", [
    (b"", "empty message"),
    (b"\x90", "empty batch"),
    (b"\x93\x01", "malformed batch"),
    (b"\xdd" + (MAX_ENVELOPES + 1).to_bytes(4, "big"), f"limit of {MAX_ENVELOPES}"),
    (b"\x91" * 100_000 + b"\xc0", "recursion depth"),
])
def test_bad_batches_are_refused_with_a_reason(frame: bytes, words: str) -> None:
    with pytest.raises(BatchError, match=words):
        split(frame)
    got = CODEC.envelopes(frame)
    assert len(got) == 1 and isinstance(got[0], ProtocolError) and words in str(got[0])


def test_a_batch_over_the_byte_ceiling_is_refused_before_splitting() -> None:
    small: Codec = Codec(MasterInbound, max_bytes=100)
    got = small.envelopes(pack([pong(i) for i in range(20)]))
    assert len(got) == 1 and "exceeds the 100-byte limit" in str(got[0])


def test_outbox_keeps_order_per_peer_and_peers_in_first_send_order() -> None:
    box: Outbox[str] = Outbox(max_bytes=1 << 20)
    for i, peer in enumerate(["b", "a", "b", "c", "a", "b"]):
        box.add(peer, pong(i))
    assert len(box) == 6
    frames = box.take()
    assert [(peer, count) for peer, _, count in frames] == [("b", 3), ("a", 2), ("c", 1)]
    decoded = {peer: [env.body.seq for env in CODEC.envelopes(frame)] for peer, frame, _ in frames}
    assert decoded == {"b": [0, 2, 5], "a": [1, 4], "c": [3]}
    assert len(box) == 0 and box.take() == []


def test_outbox_splits_at_the_byte_ceiling_and_the_envelope_limit() -> None:
    payloads = [pong(i) for i in range(100)]
    size = len(payloads[0])
    box: Outbox[str] = Outbox(max_bytes=10 * size + 5, max_envelopes=7)
    for payload in payloads:
        box.add("p", payload)
    frames = box.take()
    assert all(count <= 7 and len(frame) <= 10 * size + 5 for _, frame, count in frames)
    assert [env.body.seq for _, frame, _ in frames for env in CODEC.envelopes(frame)] == list(range(100))
    tight: Outbox[str] = Outbox(max_bytes=3 * size + 5)
    for payload in payloads[:9]:
        tight.add("p", payload)
    assert [count for _, _, count in tight.take()] == [3, 3, 3]


def test_outbox_sends_an_oversized_envelope_alone() -> None:
    box: Outbox[str] = Outbox(max_bytes=50)
    big, small = b"\x81\xa1x\xda" + (200).to_bytes(2, "big") + b"y" * 200, pong(1)
    for payload in (small, big, small):
        box.add("p", payload)
    assert [count for _, _, count in box.take()] == [1, 1, 1]
