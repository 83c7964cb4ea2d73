"""What the frameworks' spec parsers share: reading a YAML or JSON document, and turning
msgspec's type errors into the field they name (``stages[0].array: expected int, got str``).

Here because a framework imports only ``tepui.sdk`` and itself (tests/frameworks/test_sdk_only.py):
the services and batch specs had each kept a copy of these steps. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Literal

import yaml

__all__ = ["SpecError", "decode_spec", "document_text", "field_error", "name_map_keys"]


class SpecError(ValueError):
    """An invalid spec. ``field`` is the path of the offending field (``instances``,
    ``stages[1].depends_on[0].stage``); ``str()`` is ``"field: message"``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def document_text(text: str | bytes, limit: int) -> str:
    """The document as text: at most ``limit`` bytes, UTF-8. Raises :class:`SpecError` on field
    ``(document)`` (a spec file saved in another encoding is named, not decoded as garbage)."""
    if len(text) > limit:
        raise SpecError("(document)", f"is {len(text)} bytes, more than the {limit} allowed")
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError("(document)", f"is not UTF-8 (byte {exc.start}): save the file as UTF-8") from None
    return text


def decode_spec(text: str, fmt: Literal["yaml", "json"] | None,
                yaml_loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> object:
    """The document's data. ``fmt=None`` reads JSON when the text starts with ``{`` and YAML
    otherwise. Raises :class:`SpecError` on field ``(format)`` or ``(document)``."""
    if fmt not in ("yaml", "json", None):
        raise SpecError("(format)", f"unknown format {fmt!r}: use 'yaml' or 'json'")
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "yaml"
    try:
        return json.loads(text) if fmt == "json" else yaml.load(text, Loader=yaml_loader)  # noqa: S506  # a SafeLoader
    except json.JSONDecodeError as exc:
        raise SpecError("(document)", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise SpecError("(document)", f"invalid YAML: {exc}") from None


_AT = re.compile(r"^(?P<msg>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.S)
_NAMED = re.compile(r"^Object (?P<kind>contains unknown|missing required) field `(?P<name>[^`]*)`$")
_PATH_TOKEN = re.compile(r"\.?([^.\[]+)|\[(\d+|\.\.\.)\]")


def field_error(error: str, data: object, unknown_hint: Callable[[str], str],
                type_hint: Callable[[str, str], str] | None = None) -> tuple[str, str]:
    """msgspec's ``Expected `int`, got `str` - at `$.instances``` as ``(field, message)``.
    ``unknown_hint(name)`` ends the message of an unknown field (a spelling the user may have
    meant); ``type_hint(field, message)`` may add to a type error's message."""
    match = _AT.match(error)
    assert match is not None  # the pattern matches any string
    msg, path = match.group("msg"), (match.group("path") or "").lstrip(".")
    if "[...]" in path:
        path = name_map_keys(path, data)
    named = _NAMED.match(msg)
    if named:
        name = named.group("name")
        field = f"{path}.{name}" if path else name
        if named.group("kind") == "missing required":
            return field, "required field is missing"
        return field, "unknown field" + unknown_hint(name)
    text = msg.replace("`", "")
    text = text[:1].lower() + text[1:]
    if match.group("key"):
        text = "keys " + text + " (quote keys such as 1 or yes in YAML)"
    if "got bool" in text or "got null" in text:
        text += " (quote values such as yes, no, on, off and null in YAML)"
    if type_hint is not None:
        text += type_hint(path, text)
    return path or "(document)", text


def name_map_keys(path: str, data: object) -> str:
    """msgspec writes a bad map value's key as ``[...]`` (``labels[...]``); every map in a spec
    holds text, so the offending key is the first whose value is not a string."""
    out, node = "", data
    for name, index in _PATH_TOKEN.findall(path):
        if name:
            out += f".{name}" if out else name
            node = node.get(name) if isinstance(node, Mapping) else None
        elif index == "...":
            if not isinstance(node, Mapping):
                return out + "[...]"
            bad = next((k for k, v in node.items() if not isinstance(v, str)), None)
            if bad is None:
                return out + "[...]"
            out, node = f"{out}.{bad}", node[bad]
        else:
            out += f"[{index}]"
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
    return out
