"""Properties of the batch queue over random queues, jobs, gangs and offers: no queue exceeds its
limit, a gang is placed whole or not at all, no task is placed twice or while it runs, and what is
placed on an offer fits in it."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from tepui.frameworks.batch.queue_values import OfferView, QueueConfig, QueuesConfig, TaskRef, TaskRequest
from tepui.frameworks.batch.queues import BatchQueues
from tepui.sdk.resources import Resources

QUEUES = QueuesConfig((QueueConfig("a", priority=2, max_running=5), QueueConfig("b", priority=1, max_running=9),
                       QueueConfig("c")))

jobs = st.lists(st.tuples(
    st.sampled_from(["a", "b", "c"]),  # queue
    st.sampled_from(["ana", "bo", "cy"]),  # user
    st.integers(1, 4),  # cpus
    st.integers(1, 6),  # tasks
    st.booleans(),  # gang
    st.integers(0, 3),  # priority
), min_size=1, max_size=8)
offers = st.lists(st.tuples(st.integers(1, 8), st.integers(100, 900)), max_size=6)


@settings(max_examples=150, deadline=None)
@given(jobs, st.lists(offers, min_size=1, max_size=3), st.data())
def test_limits_gangs_uniqueness_and_fit_hold(job_specs: list[tuple[str, str, int, int, bool, int]],
                                              rounds: list[list[tuple[int, int]]], data: st.DataObject) -> None:
    queues = BatchQueues(QUEUES)
    gang_sizes = {}
    requests = {}
    for n, (queue, user, cpus, tasks, gang, priority) in enumerate(job_specs):
        request = TaskRequest(f"j{n}", "s", user, queue, Resources.of(cpus=cpus, mem=100), priority=priority,
                              submitted=n, gang=f"j{n}" if gang else None, gang_size=tasks if gang else 0)
        if gang:
            gang_sizes[f"j{n}"] = tasks
        queues.add_indices(request, range(tasks))
        requests[request.job_id] = request
    running: set[TaskRef] = set()
    for r, round_offers in enumerate(rounds):
        views = [OfferView(f"o{r}.{i}", f"a{i}", Resources.of(cpus=c, mem=m)) for i, (c, m) in enumerate(round_offers)]
        result = queues.assign(views, float(r))
        per_job: Counter[str] = Counter()
        for launch in result.launches:
            view = next(v for v in views if v.offer_id == launch.offer_id)
            used = Resources()
            for task in launch.tasks:
                assert task.ref not in running, "placed twice"
                running.add(task.ref)
                used = used + task.request.resources
                per_job[task.request.job_id] += 1
            assert view.resources.contains(used), "placed beyond the offer"
        for job, size in gang_sizes.items():
            assert per_job[job] in (0, size), f"gang {job} placed {per_job[job]} of {size}"
        by_queue = Counter(ref_queue for ref_queue in (job_specs[int(ref.job_id[1:])][0] for ref in running))
        for config in QUEUES.queues:
            assert config.max_running is None or by_queue[config.name] <= config.max_running
            assert queues.running_count(config.name) == by_queue[config.name]
        # some tasks end between rounds, and come back as retries
        ended = data.draw(st.lists(st.sampled_from(sorted(running)), unique=True, max_size=3)) if running else []
        for ref in ended:
            queues.finished(ref)
            running.discard(ref)
            if requests[ref.job_id].gang is None:
                assert queues.add_indices(requests[ref.job_id], [ref.index]) == 1
            else:  # a gang member ended: the test ends the whole gang and re-queues it
                for other in [r for r in running if r.job_id == ref.job_id]:
                    queues.finished(other)
                    running.discard(other)
                queues.add_indices(requests[ref.job_id], range(gang_sizes[ref.job_id]))
    assert queues.pending_count() + len(running) == sum(spec[3] for spec in job_specs)
