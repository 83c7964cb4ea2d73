"""``bench/services_deploy.py --smoke`` as a test, so the benchmark cannot rot: `tepui up` with
the services framework, `tepui apps deploy` of 5 instances with HTTP health checks, then
`tepui apps rm`; the bench must end with its ``services_deploy_5_healthy_seconds=<x>`` line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "services_deploy.py"


def test_services_deploy_smoke_prints_its_figure() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, timeout=240,
                            check=False)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    assert re.fullmatch(r"services_deploy_5_healthy_seconds=\d+\.\d\d", lines[-1]), result.stdout
    assert "5 instances healthy" in result.stdout
