"""The batch queue: queues by priority with limits, DRF among users, first fit, gangs whole or
not at all, and a reason for every task left waiting — exact placements on exact offers."""

from __future__ import annotations

import pytest

from tepui.frameworks.batch.queue_values import (
    AttributeRule, OfferView, PendingTask, QueueConfig, QueueConfigError, QueuesConfig, Reason, TaskRef, TaskRequest,
    Waiting,
)
from tepui.frameworks.batch.queues import BatchQueues, QueuePosition
from tepui.sdk.resources import Resources


def req(job: str, user: str = "ana", queue: str = "default", cpus: float = 1, mem: float = 100, stage: str = "s",
        **more: object) -> TaskRequest:
    return TaskRequest(job, stage, user, queue, Resources.of(cpus=cpus, mem=mem), **more)  # type: ignore[arg-type]


def offer(n: int, cpus: float = 4, mem: float = 1000, **attributes: str) -> OfferView:
    return OfferView(f"o{n}", f"a{n}", Resources.of(cpus=cpus, mem=mem), f"h{n}", attributes)


def placed(assignment: object) -> list[tuple[str, str, int]]:
    """(offer, job, index) for every task placed, in placement order per offer."""
    return [(launch.offer_id, task.request.job_id, task.index)
            for launch in assignment.launches for task in launch.tasks]  # type: ignore[attr-defined]


# --- configuration --------------------------------------------------------------------------

def test_config_errors_name_the_field() -> None:
    with pytest.raises(QueueConfigError, match=r"queues\[1\]\.name: queue 'a' is defined twice"):
        QueuesConfig((QueueConfig("a"), QueueConfig("a")))
    with pytest.raises(QueueConfigError, match=r"queues\[0\]\.max_running: must be an integer >= 0, got -1"):
        QueuesConfig((QueueConfig("a", max_running=-1),))
    with pytest.raises(QueueConfigError, match=r"queues\[0\]\.priority: must be an integer"):
        QueuesConfig((QueueConfig("a", priority=1.5),))  # type: ignore[arg-type]
    with pytest.raises(QueueConfigError, match=r"weights\.bo: must be a number > 0, got 0"):
        QueuesConfig(weights=(("bo", 0),))
    with pytest.raises(QueueConfigError, match=r"queues\[0\]\.name: 'a b' must be"):
        QueuesConfig.from_dict({"queues": [{"name": "a b"}]})
    with pytest.raises(QueueConfigError, match=r"queues\[0\]\.limit: unknown field"):
        QueuesConfig.from_dict({"queues": [{"name": "a", "limit": 3}]})
    with pytest.raises(QueueConfigError, match=r"^queues: at least one queue is needed"):
        QueuesConfig.from_dict({"queues": []})
    config = QueuesConfig.from_dict({"queues": [{"name": "prod", "priority": 10, "max_running": 5}, {"name": "dev"}],
                                     "weights": {"ana": 2}})
    assert config == QueuesConfig((QueueConfig("prod", 10, 5), QueueConfig("dev")), (("ana", 2),))
    assert (config.weight("ana"), config.weight("bo")) == (2, 1.0)


def test_a_task_for_an_unknown_queue_is_refused() -> None:
    with pytest.raises(QueueConfigError, match=r"queue: no queue named 'nope' \(queues: default\)"):
        BatchQueues().add_indices(req("j", queue="nope"), [0])


# --- fairness -------------------------------------------------------------------------------

def test_users_share_the_offers_by_drf_then_fewer_running_then_earlier_submission() -> None:
    queues = BatchQueues()
    queues.add_indices(req("a1", "ana", submitted=1), range(4))
    queues.add_indices(req("b1", "bo", submitted=2), range(4))
    queues.started(PendingTask(req("a0", "ana", submitted=0), 0))  # ana already runs one task
    result = queues.assign([offer(1, cpus=3)], 0.0)
    # bo first (ana holds 1 cpu); then both hold 1 cpu and run 1 task: the earlier submission
    # (ana's, 1) goes; then ana holds 2 cpus and bo 1
    assert placed(result) == [("o1", "b1", 0), ("o1", "a1", 0), ("o1", "b1", 1)]
    assert queues.share("ana") == queues.share("bo") == pytest.approx(2 / 4)


