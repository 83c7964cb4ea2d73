"""Field checks of the batch job spec that are not about jobs: msgspec's type errors turned into
field paths, environment and label maps, placement constraints.

Why here and not imported from the services framework: a framework imports only ``tepui.sdk``
and itself (tests/frameworks/test_sdk_only.py), so the batch spec cannot reach
``tepui.frameworks.services``. The rules are the same ones (Marathon's constraint operators,
snake_case names); reading the document and msgspec's errors are shared through
:mod:`tepui.sdk.spec_documents`. Each check
returns ``(field, message)`` or ``None`` and raises nothing, so :mod:`.spec` decides the error type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tepui.sdk.spec_documents import field_error

__all__ = ["OPERATORS", "check_constraint", "check_env", "check_labels", "translate"]

OPERATORS: tuple[str, ...] = ("UNIQUE", "CLUSTER", "GROUP_BY", "MAX_PER", "LIKE", "UNLIKE", "IS")

_DURATIONS = frozenset({"deadline", "ttl_after_finished", "timeout", "initial", "max"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Names a Kubernetes, Slurm or AWS Batch user may reach for, and the Tepui field.
_OTHER_NAMES = {
    "completions": "array", "backoffLimit": "retries.attempts (tries including the first)",
    "backoff_limit": "retries.attempts (tries including the first)",
    "activeDeadlineSeconds": "deadline (an ISO 8601 duration such as PT2H)",
    "ttlSecondsAfterFinished": "ttl_after_finished (an ISO 8601 duration such as P7D)",
    "dependencies": "depends_on", "cmd": "command", "image": "container.image",
    "cpus": "resources.cpus", "mem": "resources.mem", "disk": "resources.disk", "gpus": "resources.gpus",
    "retry": "retries", "limit": "attempts (tries including the first)", "timeout_seconds": "timeout (PT30M)",
}


def translate(error: str, data: object) -> tuple[str, str]:
    """msgspec's ``Expected `int`, got `str` - at `$.stages[0].array``` as (field, message),
    with the names other schedulers use and the duration format as hints."""
    return field_error(error, data, _unknown_hint, _duration_hint)


def _unknown_hint(name: str) -> str:
    hint = _OTHER_NAMES.get(name)
    return f": did you mean {hint}?" if hint else ": check the spelling against docs/batch.md"


def _duration_hint(path: str, text: str) -> str:
    if path.rpartition(".")[2] in _DURATIONS and ("got int" in text or "got float" in text):
        return ": write an ISO 8601 duration such as PT30S, PT10M or PT2H"
    return ""


def check_env(path: str, env: Mapping[str, str], limits: Mapping[str, int]) -> tuple[str, str] | None:
    """Names are shell identifiers; ``TEPUI_*`` is the framework's (``TEPUI_TASK_INDEX``...)."""
    if len(env) > limits["env_vars"]:
        return path, f"at most {limits['env_vars']} variables, got {len(env)}: put bulk data in uris"
    size = 0
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            return f"{path}.{key}", "variable names are letters, digits and '_', not starting with a digit"
        if key.startswith("TEPUI_"):
            return f"{path}.{key}", "TEPUI_* variables are set by the framework (TEPUI_TASK_INDEX...): rename it"
        size += len(key.encode()) + len(value.encode())
    if size > limits["env_bytes"]:
        return path, f"names and values add up to {size} bytes, more than {limits['env_bytes']}: put bulk data in uris"
    return None


def check_labels(path: str, labels: Mapping[str, str], limits: Mapping[str, int]) -> tuple[str, str] | None:
    if len(labels) > limits["labels"]:
        return path, f"at most {limits['labels']} labels, got {len(labels)}"
    for key, value in labels.items():
        if not key.strip() or len(key) > limits["name_length"]:
            return path, f"label names are 1 to {limits['name_length']} characters, got {key!r}"
        if len(value) > limits["label_value_length"]:
            return f"{path}.{key}", f"label values are at most {limits['label_value_length']} characters"
    return None


def check_constraint(field: str, operator: str, value: str | None) -> str | None:
    """The services framework's constraint rules (Marathon's operators): a message or None."""
    if not field.strip():
        return "empty field: name hostname or an agent attribute such as rack"
    if operator not in OPERATORS:
        return f"unknown operator {operator!r} ({', '.join(OPERATORS)})"
    if operator == "UNIQUE" and value is not None:
        return f"UNIQUE takes no value, got {value!r}: write [{field}, UNIQUE]"
    if operator in ("LIKE", "UNLIKE", "IS", "MAX_PER") and value is None:
        example = "2" if operator == "MAX_PER" else "VALUE"
        return f"{operator} needs a value: write [{field}, {operator}, {example}]"
    if operator in ("MAX_PER", "GROUP_BY") and value is not None:
        low = 1 if operator == "MAX_PER" else 0
        if not value.isdigit() or int(value) < low:
            return f"{operator} count must be an integer >= {low}, got {value!r}"
    if operator in ("LIKE", "UNLIKE"):
        try:
            re.compile(value or "")
        except re.error as exc:
            return f"invalid regular expression {value!r}: {exc}"
    return None
