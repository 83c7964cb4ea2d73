"""``tepui cron`` as a user runs it, against a real cluster (tests/e2e/test_cron.py's master,
agents, `tepui batch` and `tepui cron serve`): every command through the master's proxy with the
cluster's bearer token — POST, PUT, DELETE and the reads — in a child process, as typed. A
schedule every 3 seconds in Europe/Berlin fires, runs and is listed with its last run; a
trigger runs outside the schedule; rm forgets it and a second show exits 1."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.batch_harness import Batch
from tests.e2e.conftest import child_env, tepui_cmd
from tests.e2e.test_cron import Cron, frameworks  # noqa: F401  # the cluster fixture

pytestmark = pytest.mark.slow

SPEC = ("id: tick\ncron: '* * * * * */3'\ntime_zone: Europe/Berlin\nconcurrency_policy: Forbid\n"
        "job: {name: tick, stages: [{name: s, command: 'true', resources: {cpus: 0.1, mem: 16}}]}\n")


def cron_cli(cron: Cron, *args: str) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env["TEPUI_HTTP_TOKEN"] = (cron.cluster.root / "http-token").read_text().strip()
    env["TEPUI_CONFIG"] = str(cron.cluster.root / "no-client-config.yaml")
    result = subprocess.run(tepui_cmd("cron", *args, "--http", f"127.0.0.1:{cron.cluster.http_port}"), env=env,
                            capture_output=True, text=True, timeout=60)
    print(f"$ tepui cron {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def test_every_command_through_the_masters_proxy(frameworks: tuple[Batch, Cron], tmp_path: Path) -> None:  # noqa: F811
    _batch, cron = frameworks
    spec = tmp_path / "tick.yaml"
    spec.write_text(SPEC)
    created = cron_cli(cron, "create", str(spec))
    assert created.returncode == 0 and created.stdout.startswith("schedule tick created: * * * * * */3 in "
                                                                 "Europe/Berlin; next fire "), created.stdout

    def listed_a_success() -> bool:
        return "SUCCEEDED" in cron_cli(cron, "list").stdout

    cron.wait(listed_a_success, 40, "tepui cron list shows a SUCCEEDED last run")
    nxt = cron_cli(cron, "next", "tick", "-n", "3")
    keys = re.findall(r"tick-(\d+)", nxt.stdout)
    assert nxt.returncode == 0 and len(keys) == 3 and [int(b) - int(a) for a, b in zip(keys, keys[1:])] == [3, 3]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+0[12]:00 .* \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", nxt.stdout)
    triggered = cron_cli(cron, "trigger", "tick")
    assert triggered.returncode == 0 and "tick_manual_" in triggered.stdout
    manual = re.search(r"tick_manual_\d+", triggered.stdout)
    assert manual is not None
    manual_key = manual.group(0)
    assert cron_cli(cron, "suspend", "tick").returncode == 0

    def trigger_recorded() -> bool:
        return bool(re.search(manual_key + r" .*SUCCEEDED \(manual\)", cron_cli(cron, "history", "tick").stdout))

    cron.wait(trigger_recorded, 40, "the trigger's run in tepui cron history")
    shown = cron_cli(cron, "show", "tick")
    assert shown.returncode == 0 and "suspended  yes" in shown.stdout
    applied = cron_cli(cron, "apply", str(spec))  # the file does not say suspend: apply resumes (as kubectl)
    assert applied.returncode == 0 and applied.stdout.startswith("schedule tick updated"), applied.stdout
    assert cron_cli(cron, "suspend", "tick").returncode == 0
    time.sleep(1)

    def removed() -> bool:
        return cron_cli(cron, "rm", "tick").returncode == 0  # refused (1) while a fire is unconfirmed

    cron.wait(removed, 30, "tepui cron rm")
    gone = cron_cli(cron, "show", "tick")
    assert (gone.returncode, gone.stderr) == (1, "error: no schedule 'tick'; `tepui cron list` shows them\n"
                                                 "field: id\n")