def test_weights_scale_a_users_share() -> None:
    queues = BatchQueues(QueuesConfig(weights=(("ana", 2.0),)))
    queues.add_indices(req("a", "ana"), range(10))
    queues.add_indices(req("b", "bo"), range(10))
    result = queues.assign([offer(1, cpus=6)], 0.0)
    jobs = [job for _, job, _ in placed(result)]
    assert (jobs.count("a"), jobs.count("b")) == (4, 2)


def test_within_a_user_job_priority_then_submission_order() -> None:
    queues = BatchQueues()
    queues.add_indices(req("late", submitted=3), range(2))
    queues.add_indices(req("early", submitted=1), range(2))
    queues.add_indices(req("urgent", submitted=5, priority=9), range(2))
    result = queues.assign([offer(1, cpus=5)], 0.0)
    assert placed(result) == [("o1", "urgent", 0), ("o1", "urgent", 1), ("o1", "early", 0), ("o1", "early", 1),
                              ("o1", "late", 0)]
    assert result.waiting == (Waiting("late", "s", 1, Reason.OUTRANKED, "the offers that fit were taken by tasks "
                                                                         "ahead of it"),)


def test_higher_queues_first_and_each_queue_keeps_its_limit() -> None:
    config = QueuesConfig((QueueConfig("low", priority=1), QueueConfig("high", priority=5, max_running=2)))
    queues = BatchQueues(config)
    queues.add_indices(req("l", queue="low"), range(3))
    queues.add_indices(req("h", queue="high"), range(3))
    result = queues.assign([offer(1, cpus=4)], 0.0)
    assert placed(result) == [("o1", "h", 0), ("o1", "h", 1), ("o1", "l", 0), ("o1", "l", 1)]
    assert result.waiting == (
        Waiting("h", "s", 1, Reason.QUEUE_LIMIT, "queue high runs 2 of 2"),
        Waiting("l", "s", 1, Reason.OUTRANKED, "the offers that fit were taken by tasks ahead of it"))
    assert result.behind == ()
    assert queues.reasons("h") == [Waiting("h", "s", 1, Reason.QUEUE_LIMIT, "queue high runs 2 of 2")]
    assert queues.running_count("high") == 2
    queues.finished(TaskRef("h", "s", 0))
    queues.finished(TaskRef("h", "s", 0))  # a duplicate status update changes nothing
    assert queues.running_count("high") == 1
    assert placed(queues.assign([offer(2)], 1.0)) == [("o2", "h", 2), ("o2", "l", 2)]


# --- placement ------------------------------------------------------------------------------

def test_first_fit_in_offer_order_and_the_shape_that_fits_nowhere() -> None:
    queues = BatchQueues()
    queues.add_indices(req("big", cpus=8, submitted=1), range(1))
    queues.add_indices(req("small", cpus=2, submitted=2), range(3))
    result = queues.assign([offer(1, cpus=3), offer(2, cpus=3)], 0.0)
    assert placed(result) == [("o1", "small", 0), ("o2", "small", 1)]
    assert result.unused == ()
    assert queues.reasons("big") == [Waiting("big", "s", 1, Reason.NO_FIT, "cpus:8;mem:100 fits none of 2 offer(s)")]
    assert queues.reasons("small") == [Waiting("small", "s", 1, Reason.OUTRANKED, "the offers that fit were taken by "
                                                                                 "tasks ahead of it")]


