""""Why isn't it running?" (WhyLog) and the API's read values (views), on a fake clock."""

from __future__ import annotations

import pytest

from tepui.frameworks.services import views
from tepui.frameworks.services.why import RECENT, WINDOW, WhyLog
from tepui.sdk import TaskState
from tests.frameworks.test_core import Sim, offer, running_app, spec

UNIQUE_H1 = "constraint hostname UNIQUE: h1 already runs an instance"
UNIQUE_H2 = "constraint hostname UNIQUE: h2 already runs an instance"

# --- WhyLog ------------------------------------------------------------------------------------


def test_why_report_counts_reasons_most_frequent_first() -> None:
    log = WhyLog()
    log.refused("/web", "a1", "h1", "insufficient mem: needs 512, offer has 256", 1.0)
    log.refused("/web", "a2", "h2", "port 80 is not free on this agent", 2.0)
    log.refused("/web", "a1", "h1", "insufficient mem: needs 512, offer has 256", 3.0)
    log.refused("/other", "a1", "h1", "something else", 3.0)
    report = log.report("/web", waiting=2, backoff_seconds=0.0, role="*", now=4.0)
    assert report == {
        "app": "/web", "waiting": 2, "offers_seen": 3,
        "reasons": {"insufficient mem: needs 512, offer has 256": 2, "port 80 is not free on this agent": 1},
        "recent": [
            {"agent_id": "a1", "hostname": "h1", "reason": "insufficient mem: needs 512, offer has 256", "at": 1.0},
            {"agent_id": "a2", "hostname": "h2", "reason": "port 80 is not free on this agent", "at": 2.0},
            {"agent_id": "a1", "hostname": "h1", "reason": "insufficient mem: needs 512, offer has 256", "at": 3.0},
        ],
        "backoff_seconds": 0.0,
        "summary": "2 instance(s) wait: 3 offer(s) from 2 agent(s) were refused in the last minute, most often "
                   "because insufficient mem: needs 512, offer has 256 (2x). Add capacity or relax the app's "
                   "constraints and resources.",
    }
    assert list(report["reasons"]) == ["insufficient mem: needs 512, offer has 256",
                                       "port 80 is not free on this agent"]


def test_why_keeps_the_last_minute_and_the_last_twenty() -> None:
    log = WhyLog()
    for k in range(30):
        log.refused("/web", f"a{k}", f"h{k}", "r", float(k))
    report = log.report("/web", 1, 0.0, "*", 29.0)
    assert report["offers_seen"] == 30
    assert len(report["recent"]) == RECENT and report["recent"][0]["at"] == 10.0
    # 60 s later only the decisions of the last minute count.
    report = log.report("/web", 1, 0.0, "*", 20.0 + WINDOW)
    assert report["offers_seen"] == 10 and report["reasons"] == {"r": 10}
    assert log.report("/web", 1, 0.0, "*", 100.0)["offers_seen"] == 0


@pytest.mark.parametrize("waiting,backoff,decisions,summary", [
    (0, 0.0, 1, "Nothing is waiting: every instance the app wants has been launched."),
    (1, 12.345, 1, "1 instance(s) wait for the launch backoff (12.3 s left) after repeated failures: "
                   "see `tepui apps show` for the last failure."),
    (3, 0.0, 0, "3 instance(s) wait, and no offer was seen in the last minute: the cluster has no free "
                "resources for role 'web', or the offers go to other frameworks. Add agents or free capacity "
                "(`tepui state`)."),
])
def test_why_summary_says_what_to_do(waiting: int, backoff: float, decisions: int, summary: str) -> None:
    log = WhyLog()
    for _ in range(decisions):
        log.refused("/web", "a1", "h1", "r", 1.0)
    report = log.report("/web", waiting, backoff, "web", 2.0)
    assert report["summary"] == summary
    assert report["backoff_seconds"] == round(backoff, 3)


def test_why_forget() -> None:
    log = WhyLog()
    log.refused("/web", "a1", "h1", "r", 1.0)
    log.forget("/web")
    assert log.report("/web", 1, 0.0, "*", 2.0)["offers_seen"] == 0


# --- views.why from the core -----------------------------------------------------------------


