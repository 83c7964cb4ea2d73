"""``tepui apps`` against a fake services API on loopback (the contract of docs/services.md, behind
the master's ``/frameworks/services`` prefix): the requests it sends, the tables it prints, how
it follows a deployment to its end, and how it explains errors."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tepui.cli import apps
from tepui.cli.main import cli

PREFIX = "/frameworks/services/v1"
ACTIONS = ("scale", "restart", "rollback", "versions", "tasks", "why")
BORDERS = "┃│┏┳┓┡╇┩└┴┘"


def _task(task_id: str, version: str, state: str, healthy: Any, host: str, ports: list[int],
          started: float) -> dict[str, Any]:
    return {"task_id": task_id, "app": "/shop/cart", "version": version, "agent_id": "a-1", "hostname": host,
            "host": f"{host}:5051", "state": state, "healthy": healthy, "ready": healthy is True, "ports": ports,
            "started_at": started, "killing": False}


def _apps() -> dict[str, dict[str, Any]]:
    cart = {"id": "/shop/cart", "version": "v2", "instances": 3, "running": 2, "healthy": 2, "staged": 1,
            "unhealthy": 0, "waiting": 0, "deployment": None, "labels": {"env": "prod", "team": "shop"},
            "backoff_seconds": 0, "cpus": 0.5, "mem": 256}
    search = {"id": "/search-indexer-long-name", "version": "v17", "instances": 12, "running": 0, "healthy": 0,
              "staged": 0, "unhealthy": 0, "waiting": 12, "deployment": "d-9", "labels": {"env": "dev"},
              "backoff_seconds": 30, "cpus": 2, "mem": 4096}
    return {cart["id"]: cart, search["id"]: search}


class FakeServices:
    """The framework's API with a little state: deployments answer RUNNING for ``running_polls``
    GETs, then their ``final`` status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.apps = _apps()
        self.deployments: dict[str, dict[str, Any]] = {}
        self.framework_running = True
        self.next_final = "SUCCEEDED"
        self.running_polls = 2
        self.counter = 0

    def start_deployment(self, app: str, kind: str, version: str | None, target: int) -> str:
        self.counter += 1
        dep_id = f"d-{self.counter}"
        self.deployments[dep_id] = {
            "id": dep_id, "app": app, "kind": kind, "version": version, "from_version": "v1", "status": "RUNNING",
            "started_at": time.time() - 5, "finished_at": None, "deadline_at": time.time() + 600, "message": "",
            "instances": target,
            "progress": {"new_healthy": 0, "new_running": 0, "old_running": target, "target": target},
            "rollback": None, "_polls": 0, "_final": self.next_final}
        return dep_id

    def poll(self, dep_id: str) -> dict[str, Any]:
        dep = self.deployments[dep_id]
        if dep["status"] == "RUNNING":
            dep["_polls"] += 1
            target = dep["progress"]["target"]
            done = min(target, dep["_polls"])
            dep["progress"] = {"new_healthy": done, "new_running": done, "old_running": target - done,
                               "target": target}
            if self.running_polls >= 0 and dep["_polls"] > self.running_polls:
                dep["status"] = dep["_final"]
                if dep["_final"] == "SUCCEEDED":
                    dep["progress"] = {"new_healthy": target, "new_running": target, "old_running": 0,
                                       "target": target}
                else:
                    dep["message"] = "task cart-3 failed its health check 3 times in a row"
                    dep["rollback"] = self.start_deployment(dep["app"], "rollback", "v1", target)
        return {k: v for k, v in dep.items() if not k.startswith("_")}

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes,
               content_type: str | None) -> tuple[int, Any]:
        if not self.framework_running:
            return 404, {"error": "no framework named 'services' is subscribed", "reason": "UNKNOWN_FRAMEWORK"}
        if not path.startswith(PREFIX + "/"):
            return 404, None
        rest = path[len(PREFIX):]
        if rest == "/apps" and method == "GET":
            wanted = [item.split("=", 1) for item in query.get("label", "").split(",") if item]
            return 200, {"apps": [a for a in self.apps.values()
                                  if all(k in a["labels"] and (len(kv) == 1 or a["labels"][k] == kv[1])
                                         for kv in wanted for k in [kv[0]])]}
        if rest == "/apps" and method == "POST":
            text = body.decode()
            if "instances: -1" in text:
                return 422, {"error": "instances must be 0 or more", "reason": "INVALID_APP", "field": "instances"}
            if "locked" in text and query.get("force") != "true":
                return 409, {"error": "a deployment of /shop/cart is running", "reason": "APP_LOCKED"}
            if "unchanged" in text:
                return 200, {"app": "/shop/cart", "version": "v2", "deployment": None}
            return 201, {"app": "/shop/cart", "version": "v3",
                         "deployment": self.start_deployment("/shop/cart", "deploy", "v3", 3)}
        if rest == "/deployments" and method == "GET":
            return 200, {"deployments": [self.poll(d) for d in self.deployments]}
        if rest.startswith("/deployments/"):
            dep_id = urllib.parse.unquote(rest[len("/deployments/"):])
            if dep_id not in self.deployments:
                return 404, {"error": f"no deployment {dep_id}", "reason": "UNKNOWN_DEPLOYMENT"}
            if method == "DELETE":
                self.deployments[dep_id]["status"] = "CANCELLED"
                rollback = None if query.get("force") == "true" else self.start_deployment("/shop/cart", "rollback",
                                                                                           "v1", 3)
                return 200, {"deployment": dep_id, "rollback": rollback}
            return 200, self.poll(dep_id)
        if rest.startswith("/apps/"):
            app, action = "/" + rest[len("/apps/"):], None
            head, _, last = app.rpartition("/")
            if last in ACTIONS:
                app, action = head, last
            if app not in self.apps:
                return 404, {"error": f"no app {app}; `tepui apps list` shows them", "reason": "UNKNOWN_APP"}
            return self.app_call(method, app, action, json.loads(body) if body else None)
        return 404, {"error": f"no route {method} {rest}", "reason": "NOT_FOUND"}

    def app_call(self, method: str, app: str, action: str | None, body: Any) -> tuple[int, Any]:
        # Ages are relative to the request's time, not the module's import (the full suite runs
        # this minutes after collecting it).
        NOW = time.time()  # noqa: N806
        summary = self.apps[app]
        tasks = [_task("cart.1", "v2", "TASK_RUNNING", True, "node-1", [31000, 31001], NOW - 125),
                 _task("cart.2", "v2", "TASK_RUNNING", True, "node-2", [31002, 31003], NOW - 3 * 3600),
                 _task("cart.3", "v2", "TASK_STAGING", None, "node-10.example.com", [], NOW - 4)]
        versions = [{"version": "v2", "created_at": NOW - 600, "reason": "deploy"},
                    {"version": "v1", "created_at": NOW - 86400 * 2, "reason": "deploy"}]
        if method == "DELETE" and action is None:
            return 202, {"app": app, "deployment": self.start_deployment(app, "remove", None, 3)}
        if method == "GET" and action is None:
            return 200, {**summary, "spec": {"id": app, "command": "python -m cart", "cpus": 0.5, "mem": 256},
                         "versions": versions, "tasks": tasks,
                         "last_failure": {"task_id": "cart.0", "state": "TASK_FAILED", "message": "exited with 3",
                                          "at": NOW - 60}}
        if method == "GET" and action == "tasks":
            return 200, {"tasks": tasks}
        if method == "GET" and action == "versions":
            return 200, {"versions": versions}
        if method == "GET" and action == "why":
            return 200, {"app": app, "waiting": 12, "offers_seen": 40,
                         "reasons": {"not enough mem (4096 MiB wanted, at most 2048 offered)": 31,
                                     "constraint hostname UNIQUE not met": 9},
                         "recent": [{"agent_id": "a-1", "hostname": "node-1", "reason": "not enough mem",
                                     "at": NOW - 3},
                                    {"agent_id": "a-22", "hostname": None, "reason": "constraint hostname UNIQUE",
                                     "at": NOW - 70}],
                         "backoff_seconds": 0,
                         "summary": "No agent has 4096 MiB free: lower mem or add a larger agent."}
        if method == "POST" and action == "scale":
            if not isinstance(body, dict) or not isinstance(body.get("instances"), int):
                return 422, {"error": "instances must be a number", "reason": "INVALID_APP", "field": "instances"}
            return 200, {"app": app, "version": "v3",
                         "deployment": self.start_deployment(app, "scale", "v3", body["instances"])}
        if method == "POST" and action == "restart":
            return 200, {"app": app, "version": "v3", "deployment": self.start_deployment(app, "restart", "v3", 3)}
        if method == "POST" and action == "rollback":
            to = (body or {}).get("to", "v1")
            if to not in ("v1", "v2"):
                return 404, {"error": f"{app} has no version {to}; `tepui apps show {app}` lists them",
                             "reason": "UNKNOWN_VERSION"}
            return 200, {"app": app, "version": "v4", "deployment": self.start_deployment(app, "rollback", "v4", 3)}
        return 405, {"error": "method not allowed", "reason": "METHOD_NOT_ALLOWED"}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeServices, str]]:
    fake = FakeServices()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            query = dict(urllib.parse.parse_qsl(url.query))
            with lock:
                fake.requests.append({"method": self.command, "path": url.path, "query": query, "body": body,
                                      "content_type": self.headers.get("content-type"),
                                      "authorization": self.headers.get("authorization")})
                status, document = fake.handle(self.command, url.path, query, body, self.headers.get("content-type"))
            raw = b"" if document is None else json.dumps(document).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setattr(apps, "POLL_INTERVAL", 0.01)
    monkeypatch.delenv("TEPUI_HTTP_TOKEN", raising=False)
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(http: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["apps", *args, "--http", http], input=input)