def test_attribute_rules_choose_the_offers() -> None:
    queues = BatchQueues()
    queues.add_indices(req("gpu", constraints=(AttributeRule("kind", "IS", "gpu"),)), range(2))
    queues.add_indices(req("not-r1", constraints=(AttributeRule("rack", "UNLIKE", "r1"),)), range(1))
    queues.add_indices(req("host", constraints=(AttributeRule("hostname", "LIKE", "h[3-9]"),)), range(1))
    result = queues.assign([offer(1, cpus=1, kind="gpu", rack="r1"), offer(2, cpus=1, rack="r2"),
                            offer(3, cpus=1, kind="cpu")], 0.0)
    assert sorted(placed(result)) == [("o1", "gpu", 0), ("o2", "not-r1", 0), ("o3", "host", 0)]
    assert queues.reasons("gpu") == [Waiting("gpu", "s", 1, Reason.OUTRANKED, "the offers that fit were taken by "
                                                                             "tasks ahead of it")]
    rule = AttributeRule("kind", "IS", "gpu")
    assert rule.refuses(offer(2)) == "no attribute 'kind' (kind IS gpu)"
    assert rule.refuses(offer(3, kind="cpu")) == "kind=cpu fails kind IS gpu"
    with pytest.raises(ValueError, match="operator 'UNIQUE' must be IS, LIKE or UNLIKE"):
        AttributeRule("host", "UNIQUE", "")


def test_a_gang_is_placed_whole_across_offers() -> None:
    queues = BatchQueues()
    queues.add_indices(req("mpi", cpus=2, gang="mpi/s", gang_size=3), range(3))
    result = queues.assign([offer(1, cpus=2), offer(2, cpus=4)], 0.0)
    assert placed(result) == [("o1", "mpi", 0), ("o2", "mpi", 1), ("o2", "mpi", 2)]
    assert queues.pending_count() == 0 and queues.running_count() == 3


def test_a_gang_that_does_not_fit_whole_places_nothing_and_others_still_run() -> None:
    queues = BatchQueues()
    queues.add_indices(req("mpi", cpus=2, gang="mpi/s", gang_size=3, submitted=1), range(3))
    queues.add_indices(req("other", cpus=1, submitted=2), range(1))
    result = queues.assign([offer(1, cpus=2), offer(2, cpus=3)], 0.0)
    assert placed(result) == [("o1", "other", 0)]
    assert queues.reasons("mpi") == [Waiting("mpi", "s", 3, Reason.GANG_INCOMPLETE,
                                             "the offers left hold 2 of its 3 members")]
    assert queues.running_count() == 1


def test_a_gang_with_members_missing_waits_for_them() -> None:
    queues = BatchQueues()
    queues.add_indices(req("mpi", gang="g", gang_size=3), range(2))
    assert placed(queues.assign([offer(1)], 0.0)) == []
    assert queues.reasons("mpi") == [Waiting("mpi", "s", 2, Reason.GANG_INCOMPLETE, "2 of 3 members pending")]


def test_a_gang_over_two_stages_needs_both() -> None:
    queues = BatchQueues()
    queues.add_indices(req("spark", stage="driver", cpus=1, gang="spark", gang_size=3), [0])
    queues.add_indices(req("spark", stage="exec", cpus=2, gang="spark", gang_size=3), [0, 1])
    result = queues.assign([offer(1, cpus=3), offer(2, cpus=2)], 0.0)
    assert [(o, t.request.stage, t.index) for o, launch in [(x.offer_id, x) for x in result.launches]
            for t in launch.tasks] == [("o1", "driver", 0), ("o1", "exec", 0), ("o2", "exec", 1)]


def test_a_gang_bigger_than_the_queue_limit_waits() -> None:
    queues = BatchQueues(QueuesConfig((QueueConfig("default", max_running=2),)))
    queues.add_indices(req("mpi", gang="g", gang_size=3), range(3))
    assert placed(queues.assign([offer(1)], 0.0)) == []
    assert queues.reasons("mpi") == [Waiting("mpi", "s", 3, Reason.QUEUE_LIMIT,
                                             "the gang needs 3 slots, queue default has 2")]