def test_views_why_reports_the_constraint_that_holds_an_instance_back() -> None:
    sim = Sim()
    sim.deploy(spec(instances=3, constraints=[["hostname", "UNIQUE"]]), 1.0)
    sim.offers(2.0, offer("o1", "a1", "h1"), offer("o2", "a2", "h2"))
    sim.offers(5.0, offer("o3", "a1", "h1"))
    why = views.why(sim.core, "/web", 6.0)
    assert why == {
        "app": "/web", "waiting": 1, "offers_seen": 3,
        "reasons": {UNIQUE_H1: 2, UNIQUE_H2: 1},
        "recent": [{"agent_id": "a1", "hostname": "h1", "reason": UNIQUE_H1, "at": 2.0},
                   {"agent_id": "a2", "hostname": "h2", "reason": UNIQUE_H2, "at": 2.0},
                   {"agent_id": "a1", "hostname": "h1", "reason": UNIQUE_H1, "at": 5.0}],
        "backoff_seconds": 0.0,
        "summary": f"1 instance(s) wait: 3 offer(s) from 2 agent(s) were refused in the last minute, most often "
                   f"because {UNIQUE_H1} (2x). Add capacity or relax the app's constraints and resources.",
    }


def test_views_why_during_the_launch_backoff() -> None:
    sim = Sim()
    sim.deploy(spec(instances=1, backoff={"backoff_seconds": 30.0}), 1.0)
    sim.offers(1.0, offer("o1"))
    sim.update(2.0, "web.id2", TaskState.FAILED)
    why = views.why(sim.core, "/web", 12.0)
    assert why["waiting"] == 1 and why["backoff_seconds"] == 20.0
    assert why["summary"].startswith("1 instance(s) wait for the launch backoff (20.0 s left)")
    # Offers during the backoff are not considered for the app at all.
    sim.offers(13.0, offer("o2"))
    assert views.why(sim.core, "/web", 13.0)["offers_seen"] == 0
    assert views.app_summary(sim.core, "/web", 12.0)["backoff_seconds"] == 20.0


def test_views_why_when_nothing_waits() -> None:
    sim = Sim()
    running_app(sim, spec(instances=1), 1.0)
    why = views.why(sim.core, "/web", 5.0)
    assert why["waiting"] == 0 and why["summary"].startswith("Nothing is waiting")


# --- apps ----------------------------------------------------------------------------------------


def test_parse_selector() -> None:
    assert views.parse_selector("env=prod,team=x") == [("env", "prod"), ("team", "x")]
    assert views.parse_selector(" env = prod , canary ,") == [("env", "prod"), ("canary", None)]
    assert views.parse_selector("") == []
    assert views.parse_selector("note=a=b") == [("note", "a=b")]


def label_world() -> Sim:
    sim = Sim()
    sim.deploy(spec(id="/a", instances=0, labels={"env": "prod", "team": "x"}), 1.0)
    sim.deploy(spec(id="/b", instances=0, labels={"env": "prod", "team": "y"}), 1.0)
    sim.deploy(spec(id="/c", instances=0, labels={"env": "dev", "team": "x", "canary": ""}), 1.0)
    sim.deploy(spec(id="/d", instances=0), 1.0)
    return sim


@pytest.mark.parametrize("selector,apps", [
    ("", ["/a", "/b", "/c", "/d"]),
    ("env=prod", ["/a", "/b"]),
    ("env=prod,team=x", ["/a"]),
    ("team=x", ["/a", "/c"]),
    ("canary", ["/c"]),
    ("canary=", ["/c"]),
    ("env", ["/a", "/b", "/c"]),
    ("env=staging", []),
])
def test_list_apps_label_selector(selector: str, apps: list[str]) -> None:
    sim = label_world()
    assert [a["id"] for a in views.list_apps(sim.core, selector, 2.0)["apps"]] == apps


def test_app_summary_counts_every_kind_of_instance() -> None:
    sim = Sim()
    hc = [{"interval_seconds": 10.0, "timeout_seconds": 5.0}]
    answer, _ = sim.deploy(spec(instances=5, cpus=0.25, mem=64.0, ports=[{"port": 0}], health_checks=hc,
                                labels={"env": "prod"}), 1.0)
    # Two fit on the offer: three wait.
    sim.offers(2.0, offer("o1", resources="cpus:0.5;mem:4096;ports:[31000-31100]"))
    sim.offers(2.5, offer("o2", "a2", "h2", resources="cpus:0.5;mem:4096;ports:[31000-31100]"))
    sim.update(3.0, "web.id2", TaskState.RUNNING, healthy=True)
    sim.update(3.0, "web.id3", TaskState.RUNNING, healthy=False)
    sim.update(3.0, "web.id4", TaskState.RUNNING, agent="a2")  # health not known yet
    summary = views.app_summary(sim.core, "/web", 4.0)
    assert summary == {
        "id": "/web", "version": answer["version"], "instances": 5, "running": 3, "healthy": 1,
        "unhealthy": 2, "staged": 1, "waiting": 1, "deployment": answer["deployment"], "removing": False,
        "labels": {"env": "prod"}, "backoff_seconds": 0.0, "cpus": 0.25, "mem": 64.0,
    }


