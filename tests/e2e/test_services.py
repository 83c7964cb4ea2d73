"""The services framework end to end (issue 7): a real master, two real agents (hostnames agent-1
and agent-2, disjoint port ranges), a real `tepui services` process, reached through the master's
`/frameworks/services/` proxy with the cluster's token — as `tepui apps` reaches it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, child_env, processes_under, cmdline, tepui_cmd
from tests.e2e.services_harness import EventStream, Services, http_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("services")
    # Fast failure detection, so that "kill an agent" is seen in ~1.5 s rather than 10 s.
    cluster = Cluster(root, agents=2, kill_grace_period=1.0, distinct_ports=True,
                      master_args=["--agent-ping-interval", "0.5", "--max-agent-ping-timeouts", "3",
                                   "--allocation-interval", "0.2"])
    with Services(cluster, root).running() as framework:
        yield framework


def _serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _task_pid(cluster: Cluster, port: int) -> int:
    for pid in processes_under(cluster.agents_root):
        if f"http.server {port}" in cmdline(pid):
            return pid
    raise AssertionError(f"no task process serving port {port}")


def _remove(services: Services, app_id: str) -> None:
    status, body = services.call("DELETE", "/apps" + app_id)
    assert status == 202, body
    services.wait_deployment(body["deployment"], 30)
    services.wait(lambda: services.call("GET", "/apps" + app_id)[0] == 404, 10, f"{app_id} forgotten")


def test_deploy_five_instances_with_http_health_checks_all_healthy(services: Services) -> None:
    answer = services.deploy(http_app("/web", 5))
    assert answer["created"] is True
    finished = services.wait_deployment(answer["deployment"])
    assert finished["status"] == "SUCCEEDED", finished
    tasks = services.healthy_tasks("/web")
    assert len(tasks) == 5
    for task in tasks:
        assert _serves(task["ports"][0]), task
    app = services.app("/web")
    assert (app["instances"], app["healthy"], app["running"], app["waiting"]) == (5, 5, 5, 0)
    # Tasks carry their app's labels (the master sees them too).
    state = services.cluster.state()
    labels = [t["labels"] for f in state["frameworks"] if f["name"] == "services" for t in f["tasks"]]
    assert sum(1 for lab in labels if lab.get("tepui.services/app") == "/web" and lab.get("suite") == "e2e") == 5


def test_killed_task_is_replaced(services: Services) -> None:
    before = {t["task_id"]: t for t in services.healthy_tasks("/web")}
    assert len(before) == 5
    victim = next(iter(before.values()))
    os.kill(_task_pid(services.cluster, victim["ports"][0]), signal.SIGKILL)

    def replaced() -> bool:
        now = {t["task_id"] for t in services.healthy_tasks("/web")}
        return len(now) == 5 and victim["task_id"] not in now

    services.wait(replaced, 30, "the killed task replaced by a healthy one")
    assert services.app("/web")["last_failure"]["task_id"] == victim["task_id"]


def test_killed_agent_instances_are_replaced_on_the_other_agent(services: Services) -> None:
    cluster = services.cluster
    healthy = services.healthy_tasks("/web")
    # The agent with the most instances dies (offers may have put all five on one agent).
    counts = {host: sum(1 for t in healthy if t["hostname"] == host) for host in ("agent-1", "agent-2")}
    victim = max(counts, key=lambda host: counts[host])
    survivor = "agent-2" if victim == "agent-1" else "agent-1"
    index = int(victim.split("-")[1])
    on_victim = [t for t in healthy if t["hostname"] == victim]
    assert on_victim
    cluster.processes[victim].send_signal(signal.SIGKILL)
    cluster.processes[victim].wait(10)
    try:
        def all_on_survivor() -> bool:
            now = services.healthy_tasks("/web")
            return len(now) == 5 and all(t["hostname"] == survivor for t in now)

        services.wait(all_on_survivor, 40, f"every /web instance running healthy on {survivor}")
    finally:
        # The SIGKILLed agent's tasks kept running: its next start recovers them, and the
        # framework (which replaced and forgot them) kills them.
        cluster.start_agent(index)
    lost = {t["task_id"] for t in on_victim}

    def orphans_gone() -> bool:
        state = cluster.state()
        running = {t["id"] for f in state["frameworks"] for t in f["tasks"] if t["state"] == "TASK_RUNNING"}
        return state["activated_slaves"] == 2 and not (running & lost)

    services.wait(orphans_gone, 40, f"{victim} back and the replaced instances' tasks killed")
    assert len(services.healthy_tasks("/web")) == 5


def test_rolling_upgrade_never_below_minimum_health_capacity(services: Services) -> None:
    events = EventStream(services)
    try:
        assert events.connected.wait(10), "no event stream"
        strategy = "upgrade_strategy: {minimum_health_capacity: 0.6, maximum_over_capacity: 0.2}"
        answer = services.deploy(http_app("/web", 5, version_env="2", extra=strategy))
        finished = services.wait_deployment(answer["deployment"], 90)
        assert finished["status"] == "SUCCEEDED", finished
        samples = [e["app_healthy"] for e in events.of("status_update", "/web") + events.of("health_changed", "/web")]
        assert samples, "no status events seen for /web"
        assert min(samples) >= 3, f"healthy instances dropped to {min(samples)}: {samples}"
        steps = [e for e in events.of("deployment_step") if e["id"] == answer["deployment"]]
        assert steps and steps[-1]["progress"]["target"] == 5
        assert any(e["id"] == answer["deployment"] and e["status"] == "SUCCEEDED"
                   for e in events.of("deployment_finished"))
    finally:
        events.close()
    tasks = services.healthy_tasks("/web")
    assert len(tasks) == 5 and {t["version"] for t in tasks} == {finished["version"]}


def test_failing_health_check_rolls_back_at_the_deadline(services: Services) -> None:
    first = services.deploy(http_app("/rb", 2))
    assert services.wait_deployment(first["deployment"])["status"] == "SUCCEEDED"
    old_tasks = {t["task_id"] for t in services.healthy_tasks("/rb")}
    broken = http_app("/rb", 2, version_env="broken", health_path="/no-such-page",
                      extra="upgrade_strategy: {progress_deadline_seconds: 8, auto_rollback: true}")
    second = services.deploy(broken)
    failed = services.wait_deployment(second["deployment"], 40)
    assert failed["status"] == "FAILED", failed
    assert "progress_deadline_seconds" in failed["message"] and failed["rollback"], failed
    rollback = services.wait_deployment(failed["rollback"], 40)
    assert rollback["status"] == "SUCCEEDED", rollback
    app = services.app("/rb")
    assert app["spec"]["health_checks"][0]["path"] == "/"
    assert app["spec"]["env"] == {"VERSION": "1"}
    # The old instances were never stopped (minimum_health_capacity 1.0): the same tasks serve.
    assert {t["task_id"] for t in services.healthy_tasks("/rb")} == old_tasks
    _remove(services, "/rb")


def test_unique_hostname_places_two_of_three_and_why_explains_the_third(services: Services) -> None:
    spec = http_app("/uniq", 3, extra="constraints: [[hostname, UNIQUE]]")
    answer = services.deploy(spec)
    services.wait(lambda: len(services.healthy_tasks("/uniq")) == 2, 30, "two /uniq instances healthy")
    hosts = sorted(t["hostname"] for t in services.healthy_tasks("/uniq"))
    assert hosts == ["agent-1", "agent-2"]

    def explained() -> bool:
        _, why = services.call("GET", "/apps/uniq/why")
        return why["waiting"] == 1 and why["offers_seen"] > 0

    services.wait(explained, 30, "why to report refused offers")
    _, why = services.call("GET", "/apps/uniq/why")
    assert any("UNIQUE" in reason for reason in why["reasons"]), why
    assert "UNIQUE" in why["summary"]
    assert services.deployment(answer["deployment"])["status"] == "RUNNING"
    cli = subprocess.run(tepui_cmd("apps", "why", "/uniq", "--http", f"http://127.0.0.1:{services.cluster.http_port}"),
                         capture_output=True, text=True, env=child_env(), timeout=30)
    assert cli.returncode == 0, cli.stderr
    assert "UNIQUE" in cli.stdout
    _remove(services, "/uniq")


def test_framework_restart_mid_deployment_resumes_without_duplicates(services: Services) -> None:
    # Slow starters: the deployment is still running when the framework dies.
    spec = http_app("/resume", 4, grace=30).replace("command: python3", "command: sleep 3 && exec python3")
    answer = services.deploy(spec)
    services.wait(lambda: len(services.tasks("/resume")) >= 2, 10, "some /resume instances launched")
    assert services.deployment(answer["deployment"])["status"] == "RUNNING"
    services.kill()
    time.sleep(1)
    services.start()
    finished = services.wait_deployment(answer["deployment"], 60)
    assert finished["status"] == "SUCCEEDED", finished
    tasks = services.healthy_tasks("/resume")
    assert len(tasks) == 4
    state = services.cluster.state()
    ours = [f for f in state["frameworks"] if f["name"] == "services"]
    active = [t for f in ours for t in f["tasks"] if t["labels"].get("tepui.services/app") == "/resume"]
    ended = [t for f in ours for t in f["completed_tasks"] if t["labels"].get("tepui.services/app") == "/resume"]
    # Exactly the four instances run at the master: none launched twice, none left behind...
    assert sorted(t["id"] for t in active) == sorted(t["task_id"] for t in tasks), active
    # ...and no surplus had to be killed (a duplicate would have been): the only ended tasks, if
    # any, are ones that failed on their own and were replaced.
    assert not [t for t in ended if t["state"] == "TASK_KILLED"], ended
    _remove(services, "/resume")


@pytest.mark.parametrize("spec, field", [
    ("id: /bad\ncommand: sleep 100\nintances: 2\n", "intances"),
    ("id: /bad\ncommand: sleep 100\ninstances: -1\n", "instances"),
    ("id: /bad\ncommand: sleep 100\nconstraints: [[hostname, NEAR]]\n", "constraints[0]"),
])
def test_invalid_spec_is_refused_with_422_naming_the_field(services: Services, spec: str, field: str) -> None:
    status, body = services.call("POST", "/apps", spec, "application/yaml")
    assert status == 422, body
    assert body["reason"] == "INVALID_APP" and body["field"] == field, body
    assert services.call("GET", "/apps/bad")[0] == 404
    assert all(a["id"] != "/bad" for a in services.call("GET", "/apps")[1]["apps"])


def test_label_selector_and_cli_deploy_of_the_example(services: Services) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "services" / "hello.yaml"
    http = f"http://127.0.0.1:{services.cluster.http_port}"
    deploy = subprocess.run(tepui_cmd("apps", "deploy", str(example), "--http", http, "--timeout", "90"),
                            capture_output=True, text=True, env=child_env(), timeout=120)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "3 healthy" in deploy.stdout
    _, listed = services.call("GET", "/apps?label=team=tour,env=dev")
    assert [a["id"] for a in listed["apps"]] == ["/hello"]
    _, none = services.call("GET", "/apps?label=team=other")
    assert none["apps"] == []
    listing = subprocess.run(tepui_cmd("apps", "list", "-l", "team=tour", "--http", http), capture_output=True,
                             text=True, env=child_env(), timeout=30)
    assert listing.returncode == 0 and "/hello" in listing.stdout and "/web" not in listing.stdout
    _remove(services, "/hello")