# --- lifecycle ------------------------------------------------------------------------------

def test_no_task_is_pending_twice_or_pending_while_running() -> None:
    queues = BatchQueues()
    request = req("j")
    assert queues.add_indices(request, [0, 1, 1]) == 2
    assert queues.add([PendingTask(request, 1), PendingTask(request, 2)]) == 1
    queues.started(PendingTask(request, 0))  # found running at reconciliation
    queues.started(PendingTask(request, 0))
    assert queues.add_indices(request, [0]) == 0
    assert (queues.pending_count("j"), queues.running_count()) == (2, 1)
    assert placed(queues.assign([offer(1)], 0.0)) == [("o1", "j", 1), ("o1", "j", 2)]
    queues.started(PendingTask(request, 1))  # the launch it placed: nothing changes
    assert queues.running_count() == 3
    queues.finished(TaskRef("j", "s", 1))
    assert queues.add_indices(request, [1]) == 1  # a retry of index 1


def test_suspend_backoff_and_parallelism_hold_tasks_back() -> None:
    queues = BatchQueues()
    queues.add_indices(req("sus"), range(2))
    queues.add_indices(req("retry", not_before=10.0), [4])
    queues.add_indices(req("par", parallelism=1), range(3))
    queues.suspend("sus")
    assert queues.demand(0.0) == ((Resources.of(cpus=1, mem=100), 1),)
    result = queues.assign([offer(1)], 0.0)
    assert placed(result) == [("o1", "par", 0)]
    assert queues.reasons("sus") == [Waiting("sus", "s", 2, Reason.SUSPENDED)]
    assert queues.reasons("retry") == [Waiting("retry", "s", 1, Reason.BACKOFF, "until 10.000")]
    assert queues.reasons("par") == [Waiting("par", "s", 2, Reason.PARALLELISM, "1 of 1 running")]
    queues.resume("sus")
    assert sorted(placed(queues.assign([offer(2)], 10.0))) == [("o2", "retry", 4), ("o2", "sus", 0), ("o2", "sus", 1)]


def test_remove_job_forgets_pending_but_running_tasks_keep_their_slots() -> None:
    queues = BatchQueues()
    queues.add_indices(req("j"), range(5))
    queues.assign([offer(1, cpus=2)], 0.0)
    queues.remove_job("j")
    assert (queues.pending_count(), queues.running_count(), queues.position("j")) == (0, 2, None)
    assert queues.demand(0.0) == ()
    queues.finished(TaskRef("j", "s", 0))
    queues.finished(TaskRef("j", "s", 1))
    assert queues.running_count() == 0 and queues.share("ana") == 0.0


def test_demand_counts_shapes_within_the_limits() -> None:
    queues = BatchQueues(QueuesConfig((QueueConfig("default", max_running=5), QueueConfig("b"))))
    queues.add_indices(req("x", cpus=1), range(4))
    queues.add_indices(req("y", cpus=1, user="bo"), range(4))
    queues.add_indices(req("z", cpus=2, queue="b"), range(3))
    # queues of equal priority go by name: b, then default (its 8 tasks capped at its 5 slots)
    assert queues.demand(0.0) == ((Resources.of(cpus=2, mem=100), 3), (Resources.of(cpus=1, mem=100), 5))


def test_position_in_the_queue() -> None:
    queues = BatchQueues(QueuesConfig((QueueConfig("default"), QueueConfig("top", priority=1))))
    queues.add_indices(req("t", queue="top"), range(2))
    queues.add_indices(req("a1", "ana", submitted=1), range(1))
    queues.add_indices(req("a2", "ana", submitted=2), range(1))
    queues.add_indices(req("b1", "bo", submitted=3), range(1))
    queues.started(PendingTask(req("a0", "ana"), 0))
    queues.assign([], 0.0)  # shares are measured against the pool: here, what runs
    assert queues.position("b1") == QueuePosition("default", 1, 3, 2)
    assert queues.position("a1") == QueuePosition("default", 2, 3, 2)
    assert queues.position("a2") == QueuePosition("default", 3, 3, 2)
    assert queues.position("t") == QueuePosition("top", 1, 1, 0)


