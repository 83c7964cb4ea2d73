"""``tepui jobs why``: the queue position, each stage's reason, the offers refused and why, and
the shape that fits nowhere — exact values after exact rounds."""

from __future__ import annotations

from tepui.frameworks.batch.queue_values import AttributeRule, OfferView, TaskRequest
from tepui.frameworks.batch.queue_why import explain
from tepui.frameworks.batch.queues import BatchQueues
from tepui.sdk.resources import Resources


def test_a_shape_that_fits_nowhere_is_named_with_what_the_largest_offer_lacks() -> None:
    queues = BatchQueues()
    queues.add_indices(TaskRequest("big", "train", "ana", "default", Resources.of(cpus=16, mem=100)), range(2))
    queues.assign([OfferView("o1", "a1", Resources.of(cpus=4, mem=1000), "h1"),
                   OfferView("o2", "a2", Resources.of(cpus=8, mem=1000), "h2")], 0.0)
    why = explain(queues, "big")
    assert why == {
        "job": "big", "queue": "default", "position": 1, "waiting_jobs": 1, "ahead_in_higher_queues": 0,
        "pending": 2,
        "stages": [{"stage": "train", "waiting": 2, "reason": "no offer fits its shape",
                    "detail": "cpus:16;mem:100 fits none of 2 offer(s)"}],
        "offers_seen": 2,
        "refusals": {"too small: missing cpus:12": 1, "too small: missing cpus:8": 1},
        "recent": [
            {"stage": "train", "offer_id": "o1", "agent_id": "a1", "hostname": "h1", "reason": "too small: missing cpus:12"},
            {"stage": "train", "offer_id": "o2", "agent_id": "a2", "hostname": "h2", "reason": "too small: missing cpus:8"},
        ],
        "fits_nowhere": [{"stage": "train", "resources": "cpus:16;mem:100", "rules": [], "largest_offer": "cpus:8;mem:1000",
                          "missing_from_largest": "cpus:8"}],
        "summary": "Stage train asks for cpus:16;mem:100, which fits none of the 2 offer(s) seen (the largest lacks "
                   "cpus:8): lower its resources or relax its constraints, or add agents that can hold it.",
    }


def test_a_job_behind_others_is_told_its_position_and_the_rules_that_refused() -> None:
    queues = BatchQueues()
    shape = Resources.of(cpus=1, mem=10)
    queues.add_indices(TaskRequest("first", "s", "ana", "default", shape, submitted=1), range(2))
    queues.add_indices(TaskRequest("second", "s", "ana", "default", shape, submitted=2,
                                   constraints=(AttributeRule("rack", "IS", "r1"),)), range(1))
    queues.assign([OfferView("o1", "a1", Resources.of(cpus=2, mem=100), "h1", {"rack": "r1"}),
                   OfferView("o2", "a2", Resources.of(cpus=2, mem=100), "h2", {"rack": "r2"})], 0.0)
    queues.add_indices(TaskRequest("first", "s", "ana", "default", shape, submitted=1), range(2, 4))
    why = explain(queues, "second")
    assert (why["position"], why["waiting_jobs"], why["pending"]) == (2, 2, 1)
    assert why["refusals"] == {"lower in fairness order": 1, "rack=r2 fails rack IS r1": 1}
    assert why["fits_nowhere"] == []
    assert why["summary"] == ("1 task(s) of job second wait: tasks ahead of it in fairness order (other users' lower "
                              "shares, higher queues, higher priority or earlier jobs) took the offers. It is number "
                              "2 in its queue.")
    assert explain(queues, "nothing")["summary"] == "Nothing of job nothing is pending."


def test_refusals_name_the_rule_the_size_or_the_ports() -> None:
    from tepui.frameworks.batch.queue_why import refusal

    request = TaskRequest("j", "s", "ana", "default", Resources.of(cpus=1), ports=2,
                          constraints=(AttributeRule("zone", "IS", "a"),))
    assert refusal(request, OfferView("o", "a", Resources.of(cpus=4), "h", {"zone": "b"})) == "zone=b fails zone IS a"
    assert refusal(request, OfferView("o", "a", Resources.of(cpus=0.5), "h", {"zone": "a"})) == \
        "too small: missing cpus:0.5"
    assert refusal(request, OfferView("o", "a", Resources.of(cpus=4), "h", {"zone": "a"})) == "too few ports: 0 of 2"
    assert refusal(request, OfferView("o", "a", Resources.parse("cpus:4;ports:[1-2]"), "h", {"zone": "a"})) is None
