"""Frameworks import only ``tepui.sdk`` (DESIGN): the services framework is built like any
third-party framework, which is what proves the SDK is enough. A module that reached into the
master or the agent would break that proof silently, so this test reads every import."""

from __future__ import annotations

import ast
from pathlib import Path

FRAMEWORKS = Path(__file__).resolve().parents[2] / "frameworks"


def test_frameworks_import_only_the_sdk_and_themselves() -> None:
    offenders = []
    for path in sorted(FRAMEWORKS.rglob("*.py")):
        package = "tepui.frameworks." + path.relative_to(FRAMEWORKS).parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith("tepui") and not (name == "tepui.sdk" or name.startswith("tepui.sdk.")
                                                     or name.startswith(package)):
                    offenders.append(f"{path.relative_to(FRAMEWORKS)}:{node.lineno} imports {name}")
    assert not offenders, "frameworks may import only tepui.sdk:\n" + "\n".join(offenders)
    assert any(FRAMEWORKS.rglob("core.py")), "the scan found no framework modules"