def test_ports_are_counted_per_offer() -> None:
    queues = BatchQueues()
    queues.add_indices(req("web", cpus=0.1, ports=2), range(3))
    with_ports = OfferView("o1", "a1", Resources.parse("cpus:4;mem:1000;ports:[31000-31002]"))
    result = queues.assign([offer(0), with_ports, OfferView("o2", "a2", Resources.parse("cpus:4;mem:1000;ports:[1-2]"))],
                           0.0)
    assert placed(result) == [("o1", "web", 0), ("o2", "web", 1)]
    assert queues.reasons("web") == [Waiting("web", "s", 1, Reason.OUTRANKED, "the offers that fit were taken by "
                                                                             "tasks ahead of it")]


def test_the_tasks_a_round_never_reached_are_counted_by_queue() -> None:
    queues = BatchQueues(QueuesConfig((QueueConfig("default"), QueueConfig("full", max_running=0))))
    for n in range(50):
        queues.add_indices(req(f"j{n}", submitted=n), [0])
    queues.add_indices(req("f", queue="full"), range(2))
    result = queues.assign([offer(1, cpus=2), offer(2, cpus=0.5)], 0.0)
    assert placed(result) == [("o1", "j0", 0), ("o1", "j1", 0)]
    assert result.unused == ("o2",)
    # the round stopped when no offer could hold the shape: j2 was looked at, j3..j49 never
    assert result.waiting == (Waiting("j2", "s", 1, Reason.OUTRANKED, "the offers that fit were taken by tasks "
                                                                       "ahead of it"),)
    assert result.behind == (("default", Reason.OUTRANKED, 47), ("full", Reason.QUEUE_LIMIT, 2))
    assert queues.reasons("j49") == [Waiting("j49", "s", 1, Reason.OUTRANKED, "the offers that fit were taken by "
                                                                             "tasks ahead of it")]
    assert queues.position("j49") == QueuePosition("default", 48, 48, 0)


def test_a_task_found_running_in_a_queue_no_longer_configured_still_counts_for_its_user() -> None:
    queues = BatchQueues()
    queues.started(PendingTask(req("old", queue="retired", cpus=2), 0))
    queues.add_indices(req("new", user="bo"), range(2))
    queues.add_indices(req("mine"), range(2))
    result = queues.assign([offer(1, cpus=2)], 0.0)
    assert placed(result) == [("o1", "new", 0), ("o1", "new", 1)]  # ana already holds 2 cpus
    queues.finished(TaskRef("old", "s", 0))
    assert queues.running_count() == 2 and queues.share("ana") == 0.0


def test_requests_are_checked() -> None:
    with pytest.raises(ValueError, match="gang_size: a gang needs gang_size >= 1, got 0"):
        req("j", gang="g")
    with pytest.raises(ValueError, match="parallelism: must be >= 1 or None, got 0"):
        req("j", parallelism=0)


def test_withdraw_drops_one_pending_task_only() -> None:
    queues = BatchQueues()
    request = req("j")
    queues.add_indices(request, range(3))
    queues.started(PendingTask(request, 0))
    assert queues.withdraw(TaskRef("j", "s", 1)) is True
    assert queues.withdraw(TaskRef("j", "s", 1)) is False  # no longer pending
    assert queues.withdraw(TaskRef("j", "s", 0)) is False  # running: ends with finished
    assert queues.withdraw(TaskRef("nope", "s", 0)) is False
    assert (queues.pending_count("j"), queues.running_count()) == (1, 1)
    assert placed(queues.assign([offer(1)], 0.0)) == [("o1", "j", 2)]
    assert queues.withdraw(TaskRef("j", "s", 2)) is False
