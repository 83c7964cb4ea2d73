"""Rolling-upgrade and scaling step planner (Marathon's semantics), as a pure function.

Why a stateless planner: the services framework must survive a restart in the
middle of a deployment without starting duplicates (issue 7). If the next step
is a function of nothing but the target and the instances that exist, then a
restarted framework that reloads its instances from the store and reconciles
with the master computes exactly the step it would have computed before the
crash. The caller feeds every step's outcome back in (new instances appear,
killed ones are marked ``killing`` and later disappear) and asks again
whenever something changed.

The two knobs mean what they mean in Marathon's ``upgradeStrategy``:

* ``minimum_health_capacity`` -- share of ``instances`` that must stay healthy
  while the upgrade runs: ``min_healthy = ceil(instances * mhc)``. 1.0 (the
  default) never goes below full strength; 0.0 allows killing everything
  first.
* ``maximum_over_capacity`` -- share of ``instances`` that may run on top of
  ``instances``: ``max_capacity = instances + floor(instances * moc)``.
  1.0 (the default) allows a full blue/green set side by side.

Rules of one step (``plan_step``), in this order:

1. Surplus new-version instances (more than ``instances``, e.g. after a scale
   down) are killed, unhealthy first, then youngest first (Marathon's default
   ``killSelection`` YOUNGEST_FIRST).
2. Old-version instances that are not healthy are always killed: they count
   for no capacity and will be replaced anyway, so killing them can never
   break the health floor and only frees room.
3. Healthy old-version instances are killed, oldest first, as long as the
   number of *available* instances stays at or above ``min_healthy``.
   Available means: an old instance that is healthy, or a new instance that is
   healthy **and** ready -- readiness gates the deployment as in Marathon.
4. New-version instances are started up to ``instances`` of them, as long as
   the instances still meant to run (all minus those being killed) do not
   exceed ``max_capacity``.
5. The deployment is finished when exactly ``instances`` instances exist,
   all of the new version, healthy and ready, and none is being killed.

Scaling without a version change is the same function with the unchanged
version: rule 4 starts the missing ones, rule 1 kills the surplus.

Degenerate strategies. If ``min_healthy == max_capacity`` (for instance
``mhc = 1.0`` with ``moc = 0.0``, or ``moc`` too small to allow one extra
instance), nothing could ever be killed (the floor is full strength) nor
started (the ceiling is full strength): the upgrade would deadlock. Marathon
accepts such strategies and resolves them by allowing a temporary
over-capacity of one instance (``maxCapacity += 1`` in ``TaskReplaceActor``);
Tepui does the same and reports the effective ceiling in the plan. (Marathon
instead kills one below the floor for resident apps, whose reserved volumes
cannot be doubled; Tepui has no resident apps yet.)

Where Tepui departs from Marathon:

* Marathon computes ``nrToKillImmediately`` once at the start of the
  deployment and then kills one old instance per new instance that becomes
  ready. The result is the same number of kills, but Tepui recomputes the
  budget from the current instances at every step, which is what makes the
  planner restartable and lets it react when an old instance turns unhealthy
  mid-deployment.
* Floating-point noise is removed before rounding (``0.7 * 10`` is
  ``7.000000000000001`` and Marathon's ``ceil`` makes that 8); Tepui rounds
  the product to 9 decimals first.
* The health floor is a floor on what the planner itself does: if fewer than
  ``min_healthy`` instances are available already (old ones crashed), it kills
  no healthy instance, but it does not wait -- it still starts new ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class UpgradeStrategy:
    """Marathon's ``upgradeStrategy``; both shares are in [0, 1]."""

    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0

    def __post_init__(self) -> None:
        for name in ("minimum_health_capacity", "maximum_over_capacity"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):  # also rejects NaN
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


