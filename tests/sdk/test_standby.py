"""tepui.sdk.standby: exactly what a framework instance that does not lead answers."""

from __future__ import annotations

from tepui.sdk.leadership import LeaderInfo
from tepui.sdk.standby import StandbyAnswer, standby_answer

OWN = LeaderInfo(id="services@127.0.0.1:6001", http="http://127.0.0.1:6001")
LEADER = LeaderInfo(id="services@127.0.0.1:6000", http="http://127.0.0.1:6000/", epoch=3)
LEADER_BODY = {"id": "services@127.0.0.1:6000", "http": "http://127.0.0.1:6000/", "epoch": 3}


def test_a_call_is_redirected_to_the_leader_with_its_path_and_query() -> None:
    assert standby_answer("/v1/apps/web?embed=tasks&x=%2F", OWN, LEADER, elected=False) == StandbyAnswer(
        307, (("Location", "http://127.0.0.1:6000/v1/apps/web?embed=tasks&x=%2F"),),
        {"error": "this instance (services@127.0.0.1:6001) is a standby; the leader (services@127.0.0.1:6000) "
                  "answers at http://127.0.0.1:6000/", "reason": "NOT_LEADER", "leader": LEADER_BODY})


def test_without_a_serving_leader_a_call_is_503_with_retry_after() -> None:
    assert standby_answer("/v1/apps", OWN, None, elected=False) == StandbyAnswer(
        503, (("Retry-After", "1"),),
        {"error": "no instance leads yet (an election is in progress, or the new leader is recovering); retry in a "
                  "moment", "reason": "NO_LEADER", "instance": OWN.id, "role": "standby"})


def test_an_elected_instance_recovering_its_store_redirects_nowhere() -> None:
    answer = standby_answer("/v1/apps", OWN, LEADER, elected=True)
    assert (answer.code, answer.headers, answer.body["role"]) == (503, (("Retry-After", "1"),), "recovering")
    assert answer.body["error"].startswith("this instance was just elected and is recovering its store")


def test_itself_as_leader_or_a_leader_without_url_is_no_target() -> None:
    assert standby_answer("/v1/apps", OWN, LeaderInfo(id=OWN.id, http=OWN.http, epoch=1), False).code == 503
    assert standby_answer("/v1/apps", OWN, LeaderInfo(id="other", epoch=1), False).code == 503


def test_health_is_200_and_names_the_leader() -> None:
    for path in ("/health", "/v1/health", "/v1/health?verbose=1"):
        assert standby_answer(path, OWN, LEADER, elected=False) == StandbyAnswer(
            200, (), {"ok": True, "role": "standby", "instance": OWN.id, "subscribed": False, "leader": LEADER_BODY})
    assert standby_answer("/v1/health", OWN, None, elected=True).body == {
        "ok": True, "role": "recovering", "instance": OWN.id, "subscribed": False, "leader": None}