def table_rows(output: str) -> list[list[str]]:
    """The cells of the first rich table in ``output`` (header row first)."""
    rows = []
    for line in output.splitlines():
        if line.startswith(("┃", "│")):
            rows.append([cell.strip() for cell in re.split("[┃│]", line)[1:-1]])
        elif rows and line.startswith("└"):
            break
    return rows


def assert_aligned(output: str) -> None:
    """Every line of each table has its column separators at the same places."""
    block: list[str] = []
    for line in output.splitlines() + [""]:
        if line[:1] in "┏┡└┃│" and line:
            block.append(line)
            continue
        if block:
            positions = {tuple(i for i, ch in enumerate(row) if ch in BORDERS) for row in block}
            assert len(positions) == 1, "\n".join(block)
            block = []


def test_deploy_a_yaml_file_follows_the_deployment_to_success(api: tuple[FakeServices, str], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake, http = api
    monkeypatch.setenv("TEPUI_HTTP_TOKEN", "apps-token-0123456789")
    spec = tmp_path / "cart.yaml"
    spec.write_text("id: /shop/cart\ncommand: python -m cart\ninstances: 3\n")
    result = run(http, "deploy", str(spec))
    assert result.exit_code == 0, result.output
    assert "✓ /shop/cart version v3: 3 healthy" in result.output
    post = fake.requests[0]
    assert (post["method"], post["path"], post["content_type"]) == ("POST", f"{PREFIX}/apps", "application/yaml")
    assert post["body"] == spec.read_bytes() and post["query"] == {}
    assert post["authorization"] == "Bearer apps-token-0123456789"
    polls = fake.requests[1:]
    assert {(r["method"], r["path"]) for r in polls} == {("GET", f"{PREFIX}/deployments/d-1")}
    assert len(polls) == 3  # RUNNING, RUNNING, SUCCEEDED
    assert "3/3" in result.output  # the bar's last state: every new instance healthy


def test_deploy_json_from_a_file_and_from_stdin_with_force(api: tuple[FakeServices, str], tmp_path: Path) -> None:
    fake, http = api
    spec = tmp_path / "cart.json"
    spec.write_text('{"id": "/shop/cart", "command": "sleep 1000"}')
    assert run(http, "deploy", "--detach", str(spec)).exit_code == 0
    result = run(http, "deploy", "-", "--force", "--detach", input='{"id": "/shop/cart", "locked": true}')
    assert result.exit_code == 0, result.output
    assert "deployment d-2 started for /shop/cart version v3" in result.output
    first, second = fake.requests
    assert first["content_type"] == second["content_type"] == "application/json"
    assert second["query"] == {"force": "true"} and second["body"] == b'{"id": "/shop/cart", "locked": true}'
    assert len(fake.requests) == 2  # --detach: no polling


def test_deploy_yaml_from_stdin_and_an_unchanged_app(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    result = run(http, "deploy", "-", input="id: /shop/cart\n# unchanged\n")
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.output
    assert fake.requests[0]["content_type"] == "application/yaml"


def test_a_failed_deployment_exits_1_with_its_message_and_rollback(api: tuple[FakeServices, str],
                                                                   tmp_path: Path) -> None:
    fake, http = api
    fake.next_final = "FAILED"
    spec = tmp_path / "cart.yml"
    spec.write_text("id: /shop/cart\n")
    result = run(http, "deploy", str(spec))
    assert result.exit_code == 1
    assert "FAILED: task cart-3 failed its health check 3 times in a row" in result.output
    assert "rollback deployment d-2" in result.output and "tepui apps show /shop/cart" in result.output


def test_timeout_exits_2_and_the_deployment_keeps_running(api: tuple[FakeServices, str], tmp_path: Path) -> None:
    fake, http = api
    fake.running_polls = 10_000
    spec = tmp_path / "cart.yaml"
    spec.write_text("id: /shop/cart\n")
    result = run(http, "deploy", str(spec), "--timeout", "0.1")
    assert result.exit_code == 2
    assert "keeps running" in result.output and "tepui apps show /shop/cart" in result.output
    assert "tepui apps cancel d-1" in result.output


def test_a_422_shows_the_field(api: tuple[FakeServices, str], tmp_path: Path) -> None:
    _fake, http = api
    spec = tmp_path / "bad.yaml"
    spec.write_text("id: /shop/cart\ninstances: -1\n")
    result = run(http, "deploy", str(spec))
    assert result.exit_code == 1
    assert "error: instances must be 0 or more" in result.output and "field: instances" in result.output


def test_a_locked_app_suggests_force(api: tuple[FakeServices, str]) -> None:
    _fake, http = api
    result = run(http, "deploy", "-", input="id: /shop/cart\nlocked: 1\n")
    assert result.exit_code == 1
    assert "error: a deployment of /shop/cart is running" in result.output and "--force" in result.output


def test_an_unreadable_file_says_what_to_do(api: tuple[FakeServices, str], tmp_path: Path) -> None:
    fake, http = api
    result = run(http, "deploy", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 1 and "cannot read" in result.output and "Check the path" in result.output
    assert fake.requests == []


def test_list_passes_the_label_filter_and_aligns_the_table(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    result = run(http, "list")
    assert result.exit_code == 0, result.output
    assert_aligned(result.output)
    rows = table_rows(result.output)
    assert rows[0] == ["ID", "VERSION", "INSTANCES", "RUNNING", "STAGED", "WAITING", "DEPLOYMENT", "LABELS"]
    assert rows[1] == ["/search-indexer-long-name", "v17", "0/12", "0", "0", "12 (backoff 30s)", "d-9", "env=dev"]
    assert rows[2] == ["/shop/cart", "v2", "2/3", "2", "1", "0", "-", "env=prod,team=shop"]

    result = run(http, "list", "-l", "env=prod,team")
    assert result.exit_code == 0, result.output
    assert fake.requests[-1]["query"] == {"label": "env=prod,team"}
    assert [row[0] for row in table_rows(result.output)[1:]] == ["/shop/cart"]

    result = run(http, "list", "-l", "env=qa", "--json")
    assert json.loads(result.output) == {"apps": []}


def test_list_says_when_there_is_nothing(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    fake.apps.clear()
    result = run(http, "list")
    assert result.exit_code == 0 and "tepui apps deploy FILE" in result.output


def test_show_an_app_with_or_without_the_leading_slash(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    for app_id in ("/shop/cart", "shop/cart"):
        result = run(http, "show", app_id)
        assert result.exit_code == 0, result.output
        assert fake.requests[-1]["path"] == f"{PREFIX}/apps/shop/cart"
    assert_aligned(result.output)
    assert "2 healthy / 3 wanted" in result.output and "python -m cart" in result.output
    assert "cart.0 TASK_FAILED 1m ago: exited with 3" in result.output
    assert "v2 (current)" in result.output and "env=prod,team=shop" in result.output
    result = run(http, "show", "/shop/cart", "--json")
    assert json.loads(result.output)["spec"]["command"] == "python -m cart"


def test_tasks_table(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    result = run(http, "tasks", "/shop/cart")
    assert result.exit_code == 0, result.output
    assert fake.requests[-1]["path"] == f"{PREFIX}/apps/shop/cart/tasks"
    assert_aligned(result.output)
    rows = table_rows(result.output)
    assert rows[0] == ["TASK", "VERSION", "STATE", "HEALTHY", "READY", "HOST", "PORTS", "STARTED"]
    assert rows[1] == ["cart.2", "v2", "RUNNING", "yes", "yes", "node-2", "31002,31003", "3h"]
    assert rows[2] == ["cart.1", "v2", "RUNNING", "yes", "yes", "node-1", "31000,31001", "2m"]
    assert rows[3][:7] == ["cart.3", "v2", "STAGING", "-", "no", "node-10.example.com", "-"]


def test_why_prints_reasons_decisions_and_the_summary(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    result = run(http, "why", "search-indexer-long-name")
    assert result.exit_code == 0, result.output
    assert fake.requests[-1]["path"] == f"{PREFIX}/apps/search-indexer-long-name/why"
    assert_aligned(result.output)
    assert "12 instance(s) waiting, 40 offer(s) seen in the last minute" in result.output
    rows = table_rows(result.output)
    assert rows[0] == ["REASON", "COUNT"]
    assert rows[1] == ["not enough mem (4096 MiB wanted, at most 2048 offered)", "31"]
    assert "a-22" in result.output and "1m" in result.output
    assert result.output.rstrip().endswith("No agent has 4096 MiB free: lower mem or add a larger agent.")


def test_scale_restart_rollback_post_and_follow(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    result = run(http, "scale", "shop/cart", "5")
    assert result.exit_code == 0, result.output
    assert "✓ /shop/cart version v3: 5 healthy" in result.output
    assert (fake.requests[0]["method"], fake.requests[0]["path"]) == ("POST", f"{PREFIX}/apps/shop/cart/scale")
    assert json.loads(fake.requests[0]["body"]) == {"instances": 5}
    assert fake.requests[0]["content_type"] == "application/json"

    fake.requests.clear()
    assert run(http, "restart", "/shop/cart", "--detach").exit_code == 0
    assert [(r["path"], json.loads(r["body"])) for r in fake.requests] == [(f"{PREFIX}/apps/shop/cart/restart", {})]

    fake.requests.clear()
    result = run(http, "rollback", "/shop/cart", "--to", "v1")
    assert result.exit_code == 0 and "✓ /shop/cart version v4: 3 healthy" in result.output
    assert json.loads(fake.requests[0]["body"]) == {"to": "v1"}
    result = run(http, "rollback", "/shop/cart", "--to", "v0")
    assert result.exit_code == 1 and "error: /shop/cart has no version v0" in result.output


def test_rm_waits_until_removed(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    result = run(http, "rm", "/shop/cart")
    assert result.exit_code == 0, result.output
    assert "✓ /shop/cart removed" in result.output
    assert (fake.requests[0]["method"], fake.requests[0]["path"]) == ("DELETE", f"{PREFIX}/apps/shop/cart")
    assert fake.requests[-1]["path"] == f"{PREFIX}/deployments/d-1"


def test_unknown_app_says_how_to_find_one(api: tuple[FakeServices, str]) -> None:
    _fake, http = api
    result = run(http, "show", "/nope")
    assert result.exit_code == 1 and "error: no app /nope" in result.output and "tepui apps list" in result.output


def test_deployments_and_cancel(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    fake.running_polls = 10_000
    assert run(http, "scale", "/shop/cart", "4", "--detach").exit_code == 0
    result = run(http, "deployments")
    assert result.exit_code == 0, result.output
    assert_aligned(result.output)
    rows = table_rows(result.output)
    assert rows[0] == ["ID", "APP", "KIND", "VERSION", "STATUS", "HEALTHY", "OLD", "STARTED", "MESSAGE"]
    assert rows[1] == ["d-1", "/shop/cart", "scale", "v1 -> v3", "RUNNING", "1/4", "3", "5s", "-"]

    result = run(http, "cancel", "d-1")
    assert result.exit_code == 0, result.output
    assert (fake.requests[-1]["method"], fake.requests[-1]["path"]) == ("DELETE", f"{PREFIX}/deployments/d-1")
    assert fake.requests[-1]["query"] == {"force": "false"}
    assert "deployment d-1 cancelled" in result.output and "rollback deployment d-2" in result.output
    result = run(http, "cancel", "d-2", "--force")
    assert result.exit_code == 0 and fake.requests[-1]["query"] == {"force": "true"}
    result = run(http, "cancel", "d-77")
    assert result.exit_code == 1 and "error: no deployment d-77" in result.output


def test_no_services_framework_suggests_starting_it(api: tuple[FakeServices, str]) -> None:
    fake, http = api
    fake.framework_running = False
    result = run(http, "list")
    assert result.exit_code == 1
    assert "services framework is not running" in result.output
    assert "tepui services" in result.output and "tepui up" in result.output


def test_no_master_says_how_to_start_one() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(f"127.0.0.1:{port}", "list")
    assert result.exit_code == 1
    assert "cannot reach the master's HTTP API" in result.output and "tepui up" in result.output
