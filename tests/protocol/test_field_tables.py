"""docs/protocol.md's tables of required and optional fields are the wire schema: each row
matches the msgspec Struct it names — the fields without a default (required), and the others
with their defaults, in the Struct's order (the order Tepui sends them in). A client author
reads the tables, so a Struct that changes without its table fails here."""

from __future__ import annotations

import json
import re
import typing
from typing import Any

import msgspec
import pytest

from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol import values
from tests.e2e.conftest import REPO

DOC = REPO / "docs" / "protocol.md"
_ROW = re.compile(r"^\| (`[A-Za-z_]+`)(?: \(Tepui\))? \| (.*?) \| (.*?) \|$")
_OPTIONAL = re.compile(r"`([a-z_]+)` \(([^()]*)\)")


def _by_tag(union: Any) -> dict[str, type]:
    return {member.__struct_config__.tag: member for member in typing.get_args(union)}


def _by_name(*classes: type) -> dict[str, type]:
    return {cls.__name__: cls for cls in classes}


VALUE_TYPES = [getattr(values, name) for name in dir(values)
               if isinstance(getattr(values, name), type) and issubclass(getattr(values, name), values.Value)]
SCHEMAS: dict[str, dict[str, type]] = {
    "calls": _by_tag(sm.SchedulerCall),
    "operations": _by_tag(sm.Operation),
    "values": _by_name(*VALUE_TYPES),
    "events": _by_tag(sm.SchedulerEvent),
    "event values": _by_name(*VALUE_TYPES),
}


def table(doc: str, marker: str) -> list[tuple[str, str, str]]:
    """The rows (name, required, optional) of the table after ``<!-- fields: marker -->``."""
    start = doc.index(f"<!-- fields: {marker} -->")
    rows = []
    for line in doc[start:].splitlines()[3:]:
        if not line.startswith("|"):
            break
        match = _ROW.match(line)
        assert match, f"docs/protocol.md: a row of the {marker!r} table does not parse: {line}"
        rows.append((match.group(1).strip("`"), match.group(2), match.group(3)))
    return rows


def expected_cells(cls: type) -> tuple[str, str]:
    fields = msgspec.structs.fields(cls)
    required = ", ".join(f"`{f.name}`" for f in fields if f.required) or "—"
    optional = ", ".join(
        f"`{f.name}` ({json.dumps(f.default if f.default is not msgspec.NODEFAULT else f.default_factory())})"
        for f in fields if not f.required) or "—"
    return required, optional


@pytest.mark.parametrize("marker", sorted(SCHEMAS))
def test_each_fields_table_matches_the_structs_it_names(marker: str) -> None:
    doc = DOC.read_text()
    rows = table(doc, marker)
    assert rows, f"docs/protocol.md: the {marker!r} table is empty"
    schema = SCHEMAS[marker]
    for name, required, optional in rows:
        assert name in schema, f"docs/protocol.md {marker!r} table names {name}, which is not on the wire"
        assert (required, optional) == expected_cells(schema[name]), f"docs/protocol.md: the row of {name}"
    if marker in ("calls", "operations", "events"):  # every message is there
        assert sorted(name for name, _, _ in rows) == sorted(schema)


def test_every_value_a_framework_sends_or_reads_has_a_row() -> None:
    """Agent-only values (AgentInfo) stay out; everything reachable from a call or event is in."""
    doc = DOC.read_text()
    documented = {name for marker in ("values", "event values") for name, _, _ in table(doc, marker)}
    reachable: set[str] = set()

    def walk(tp: Any) -> None:
        for arg in typing.get_args(tp):
            walk(arg)
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct) and tp.__name__ not in reachable:
            if issubclass(tp, values.Value):
                reachable.add(tp.__name__)
            for field in msgspec.structs.fields(tp):
                walk(field.type)

    walk(sm.SchedulerCall)
    walk(sm.SchedulerEvent)
    assert reachable - documented == set()