@dataclass(frozen=True)
class Instance:
    """What the planner needs to know about one instance of the app.

    Include every instance that is not terminal: launched and still staging
    (``healthy=False``), running, or being killed (``killing=True``, its kill
    already asked for). Leaving out an instance that is still starting would
    make the planner start it again.
    """

    id: str
    version: str
    healthy: bool
    ready: bool
    started_at: float
    killing: bool = False


@dataclass(frozen=True)
class Bounds:
    """The effective floor and ceiling of a deployment."""

    min_healthy: int
    max_capacity: int


@dataclass(frozen=True)
class Plan:
    """One step: start ``start`` new-version instances and kill ``kill`` now."""

    start: int
    kill: tuple[str, ...]
    finished: bool
    bounds: Bounds


def _scaled(instances: int, share: float) -> float:
    # Round away float noise (0.7 * 10 == 7.000000000000001) before ceil/floor.
    return round(instances * share, 9)


def bounds(instances: int, strategy: UpgradeStrategy) -> Bounds:
    """The health floor and the capacity ceiling, with the degenerate case resolved."""
    if instances < 0:
        raise ValueError(f"instances must be >= 0, got {instances}")
    min_healthy = math.ceil(_scaled(instances, strategy.minimum_health_capacity))
    max_capacity = instances + math.floor(_scaled(instances, strategy.maximum_over_capacity))
    if min_healthy >= max_capacity:
        # Marathon: "maxCapacity == minHealthy: Allow temporary over-capacity
        # of one instance to allow restarting". Also covers instances == 0.
        max_capacity = min_healthy + 1
    return Bounds(min_healthy=min_healthy, max_capacity=max_capacity)


def is_available(instance: Instance, version: str) -> bool:
    """Whether an instance counts toward the health floor.

    New-version instances must also be ready: readiness gates deployments.
    Old ones only need to be healthy (they are already serving).
    """
    if instance.killing or not instance.healthy:
        return False
    return instance.ready if instance.version == version else True


def _oldest_first(instance: Instance) -> tuple[float, str]:
    return (instance.started_at, instance.id)


def plan_step(
    instances: int,
    version: str,
    current: Sequence[Instance],
    strategy: UpgradeStrategy = UpgradeStrategy(),
) -> Plan:
    """The next step towards ``instances`` instances of ``version``.

    Pure and idempotent on unchanged input: call it again after every status
    update, launch or kill, and apply only what it returns.
    """
    limits = bounds(instances, strategy)
    live = [i for i in current if not i.killing]
    new = [i for i in live if i.version == version]
    old = [i for i in live if i.version != version]
    kills: list[Instance] = []

    # 1. Surplus new instances: keep the best ``instances`` of them.
    if len(new) > instances:
        # Descending on (unavailable, started_at, id): unavailable first,
        # then youngest, ties broken deterministically by id.
        victims = sorted(new, key=lambda i: (not is_available(i, version),
                                             i.started_at, i.id), reverse=True)
        surplus = victims[: len(new) - instances]
        kills.extend(surplus)
        new = [i for i in new if i not in surplus]

    # 2. Unhealthy old instances: free to kill.
    unhealthy_old = sorted((i for i in old if not i.healthy), key=_oldest_first)
    kills.extend(unhealthy_old)

    # 3. Healthy old instances, oldest first, down to the health floor.
    available = sum(1 for i in old if is_available(i, version)) + sum(
        1 for i in new if is_available(i, version))
    budget = max(0, available - limits.min_healthy)
    healthy_old = sorted((i for i in old if i.healthy), key=_oldest_first)
    kills.extend(healthy_old[:budget])

    # 4. Starts, up to ``instances`` new ones and under the ceiling.
    remaining = len(live) - len(kills)
    wanted = max(0, instances - len(new))
    room = max(0, limits.max_capacity - remaining)
    start = min(wanted, room)

    finished = (
        not kills
        and start == 0
        and len(current) == instances
        and all(i.version == version and is_available(i, version) for i in current)
    )
    return Plan(start=start, kill=tuple(i.id for i in kills), finished=finished, bounds=limits)

