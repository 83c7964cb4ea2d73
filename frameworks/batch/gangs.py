"""A gang stage's failure: MPI semantics, apart from the per-index rules of :class:`JobRun`.

Why: a gang (``gang: true``: MPI ranks, Spark executors) is one unit. Its members launch together
(the queue places them all or none), and one member's failure or loss means the others' work is
lost too: the siblings are killed and, once none is live (an index never has two live attempts),
the whole gang is retried as one attempt judged by the first failure — spent once for all
members, free for an agent loss — or every index fails. Volcano's ``PodFailed → RestartJob``
policy does the same. A part of :class:`JobRun` kept apart for its size: it uses the run's own
kill and fail steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tepui.frameworks.batch import stage_run as S
from tepui.frameworks.batch.records import AttemptRecord
from tepui.frameworks.batch.run_outcomes import Outcome, RetryAt, SaveAttempt, Unqueue
from tepui.frameworks.batch.stage_run import StageRun

if TYPE_CHECKING:
    from tepui.frameworks.batch.job_run import JobRun

__all__ = ["gang_member_ended"]


def gang_member_ended(run: JobRun, st: StageRun, rec: AttemptRecord, failure: str | None, now: float,
                      out: list[Outcome]) -> None:
    """A gang task failed, or ended while its gang fails: the first failure kills the siblings
    (and drops queued ones); when none is live, the whole gang is retried as one attempt,
    judged by that first failure."""
    first = st.gang_failure is None
    rec.outcome = "gang_failed" if first else "gang"
    if first:  # the first failure judges the gang's try: its record is the one that spends it (history)
        rec.spent = st.spec.retries.classify(rec.exit_code, failure) == "count"
    out.append(SaveAttempt(rec))
    st.set(rec.index, S.BACKOFF)
    if first:
        st.gang_failure = (rec.exit_code, failure)
        why = failure or f"exit {rec.exit_code}"
        for task_id, lv in list(run._live.items()):
            if lv.stage is st and lv.killing is None:
                run._kill(task_id, lv, "gang", f"gang: {st.name}[{rec.index}] ended ({why})", now, out)
        for i in range(st.array):
            if st.status[i] == S.QUEUED:
                out.append(Unqueue(st.name, i, st.tries[i]))
            if st.status[i] in (S.GANG_DONE, S.QUEUED):
                st.set(i, S.BACKOFF)
    if st.counts[S.LIVE] or st.gang_failure is None:
        return
    exit_code, reason = st.gang_failure
    st.gang_failure = None
    why = reason or f"exit {exit_code}"
    retries = st.spec.retries
    action = retries.classify(exit_code, reason)
    spent = action == "count"
    if spent:
        for i in range(st.array):
            st.spent[i] += 1
    if action in ("count", "ignore") and st.spent[0] < retries.attempts:
        at = now if reason == "agent_lost" else now + retries.backoff.delay(max(st.spent[0] - 1, 0))
        st.gang_due = at
        tries = max(st.tries.values(), default=0)
        for i in range(st.array):
            st.tries[i] = tries  # the members share one try number
            out.append(RetryAt(st.name, i, tries + 1, at, spent, why))
        return
    for i in range(st.array):
        run._fail_index(st, i, f"gang failed ({why})", out)
    if action == "fail_stage":
        run._fail_stage(st, f"gang failed ({why}) and a rule says fail_stage", now, out)
