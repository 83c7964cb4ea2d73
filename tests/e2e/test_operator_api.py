"""The master's operator endpoints over real HTTP: /weights, /quota, /roles, and explanations
in /state; bad bodies get 400/422 naming the field and change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cluster, child_env

pytestmark = pytest.mark.slow

DEMAND_FRAMEWORK = Path(__file__).with_name("demand_framework.py")


TOKEN: dict[int, str] = {}  # http port → the cluster's token (the master needs it for mutating calls)


def call(port: int, method: str, path: str, body: Any = None, raw: bytes | None = None,
         token: str | None = "cluster") -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {}
    if token is not None:
        headers["authorization"] = f"Bearer {TOKEN[port] if token == 'cluster' else token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(autouse=True)
def _token(cluster: Cluster) -> None:
    TOKEN[cluster.http_port] = cluster.token


def test_mutating_calls_need_the_token_reads_do_not(cluster: Cluster) -> None:
    port = cluster.http_port
    code, body = call(port, "PUT", "/weights", [{"role": "eng", "weight": 9}], token=None)
    assert code == 401 and body["reason"] == "UNAUTHENTICATED"
    code, body = call(port, "DELETE", "/quota/eng", token="not-the-token-at-all")
    assert code == 401 and body["reason"] == "BAD_TOKEN"
    assert call(port, "GET", "/weights", token=None) == (200, [])
    code, body = call(port, "DELETE", "/weights")
    assert code == 405 and body["reason"] == "METHOD_NOT_ALLOWED"
    code, body = call(port, "GET", "/no/such/thing", token=None)
    assert code == 404 and "/weights" in body["endpoints"]


def test_weights_round_trip_and_validation(cluster: Cluster) -> None:
    port = cluster.http_port
    assert call(port, "PUT", "/weights", [{"role": "eng", "weight": 2.5}]) == (200, [{"role": "eng", "weight": 2.5}])
    assert call(port, "GET", "/weights") == (200, [{"role": "eng", "weight": 2.5}])
    code, body = call(port, "PUT", "/weights", raw=b"{not json")
    assert code == 400 and "not valid JSON" in body["error"]
    code, body = call(port, "PUT", "/weights", [{"role": "eng", "weight": -1}])
    assert code == 422 and body["field"] == "weights.eng"
    code, body = call(port, "PUT", "/weights", [{"role": "a//b", "weight": 1}])
    assert code == 422 and "a//b" in body["error"]
    code, body = call(port, "PUT", "/weights", [{"weight": 1}])
    assert code == 422 and body["field"] == "[0].role"
    assert call(port, "GET", "/weights") == (200, [{"role": "eng", "weight": 2.5}])  # unchanged


def test_quota_set_show_remove_and_validation(cluster: Cluster) -> None:
    port = cluster.http_port
    code, body = call(port, "POST", "/quota", {"role": "ads", "guarantee": {"cpus": 0.5}, "limit": {"cpus": 1, "mem": 512}})
    assert code == 200
    [info] = body["infos"]
    assert info["role"] == "ads" and info["guarantee"] == {"cpus": 0.5} and info["limit"] == {"cpus": 1.0, "mem": 512.0}
    code, body = call(port, "POST", "/quota", {"role": "ads", "guarantee": {"cpus": 4}, "limit": {"cpus": 1}})
    assert code == 422 and body["field"] == "guarantee" and "exceeds its limit" in body["error"]
    code, body = call(port, "POST", "/quota", {"role": "ads", "limit": {"cpus": "lots"}})
    assert code == 422 and body["field"] == "limit.cpus"
    code, body = call(port, "POST", "/quota", {"role": "ads", "limit": {"cpus": 1}, "colour": "red"})
    assert code == 422 and body["field"] == "colour"
    code, body = call(port, "GET", "/roles")
    assert code == 200 and any(r["name"] == "ads" and r["quota"]["limit"]["cpus"] == 1.0 for r in body["roles"])
    assert call(port, "DELETE", "/quota/ads")[0] == 200
    assert call(port, "GET", "/quota") == (200, {"infos": []})
    assert call(port, "DELETE", "/quota/ads")[0] == 404


def test_demand_and_explanation_reach_a_real_framework(cluster: Cluster) -> None:
    """A framework declaring a shape no agent can hold gets no offers and hears why."""
    done = subprocess.run([sys.executable, str(DEMAND_FRAMEWORK), "--master", cluster.master],
                          capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr + cluster.log_tails()
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {"event": "explanation", "role": "*", "reason": "DEMAND_NEVER_FITS"} in lines
    assert {"event": "offers_before_fitting_demand", "count": 0} in lines
    assert any(line.get("event") == "offer_after_fitting_demand" for line in lines)
