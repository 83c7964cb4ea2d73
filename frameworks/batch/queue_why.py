""""Why is my job pending?" — ``tepui jobs why JOB``: its place in its queue, the reason each of
its stages waits, the offers it was refused and why, and the shape that fits nowhere.

Why this exists: the complaint users make most of batch systems is a job stuck with no reason
(AWS Batch jobs RUNNABLE forever when no compute environment fits them, Slurm's bare
``Resources`` / ``Priority`` reasons). The queue (``queues.py``) knows, per ``assign``, why each
request was left waiting; this turns that and the last round's offers into the API's Why value
and one sentence saying what to do. Computed when asked, not during ``assign``: the refusals of
every offer for every pending request would cost more than the placement itself. Pure.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tepui.frameworks.batch.queue_values import OfferView, Reason, TaskRequest
from tepui.frameworks.batch.queues import BatchQueues

RECENT = 20  # offers listed one by one; the rest are counted by reason


def refusal(request: TaskRequest, offer: OfferView) -> str | None:
    """Why ``offer``, as offered, cannot hold one task of ``request`` (None: it could)."""
    for rule in request.constraints:
        refused = rule.refuses(offer)
        if refused is not None:
            return refused
    if not offer.resources.contains(request.resources):
        return f"too small: missing {request.resources.missing_from(offer.resources)}"
    ports = offer.resources.range_count("ports")
    if ports < request.ports:
        return f"too few ports: {ports} of {request.ports}"
    return None


def explain(queues: BatchQueues, job_id: str) -> dict[str, Any]:
    """The API's Why value for a job (docs/batch.md "Queues and fairness")."""
    position = queues.position(job_id)
    waiting = queues.reasons(job_id)
    offers = queues.last_offers
    refusals: Counter[str] = Counter()
    recent: list[dict[str, str]] = []
    nowhere = []
    for request, item in zip(queues.requests(job_id), waiting):
        fits_some = False
        for offer in offers:
            reason = refusal(request, offer)
            if reason is None:
                fits_some = True
                reason = item.reason.value  # it would fit: its turn did not come, or its limits
            refusals[reason] += 1
            if len(recent) < RECENT:
                recent.append({"stage": request.stage, "offer_id": offer.offer_id, "agent_id": offer.agent_id,
                               "hostname": offer.hostname, "reason": reason})
        if not fits_some and offers:
            largest = max(offers, key=lambda o: (o.resources.scalar_fixed("cpus"), o.resources.scalar_fixed("mem")))
            nowhere.append({"stage": request.stage, "resources": str(request.resources),
                            "rules": [str(rule) for rule in request.constraints],
                            "largest_offer": str(largest.resources),
                            "missing_from_largest": str(request.resources.missing_from(largest.resources))})
    return {
        "job": job_id,
        "queue": position.queue if position else None,
        "position": position.position if position else None,
        "waiting_jobs": position.waiting_jobs if position else 0,
        "ahead_in_higher_queues": position.ahead_in_higher_queues if position else 0,
        "pending": sum(item.count for item in waiting),
        "stages": [{"stage": item.stage, "waiting": item.count, "reason": item.reason.value, "detail": item.detail}
                   for item in waiting],
        "offers_seen": len(offers),
        "refusals": dict(refusals.most_common()),
        "recent": recent,
        "fits_nowhere": nowhere,
        "summary": _summary(job_id, waiting, nowhere, len(offers), position.position if position else None),
    }


def _summary(job_id: str, waiting: list[Any], nowhere: list[dict[str, Any]], offers: int, position: int | None) -> str:
    if not waiting:
        return f"Nothing of job {job_id} is pending."
    if nowhere:
        shape = nowhere[0]
        return (f"Stage {shape['stage']} asks for {shape['resources']}, which fits none of the {offers} offer(s) "
                f"seen (the largest lacks {shape['missing_from_largest']}): lower its resources or relax its "
                "constraints, or add agents that can hold it.")
    reasons = Counter(item.reason for item in waiting)
    top = reasons.most_common(1)[0][0]
    advice = {
        Reason.QUEUE_LIMIT: "its queue runs as many tasks as its max_running allows; they start as others end",
        Reason.PARALLELISM: "the stage runs as many tasks as its parallelism allows",
        Reason.SUSPENDED: "the job is suspended: `tepui jobs resume` it",
        Reason.BACKOFF: "a retry waits for its backoff",
        Reason.NO_FIT: "no offer fits its shape",
        Reason.GANG_INCOMPLETE: "its gang cannot be placed whole on the offers at once",
        Reason.OUTRANKED: "tasks ahead of it in fairness order (other users' lower shares, higher queues, "
                          "higher priority or earlier jobs) took the offers",
    }[top]
    where = f" It is number {position} in its queue." if position else ""
    return f"{sum(item.count for item in waiting)} task(s) of job {job_id} wait: {advice}.{where}"