def test_app_detail_has_spec_versions_tasks_and_last_failure() -> None:
    sim = Sim()
    app = spec(instances=1, ports=[{"port": 0}], health_checks=[{"interval_seconds": 10.0, "timeout_seconds": 5.0}])
    v1 = running_app(sim, app, 1.0, healthy=True)
    answer, _ = sim.command("scale", "/web", 2, 10.0)
    sim.offers(11.0, offer("o1", "a2", "h2", address="10.0.0.2"))
    sim.update(12.0, "web.id4", TaskState.FAILED, message="exit 1", agent="a2")
    detail = views.app_detail(sim.core, "/web", 13.0)
    assert detail["spec"] == {**app.to_data(), "instances": 2}
    assert detail["versions"] == [
        {"version": answer["version"], "created_at": 10.0, "reason": "scale to 2", "config_version": v1},
        {"version": v1, "created_at": 1.0, "reason": "deploy", "config_version": v1},
    ]
    assert detail["versions"] == views.versions(sim.core, "/web")["versions"]
    assert detail["last_failure"] == {"task_id": "web.id4", "state": "TASK_FAILED", "message": "exit 1", "at": 12.0}
    assert detail["tasks"] == [{
        "task_id": "web.id2", "app": "/web", "version": v1, "agent_id": "a1", "hostname": "h1", "host": None,
        "state": "TASK_RUNNING", "healthy": True, "ready": True, "ports": [31000], "started_at": 2.0,
        "running_at": 3.0, "killing": False, "message": None,
    }]
    assert detail["waiting"] == 1 and detail["backoff_seconds"] == 0.0  # 1 s backoff, over at 13
    for key in ("id", "version", "instances", "running", "healthy", "staged", "unhealthy", "waiting",
                "deployment", "labels", "backoff_seconds", "cpus", "mem"):
        assert key in detail


def test_tasks_view_healthy_is_null_until_known_and_sorted_by_launch() -> None:
    sim = Sim()
    sim.deploy(spec(instances=2), 1.0)
    sim.offers(2.0, offer("o1", resources="cpus:0.5;mem:4096"))
    sim.offers(3.0, offer("o2", "a2", "h2", address="10.0.0.2"))
    sim.update(4.0, "web.id3", TaskState.RUNNING, agent="a2")
    tasks = views.tasks(sim.core, "/web")["tasks"]
    assert [(t["task_id"], t["state"], t["healthy"], t["ready"], t["host"]) for t in tasks] == [
        ("web.id2", "TASK_STAGING", None, False, None),
        ("web.id3", "TASK_RUNNING", True, True, "10.0.0.2"),  # no health checks: healthy when running
    ]
    sim.command("scale", "/web", 1, 5.0, force=True)
    # Scaling down kills the instance that is not up yet rather than the running one.
    assert [t["killing"] for t in views.tasks(sim.core, "/web")["tasks"]] == [True, False]


def test_deployments_running_first_then_the_latest_finished() -> None:
    sim = Sim()
    sim.deploy(spec(id="/a", instances=0), 1.0)      # id1: finishes at once (nothing to start)
    sim.deploy(spec(id="/b", instances=1), 2.0)      # id2: running
    sim.deploy(spec(id="/c", instances=0), 3.0)      # id3: finishes at 3
    sim.deploy(spec(id="/d", instances=1), 4.0)      # id4: running
    sim.command("cancel", "id4", True, 5.0)          # id4: cancelled at 5
    sim.deploy(spec(id="/e", instances=1), 6.0)      # id5: running
    order = [(d["id"], d["status"]) for d in views.deployments(sim.core)["deployments"]]
    assert order == [("id5", "RUNNING"), ("id2", "RUNNING"), ("id4", "CANCELLED"), ("id3", "SUCCEEDED"),
                     ("id1", "SUCCEEDED")]
