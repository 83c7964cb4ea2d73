"""The batch framework's queues: which pending task goes on which offer, fairly.

Jobs wait in named queues, each with a priority and a limit on running tasks (AWS Batch job
queues). Queues are served in priority order, higher first, strictly: a lower queue gets what the
higher ones could not use (as AWS Batch's compute environments take from their queues in order);
``max_running`` is what keeps a busy high queue from taking everything. Within a queue, the offers
are shared among submitters by weighted DRF (``fair_share.py``): the user with the lowest weighted
dominant share of the pool — what the framework holds plus what it is offered, or the total the
core passes — places the next task; ties go to fewer running tasks, then the earlier submission,
then the name. Within a user, higher job priority first, then submission order (FIFO), then the
stage's name and the lowest index.

How this follows and departs from Slurm's fair share: like Slurm, a user's standing is its usage
against its configured shares (weights here), and heavy users yield to light ones. Unlike Slurm,
usage is what the user's tasks hold *now*, not CPU-seconds decayed over a half-life, and there is
no multifactor sum (age, size, QOS): DRF on current holdings is what the master already uses, is
exact with integers, needs no history to survive a restart (running tasks are reconciled anyway),
and settles within one offer cycle; a decayed history would make a user who ran a big job
yesterday wait today, which the teams sharing one framework did not ask for. Job priority and
submission order do the rest of Slurm's multifactor work, within a user.

Placement is first fit in that fairness order: each task takes the first offer (in the order
given) that holds its resources and passes its rules. A gang (``TaskRequest.gang``) is tried
whole across the offers, and placed whole or not at all. Every task not placed gets a reason
(``Reason``) for ``tepui jobs why``.

Why it is fast: identical pending tasks (one stage's request) are one group holding a heap of
indices (``queue_groups.py``), so a 100,000-task array is one object, not 100,000. Within one
``assign`` offers only shrink, so each (shape, rules) keeps a cursor (``offer_fit.py``): an offer
that could not hold a shape is never looked at again for it, and a shape that fits nowhere stops
being tried; a queue stops as soon as no shape of its waiting tasks fits what is left. The cost
is per task placed plus per offer, not per pending task per offer.

Measured (CPython 3.11, 2 cores shared at load 6; 10 arrays x 10,000 tasks of cpus 0.5 / mem
128 from 5 users, 1,000 offers of 4 CPUs, 8,000 tasks placed): ``assign`` takes 46-123 ms,
median 58 ms, about 140,000 tasks placed per second; with 100,000 one-task jobs instead,
132-174 ms (one request per job: the cost is the groups, not the tasks). Adding those 100,000
jobs took 1.9-3.2 s (mostly the garbage collector walking 100,000 new containers), a
10,000-task array 4-9 ms; ``demand`` 57-88 ms over 100,000 requests. The process held 180-210
MiB with both queues built. A 10,000-task array flowing through ``add``, ``assign`` (5 rounds of
50 offers), ``demand``, ``started`` and ``finished`` takes 191-249 ms: 40,000-52,000 tasks/s,
so the queue is not what limits an array's throughput (the agents' launch path is).

Pure: no I/O; time comes in as ``now``.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence

from tepui.frameworks.batch.fair_share import FairShare, UserKey, UserShare
from tepui.frameworks.batch.offer_fit import Slot, take
from tepui.frameworks.batch.queue_groups import Group, Order, QueueState, Round, Stage
from tepui.frameworks.batch.queue_values import (
    Assignment, Launch, OfferView, PendingTask, QueueConfigError, QueuesConfig, Reason,
    TaskRef, TaskRequest, Waiting,
)
from tepui.sdk.resources import Resources

__all__ = ["BatchQueues", "QueuePosition"]

@dataclass(frozen=True)
class QueuePosition:
    """A job's place in its queue: 1 is served next (among the jobs waiting in that queue,
    ordered as ``assign`` would take them now), ``ahead`` pending tasks in higher queues."""

    queue: str
    position: int
    waiting_jobs: int
    ahead_in_higher_queues: int


class BatchQueues:
    """The pending and running tasks of every queue, and the placement of pending ones on offers.

    The core calls: ``add`` (a stage's tasks became runnable), ``assign`` (offers arrived; the
    placed tasks count as running from then on, as the master counts offered resources as used),
    ``started`` (a task found running, e.g. at reconciliation — idempotent), ``finished`` (a task
    ended or its launch failed; idempotent), ``withdraw`` (one pending task dropped),
    ``remove_job``, ``suspend``/``resume``, ``demand`` (for DeclareDemand), ``position`` and
    ``reasons`` (``queue_why.explain`` builds ``tepui jobs why`` on them)."""

    def __init__(self, config: QueuesConfig | None = None) -> None:
        self.config = config or QueuesConfig()
        self._queues = {q.name: QueueState(q) for q in self.config.queues}
        self._order = sorted(self._queues.values(), key=lambda q: (-q.config.priority, q.config.name))
        self._fair = FairShare()
        self._stages: dict[tuple[str, str], Stage] = {}
        self._jobs: dict[str, set[tuple[str, str]]] = {}
        self._gangs: dict[str, list[Group]] = {}
        self._running: dict[TaskRef, TaskRequest] = {}
        self._suspended: set[str] = set()
        self._seq = itertools.count()
        self._last = Round([], 0.0)

    # --- what waits, what runs --------------------------------------------------------------

    def add(self, tasks: Iterable[PendingTask]) -> int:
        """Adds pending tasks; one already pending or running is ignored. Returns how many were
        added. Raises ``QueueConfigError`` for a queue that does not exist."""
        added = 0
        for request, index in tasks:
            added += self.add_indices(request, (index,))
        return added

    def add_indices(self, request: TaskRequest, indices: Iterable[int]) -> int:
        """``add`` for many indices of one request (an array) without a value per task."""
        queue = self._queues.get(request.queue)
        if queue is None:
            raise QueueConfigError(f"queue: no queue named {request.queue!r} (queues: {', '.join(self._queues)})")
        key = (request.job_id, request.stage)
        stage = self._stages.get(key)
        if stage is None:
            stage = self._stages[key] = Stage()
            self._jobs.setdefault(request.job_id, set()).add(key)
        group = stage.groups.get(request)
        if group is None:
            group = self._new_group(request, stage, queue)
        running = self._running
        added = 0
        for index in indices:
            if index in stage.pending or TaskRef(request.job_id, request.stage, index) in running:
                continue
            stage.pending.add(index)
            heapq.heappush(group.heap, index)
            added += 1
        queue.pending += added
        if not group.heap:
            self._drop_group(group)
        return added

    def _new_group(self, request: TaskRequest, stage: Stage, queue: QueueState) -> Group:
        if request.gang is not None:
            members = self._gangs.get(request.gang, [])
            if members and (members[0].request.queue, members[0].request.user) != (request.queue, request.user):
                raise QueueConfigError(f"gang: {request.gang!r} spans queues or users")
        group = stage.groups[request] = Group(request, stage, next(self._seq))
        bisect.insort(queue.users.setdefault(request.user, []), (group.order, group))
        queue.fits[group.fit] = queue.fits.get(group.fit, 0) + 1
        if request.gang is not None:
            self._gangs.setdefault(request.gang, []).append(group)
        return group

    def _drop_group(self, group: Group) -> None:
        request = group.request
        stage = group.stage
        if stage.groups.get(request) is not group:
            return
        del stage.groups[request]
        queue = self._queues[request.queue]
        groups = queue.users[request.user]
        at = bisect.bisect_left(groups, (group.order,))
        del groups[at]
        if not groups:
            del queue.users[request.user]
        left = queue.fits[group.fit] - 1
        if left:
            queue.fits[group.fit] = left
        else:
            del queue.fits[group.fit]
        if request.gang is not None:
            members = self._gangs[request.gang]
            members.remove(group)
            if not members:
                del self._gangs[request.gang]
        if not stage.groups and not stage.running:
            self._forget_stage(request.job_id, request.stage)

    def _forget_stage(self, job_id: str, stage: str) -> None:
        self._stages.pop((job_id, stage), None)
        keys = self._jobs.get(job_id)
        if keys is not None:
            keys.discard((job_id, stage))
            if not keys:
                del self._jobs[job_id]

    def started(self, task: PendingTask) -> None:
        """``task`` runs (found at reconciliation, or launched by ``assign``: then nothing changes)."""
        request, index = task
        ref = TaskRef(request.job_id, request.stage, index)
        if ref in self._running:
            return
        self.withdraw(ref)
        self._run(request, ref)

    def withdraw(self, ref: TaskRef) -> bool:
        """Drops one pending task (its job was suspended, or its stage failed); False when it was
        not pending. A running task is not touched: it ends with ``finished``."""
        stage = self._stages.get((ref.job_id, ref.stage))
        if stage is None or ref.index not in stage.pending:
            return False
        stage.pending.discard(ref.index)
        for group in list(stage.groups.values()):
            if ref.index in group.heap:
                self._queues[group.request.queue].pending -= 1
                group.heap.remove(ref.index)
                heapq.heapify(group.heap)
                if not group.heap:
                    self._drop_group(group)
        return True

    def _run(self, request: TaskRequest, ref: TaskRef) -> None:
        self._running[ref] = request
        key = (request.job_id, request.stage)
        stage = self._stages.get(key)
        if stage is None:
            stage = self._stages[key] = Stage()
            self._jobs.setdefault(request.job_id, set()).add(key)
        stage.running += 1
        queue = self._queues.get(request.queue)
        if queue is not None:  # a task found running in a queue the configuration no longer has
            queue.running += 1
        self._fair.take(self._user(request.user), request.resources)

    def finished(self, ref: TaskRef) -> None:
        """A running task ended (or its launch failed): its queue slot and share are free."""
        request = self._running.pop(ref, None)
        if request is None:
            return
        stage = self._stages[(request.job_id, request.stage)]
        stage.running -= 1
        queue = self._queues.get(request.queue)
        if queue is not None:
            queue.running -= 1
        self._fair.give_back(self._user(request.user), request.resources)
        if not stage.groups and not stage.running:
            self._forget_stage(request.job_id, request.stage)

    def remove_job(self, job_id: str) -> None:
        """Forgets the job's pending tasks (cancelled, failed or done). Its running tasks keep
        their slots until ``finished``: they hold resources until they end."""
        for key in list(self._jobs.get(job_id, ())):
            stage = self._stages[key]
            for group in list(stage.groups.values()):
                self._queues[group.request.queue].pending -= len(group.heap)
                group.heap.clear()
                self._drop_group(group)
            stage.pending.clear()
        self._suspended.discard(job_id)

    def remove_stage(self, job_id: str, stage_name: str) -> None:
        """Forgets one stage's pending tasks (the stage failed): ``withdraw`` for all of them at
        once, without re-heapifying per task."""
        stage = self._stages.get((job_id, stage_name))
        if stage is None:
            return
        for group in list(stage.groups.values()):
            self._queues[group.request.queue].pending -= len(group.heap)
            group.heap.clear()
            self._drop_group(group)
        stage.pending.clear()

    def suspend(self, job_id: str) -> None:
        """The job's pending tasks are not placed (nor declared) until ``resume``."""
        self._suspended.add(job_id)

    def resume(self, job_id: str) -> None:
        self._suspended.discard(job_id)

    def pending_count(self, job_id: str | None = None) -> int:
        stages = self._stages.values() if job_id is None else \
            [self._stages[k] for k in self._jobs.get(job_id, ())]
        return sum(len(stage.pending) for stage in stages)

    def running_count(self, queue: str | None = None) -> int:
        return len(self._running) if queue is None else self._queues[queue].running

    def is_running(self, ref: TaskRef) -> bool:
        return ref in self._running

    def share(self, user: str) -> float:
        """The user's weighted dominant share as of the last ``assign``."""
        found = self._fair.users.get(user)
        return 0.0 if found is None else self._fair.share(found)

    def _user(self, name: str) -> UserShare:
        return self._fair.user(name, self.config.weight(name))

    # --- placement --------------------------------------------------------------------------

    def assign(self, offers: Sequence[OfferView], now: float, pool: Resources | None = None) -> Assignment:
        """Places pending tasks on ``offers``; the placed tasks count as running from now.

        ``pool`` is what shares are measured against (the cluster's total, if the core knows
        it); by default what the framework's tasks hold plus what it is offered now."""
        round_ = Round(list(offers), now)
        slots = round_.slots
        if pool is not None:
            totals = dict(pool.fixed_totals())
        else:
            totals = self._fair.held_total()
            for offer in offers:
                for name, amount in offer.resources.fixed_totals().items():
                    totals[name] = totals.get(name, 0) + amount
        self._fair.set_pool(totals)
        for queue in self._order:
            if queue.users:
                self._assign_queue(queue, round_)
        for group in round_.emptied:
            if not group.heap:
                self._drop_group(group)
        self._last = round_
        waiting, behind = self._waiting(round_)
        return Assignment(
            launches=tuple(Launch(s.offer.offer_id, s.offer.agent_id, tuple(s.tasks)) for s in slots if s.tasks),
            unused=tuple(s.offer.offer_id for s in slots if not s.tasks),
            waiting=waiting,
            behind=behind,
        )

    def _blocked(self, group: Group, round_: Round) -> tuple[Reason, str] | None:
        request = group.request
        if request.job_id in self._suspended:
            return Reason.SUSPENDED, ""
        if request.not_before > round_.now:
            return Reason.BACKOFF, f"until {request.not_before:.3f}"
        if request.parallelism is not None and group.stage.running >= request.parallelism:
            return Reason.PARALLELISM, f"{group.stage.running} of {request.parallelism} running"
        if request.queue in round_.full:
            queue = self._queues[request.queue]
            return Reason.QUEUE_LIMIT, f"queue {queue.config.name} runs {queue.running} of {queue.config.max_running}"
        if request.gang is not None and request.gang in round_.gangs_tried:
            return round_.reasons.get(group) or (Reason.GANG_INCOMPLETE, "")
        if group.fit in round_.exhausted:
            if round_.fits_nowhere(group.fit):
                return Reason.NO_FIT, f"{request.resources} fits none of {len(round_.slots)} offer(s)"
            return Reason.OUTRANKED, "the offers that fit were taken by tasks ahead of it"
        return None

    def _assign_queue(self, queue: QueueState, round_: Round) -> None:
        budget = queue.budget()
        if budget <= 0:
            round_.full.add(queue.config.name)
            return
        fair = self._fair
        users = {name: self._user(name) for name in queue.users}
        heap = [(fair.key(users[name], groups[0][1].request.submitted), name) for name, groups in queue.users.items()]
        heapq.heapify(heap)
        pointer = dict.fromkeys(queue.users, 0)
        live = sum(1 for fit in queue.fits if fit not in round_.exhausted)
        while heap and live > 0:
            name = heap[0][1]
            groups = queue.users[name]
            at = pointer[name]
            group = None
            while at < len(groups):
                candidate = groups[at][1]
                if candidate.heap:
                    blocked = self._blocked(candidate, round_)
                    if blocked is None:
                        group = candidate
                        break
                    round_.reasons.setdefault(candidate, blocked)
                at += 1
            pointer[name] = at
            if group is None:
                heapq.heappop(heap)
                continue
            request = group.request
            if request.gang is not None:
                placed = self._place_gang(group, queue, budget, round_)
                if not placed:
                    continue
            else:
                slot = round_.find(group.fit)
                if slot is None:
                    round_.exhausted.add(group.fit)
                    blocked = self._blocked(group, round_)
                    if blocked is not None:
                        round_.reasons[group] = blocked
                    live = sum(1 for fit in queue.fits if fit not in round_.exhausted)
                    continue
                take(slot, group.fit)
                if not slot.tasks or slot.tasks[-1].request is not request:
                    round_.touched.append(group)
                index = heapq.heappop(group.heap)
                group.stage.pending.discard(index)
                slot.tasks.append(PendingTask(request, index))
                self._run(request, TaskRef(request.job_id, request.stage, index))
                placed = 1
            if not group.heap:
                round_.emptied.append(group)
            queue.pending -= placed
            budget -= placed
            if budget <= 0:
                round_.full.add(queue.config.name)
                return
            heapq.heapreplace(heap, (fair.key(users[name], request.submitted), name))

    def _place_gang(self, group: Group, queue: QueueState, budget: int, round_: Round) -> int:
        """Places the whole gang of ``group`` or nothing; returns how many tasks were placed."""
        request = group.request
        gang = request.gang
        assert gang is not None
        round_.gangs_tried.add(gang)
        members = sorted(self._gangs[gang], key=lambda g: g.order)
        need = request.gang_size
        pending = sum(len(m.heap) for m in members)

        def refuse(reason: Reason, detail: str) -> int:
            for member in members:
                round_.reasons[member] = (reason, detail)
            return 0

        if pending < need:
            return refuse(Reason.GANG_INCOMPLETE, f"{pending} of {need} members pending")
        if budget < need:
            return refuse(Reason.QUEUE_LIMIT, f"the gang needs {need} slots, queue {queue.config.name} has {budget}")
        for member in members:
            parallelism = member.request.parallelism
            if parallelism is not None and parallelism - member.stage.running < len(member.heap):
                return refuse(Reason.PARALLELISM, f"the gang needs {len(member.heap)} of stage {member.request.stage} "
                                                  f"at once, parallelism is {member.request.parallelism}")
        saved = {m.fit: round_.cursor.get(m.fit, 0) for m in members}
        placed: list[tuple[Slot, Group, int]] = []
        for member in members:
            for index in sorted(member.heap):
                if len(placed) == need:
                    break
                slot = round_.find(member.fit)
                if slot is None:
                    for taken, of, _ in placed:
                        take(taken, of.fit, -1)
                    round_.cursor.update(saved)
                    if round_.fits_nowhere(member.fit):
                        return refuse(Reason.NO_FIT, f"member {member.request.stage} {member.request.resources} "
                                                     f"fits none of {len(round_.slots)} offer(s)")
                    return refuse(Reason.GANG_INCOMPLETE, f"the offers left hold {len(placed)} of its {need} members")
                take(slot, member.fit)
                placed.append((slot, member, index))
        for slot, member, index in placed:
            member.heap.remove(index)
            member.stage.pending.discard(index)
            slot.tasks.append(PendingTask(member.request, index))
            self._run(member.request, TaskRef(member.request.job_id, member.request.stage, index))
        for member in members:
            heapq.heapify(member.heap)
            if not member.heap:
                round_.emptied.append(member)
        return len(placed)

    def _reason(self, group: Group, round_: Round) -> tuple[Reason, str]:
        found = round_.reasons.get(group) or self._blocked(group, round_)
        if found is not None:
            return found
        queue = self._queues[group.request.queue]
        if queue.config.name in round_.full or queue.budget() <= 0:
            return Reason.QUEUE_LIMIT, f"queue {queue.config.name} runs {queue.running} of {queue.config.max_running}"
        return Reason.OUTRANKED, "the offers were used by tasks ahead of it"

    def _waiting(self, round_: Round) -> tuple[tuple[Waiting, ...], tuple[tuple[str, Reason, int], ...]]:
        """The requests the round looked at and left waiting, each with its reason; the tasks it
        never reached, counted by queue (``reasons`` gives any job's exactly). Not one entry per
        pending request: with 100,000 one-task jobs that list cost more than the placement.
        In the order ``assign`` serves queues, then by each request's place in its user's line."""
        rank = {queue.config.name: n for n, queue in enumerate(self._order)}
        looked = {group for group in itertools.chain(round_.reasons, round_.touched) if group.heap}
        out = []
        counted: dict[str, int] = {}
        for group in sorted(looked, key=lambda g: (rank[g.request.queue], g.order)):
            request = group.request
            out.append(Waiting(request.job_id, request.stage, len(group.heap), *self._reason(group, round_)))
            counted[request.queue] = counted.get(request.queue, 0) + len(group.heap)
        behind = []
        for queue in self._order:
            left = queue.pending - counted.get(queue.config.name, 0)
            if left > 0:
                full = queue.config.name in round_.full or queue.budget() <= 0
                behind.append((queue.config.name, Reason.QUEUE_LIMIT if full else Reason.OUTRANKED, left))
        return tuple(out), tuple(behind)

    def reasons(self, job_id: str) -> list[Waiting]:
        """Why each of the job's pending requests waits, as of the last ``assign``."""
        out = []
        for key in sorted(self._jobs.get(job_id, ())):
            for group in sorted(self._stages[key].groups.values(), key=lambda g: g.order):
                if group.heap:
                    request = group.request
                    out.append(Waiting(job_id, request.stage, len(group.heap), *self._reason(group, self._last)))
        return out

    @property
    def last_offers(self) -> tuple[OfferView, ...]:
        """The offers of the last ``assign``, as offered."""
        return tuple(slot.offer for slot in self._last.slots)

    def requests(self, job_id: str) -> list[TaskRequest]:
        """The job's pending requests (one per stage, more while retries wait for backoff)."""
        return [g.request for key in sorted(self._jobs.get(job_id, ()))
                for g in sorted(self._stages[key].groups.values(), key=lambda g: g.order) if g.heap]

    # --- demand and position ----------------------------------------------------------------

    def demand(self, now: float) -> tuple[tuple[Resources, int], ...]:
        """What waits and could run now, by shape (the SDK's ``declare_demand``): suspended jobs,
        retries in backoff and full queues or stages declare nothing, so the master offers only
        what fits (and nothing at all when nothing can run)."""
        counts: dict[Resources, int] = {}
        for queue in self._order:
            budget = queue.budget()
            if budget <= 0:
                continue
            by_shape: dict[Resources, int] = {}
            for groups in queue.users.values():
                for _, group in groups:
                    request = group.request
                    if not group.heap or request.job_id in self._suspended or request.not_before > now:
                        continue
                    count = len(group.heap)
                    if request.parallelism is not None:
                        count = min(count, request.parallelism - group.stage.running)
                    if count > 0:
                        by_shape[request.resources] = by_shape.get(request.resources, 0) + count
            for shape, count in by_shape.items():
                counts[shape] = counts.get(shape, 0) + min(count, budget)
        return tuple(counts.items())

    def position(self, job_id: str) -> QueuePosition | None:
        """Where the job waits: None when nothing of it is pending."""
        groups = [g for key in self._jobs.get(job_id, ()) for g in self._stages[key].groups.values() if g.heap]
        if not groups:
            return None
        queue = self._queues[groups[0].request.queue]
        ahead = sum(len(g.heap) for q in self._order if q.config.priority > queue.config.priority
                    for gs in q.users.values() for _, g in gs)
        best: dict[str, tuple[UserKey, Order]] = {}
        for name, user_groups in queue.users.items():
            user = self._user(name)
            for order, group in user_groups:
                if group.heap:
                    key = (self._fair.key(user, user_groups[0][1].request.submitted), order)
                    known = best.get(group.request.job_id)
                    if known is None or key < known:
                        best[group.request.job_id] = key
        mine = best[job_id]
        position = 1 + sum(1 for key in best.values() if key < mine)
        return QueuePosition(queue.config.name, position, len(best), ahead)
