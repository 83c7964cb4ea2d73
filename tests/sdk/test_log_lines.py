"""One event per line (issue 15, bug 3): no value a client chose — a framework's name, an id,
a decoder's error quoting the bad value — can forge a log line or a field, or make a line
megabytes long; a traceback's lines are indented so that none passes for a record."""

from __future__ import annotations

import io
import logging

from tepui.sdk.effects import MAX_LOG_VALUE, Log
from tepui.sdk.shell import MAX_LINE, OneLineFormatter, log_effect

FORGED = "fw\n2024-01-01 00:00:00,000 INFO master tepui.master forged event=framework_removed framework_id=m-F0001"


def written(emit: object) -> str:
    """What a logger with the shells' formatter writes while ``emit(logger)`` runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s master %(name)s %(message)s"))
    logger = logging.getLogger("tepui.test.log_lines")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        emit(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_value_with_a_newline_and_a_forged_event_stays_one_line() -> None:
    out = written(lambda log: log_effect(log, Log("info", "framework_subscribed",
                                                  {"framework_id": "m-F0001", "name": FORGED})))
    assert out.count("\n") == 1 and out.endswith("\n")
    assert 'name="fw\\n2024-01-01 00:00:00,000 INFO master tepui.master forged event=framework_removed ' \
           'framework_id=m-F0001"' in out


def test_every_control_character_is_escaped_in_a_rendered_value() -> None:
    line = Log("info", "e", {"v": "a\rb\tc\x1b[31md\x00e\x85f\u2028g\x7f"}).render()
    assert line == 'event=e v="a\\rb\\tc\\x1b[31md\\x00e\\x85f\\u2028g\\x7f"'


def test_a_quote_or_backslash_in_a_value_cannot_end_the_value_and_forge_a_field() -> None:
    line = Log("info", "e", {"name": 'x\\" principal=root', "next": 1}).render()
    assert line == 'event=e name="x\\\\\\" principal=root" next=1'


def test_a_huge_value_is_cut() -> None:
    line = Log("info", "e", {"name": "n" * 3_000_000}).render()
    assert len(line) < MAX_LOG_VALUE + 100 and line.endswith(f"...[{3_000_000 - MAX_LOG_VALUE} more characters]\"")


def test_a_value_formatted_into_a_message_directly_is_escaped_and_cut_too() -> None:
    out = written(lambda log: log.warning("event=malformed_message error=%s", FORGED + "x" * 100_000))
    assert out.count("\n") == 1 and "fw\\n2024" in out
    assert len(out) < MAX_LINE + 100


def test_a_tracebacks_lines_are_indented_so_none_passes_for_a_record() -> None:
    def fail(log: logging.Logger) -> None:
        try:
            raise ValueError(FORGED)
        except ValueError:
            log.exception("event=handler_failed")

    lines = written(fail).splitlines()
    assert lines[0].endswith("event=handler_failed")
    assert len(lines) > 2 and all(line.startswith("  ") for line in lines[1:])
