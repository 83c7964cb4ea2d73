"""A real `tepui cron serve` process next to the batch harness's cluster and `tepui batch`
(tests/e2e/batch_harness.py), its fires sent to the batch framework through the master's proxy
with the cluster token, as `tepui up` runs it. Shared by the cron end-to-end tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.e2e.batch_harness import Batch
from tests.e2e.conftest import Cluster, child_env, tepui_cmd
from tests.e2e.services_harness import FrameworkProcess


class Cron(FrameworkProcess):
    """`tepui cron serve`, its batch calls through the master's proxy."""

    name = "cron"
    subscribe_timeout = 30.0

    def start(self) -> None:
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(
                tepui_cmd("cron", "serve", "--master", self.cluster.master, "--store", str(self.store),
                          "--http-port", str(self.api_port), "--http-token-file", str(self.cluster.root / "http-token"),
                          "--batch", f"http://127.0.0.1:{self.cluster.http_port}/frameworks/batch/v1"),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=child_env(), cwd=self.root)
        self.cluster.watch.add([self.process.pid])
        self.cluster.logs[self.name] = self.log
        self.wait(lambda: self.health().get("subscribed") is True, self.subscribe_timeout, "cron framework subscribed")


def batch_jobs(batch: Batch, prefix: str) -> list[dict[str, Any]]:
    """The batch framework's jobs whose id starts with ``prefix`` (a schedule's fires)."""
    status, body = batch.call("GET", "/jobs?limit=1000")
    assert status == 200, body
    return [j for j in body["jobs"] if j["id"].startswith(prefix)]


@contextmanager
def cron_running(cluster: Cluster) -> Iterator[tuple[Batch, Cron]]:
    """The cluster, `tepui batch` and `tepui cron serve` on stores in the cluster's root, all
    stopped afterwards, and nothing of them left running."""
    batch, cron = Batch(cluster, cluster.root), Cron(cluster, cluster.root)  # before the master: --proxy-allow
    try:
        cluster.start()
        batch.start()
        cron.start()
        yield batch, cron
    finally:
        cron.stop()
        batch.stop()
        cluster.stop()
    survivors = cluster.watch.survivors()
    assert not survivors, f"left running after teardown: {survivors}"
