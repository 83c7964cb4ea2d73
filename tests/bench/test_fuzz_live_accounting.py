"""The live fuzzer's bookkeeping as pure units (``bench/fuzz.py --live``): which answer belongs
to which hostile call (bench/fuzz_wire.py), and what in a master's log counts as a crash and
which hostile lives were in flight then (bench/fuzz_logs.py). A mistake here would make the
fuzzer report silence where there was an answer, or miss a traceback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> Any:
    """A bench module by its path (bench/ is not a package, and putting it on sys.path for the
    whole session would let its module names shadow others)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> Any:
    class Modules:
        wire, logs = _load("fuzz_wire"), _load("fuzz_logs")

    return Modules


def frame(*bodies: dict[str, Any]) -> bytes:
    envelopes = [{"v": 1, "id": i, "epoch": 7, "body": body} for i, body in enumerate(bodies)]
    return bytes(msgpack.packb(envelopes if len(envelopes) > 1 else envelopes[0], use_bin_type=True))


def test_answers_are_matched_to_their_calls_and_silence_is_left_unanswered(bench: Any) -> None:
    Call, Window = bench.wire.Call, bench.wire.Window
    decline = Call("decline.unknown_offer", "error", "c-1", kind="DECLINE")
    ack = Call("ack.unknown_update", "error", "c-2", kind="ACKNOWLEDGE")
    kill = Call("kill.unknown_task", "reply", "c-3", ("t-x",), kind="KILL")
    bad_subscribe = Call("sub.id_dotdot", "error", "c-4", kind="SUBSCRIBE")
    long_id = Call("envelope.call_id_long", "error", None, kind="EXPLAIN")
    window = Window([decline, ack, kill, bad_subscribe, long_id])
    done, epoch = bench.wire.file_frame(frame(
        {"type": "ERROR", "message": "unknown offer", "call_id": "c-1", "field": "$.body.offer_ids[0]"},
        {"type": "UPDATE", "status": {"task_id": "t-x", "state": "TASK_UNKNOWN"}},
        {"type": "SUBSCRIBED", "framework_id": "m-F0009", "heartbeat_interval_seconds": 15.0,
         "master_info": {"id": "m"}},
        {"type": "ERROR", "message": "call_id too long"},  # no id to echo: the call that could carry none
    ), window, "FUZZ_BARRIER_3", "barrier-3")
    assert (done, epoch) == (False, 7)
    assert decline.replied and decline.echoed and decline.field_named
    assert kill.replied and not kill.echoed
    assert bad_subscribe.replied and bad_subscribe.accepted  # SUBSCRIBED where an ERROR was due
    assert long_id.replied and long_id.error == "call_id too long"
    assert not ack.replied  # nothing answered it: the fuzzer counts it as silent
    done, _ = bench.wire.file_frame(frame({"type": "ERROR", "message": "Invalid value 'FUZZ_BARRIER_3'"}),
                                    window, "FUZZ_BARRIER_3", "barrier-3")
    assert done and not ack.replied
    assert [e["type"] for e in window.events] == ["UPDATE", "SUBSCRIBED"]


def test_a_repeated_call_id_answers_each_call_in_turn_and_old_barriers_are_ignored(bench: Any) -> None:
    Call, Window = bench.wire.Call, bench.wire.Window
    first, second = Call("envelope.call_id_empty", "explanation", ""), Call("envelope.call_id_empty", "explanation", "")
    window = Window([first, second])
    bench.wire.file_frame(frame({"type": "ERROR", "message": "not subscribed", "call_id": ""},
                                {"type": "ERROR", "message": "Invalid value 'FUZZ_BARRIER_2'"},
                                {"type": "ERROR", "message": "not subscribed", "call_id": ""}),
                          window, "FUZZ_BARRIER_3", "barrier-3")
    assert first.replied and second.replied
    assert window.unattributed_errors == []


def test_log_scan_counts_tracebacks_and_errors_once_each_and_forged_lines_apart(bench: Any, tmp_path: Path) -> None:
    log = tmp_path / "master.log"
    log.write_text(
        "2026-12-07 15:01:38,100 INFO master tepui.master event=framework_subscribed framework_id=m-F0001\n"
        "2026-12-07 15:01:38,200 ERROR master tepui.transport event=handler_failed\n"
        "Traceback (most recent call last):\n"
        '  File "/w/master/core.py", line 12, in handle\n'
        "    raise KeyError(key)\n"
        "KeyError: 'x' * 2000\n"
        "2026-12-07 15:01:39,000 WARNING master tepui.master event=malformed_message peer=ab\n"
        "FUZZ-FORGED event=forged level=error\n"
        "2026-12-07 15:01:40,000 ERROR master tepui.transport event=handshake_failed side=server\n"
        "2026-12-07 15:01:41,250 ERROR master tepui.transport event=handler_failed\n"
        "Traceback (most recent call last):\n"
        '  File "/w/master/core.py", line 12, in handle\n'
        "    raise KeyError(key)\n"
        "KeyError: 'y' * 2000\n"
        "2026-12-07 15:01:42,000 ERROR master tepui.master event=registry_failed reason='disk full'\n")
    found = bench.logs.scan({"master": log}, "FUZZ-FORGED")
    assert [c.kind for c in found.crashes] == ["handler_failed", "handler_failed", "error"]
    assert (found.forged, found.expected) == (1, 1)
    categories = found.categories()
    assert sorted(len(v) for v in categories.values()) == [1, 2]  # the same KeyError twice is one category
    journal = tmp_path / "journal-0.txt"
    crash_at = found.crashes[1].at
    journal.write_text(f"{crash_at - 5:.3f} {crash_at - 4:.3f} 111 decline.ok\n"
                       f"{crash_at - 0.01:.3f} {crash_at + 0.01:.3f} 222 sub.id_long\n")
    assert bench.logs.lives_at([journal], crash_at) == ["client 0 life 222 (sub.id_long)"]
