"""The offers of one ``assign`` as they are used up: first fit with a cursor per shape.

Why a module of its own: this is the hot loop of the batch queue (``queues.py`` decides *who*
goes next; this decides *where*). Within one round offers only shrink, so each shape (resources
and rules) keeps a cursor in the offer list: an offer that could not hold the shape once never
will again in this round and is not looked at twice. A gang's trial that fails gives its
resources back and puts its cursors back (``take`` with ``sign=-1``, ``cursor.update``).
Scalars are compared as integers (thousandths) on this path; ranges and sets, rare in batch
shapes, go through ``Resources``. A task's ``ports`` is a count of host ports: the queue checks
that the offer has that many left, and the core picks which ones from the offer's ranges for
the tasks placed on it (so the round never expands a 31000-32000 range into numbers). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tepui.frameworks.batch.queue_values import AttributeRule, OfferView, PendingTask
from tepui.sdk.resources import ResourceKey, Resources

Shape = tuple[tuple[ResourceKey, int], ...]
_FITS: dict[tuple[Resources, tuple[AttributeRule, ...], int], Fit] = {}
_FITS_LIMIT = 4096  # distinct shapes remembered; beyond it the memo starts over


@dataclass(frozen=True)
class Fit:
    """What a task needs of one offer: its resources (split into integer scalars and the rest)
    its rules and how many host ports. One value per distinct need (``of`` memoizes): the 100,000 one-task jobs of
    a sweep share a handful."""

    resources: Resources
    rules: tuple[AttributeRule, ...]
    ports: int
    shape: Shape = field(compare=False)
    extra: Resources = field(compare=False)

    @classmethod
    def of(cls, resources: Resources, rules: tuple[AttributeRule, ...], ports: int = 0) -> Fit:
        known = _FITS.get((resources, rules, ports))
        if known is None:
            if len(_FITS) >= _FITS_LIMIT:
                _FITS.clear()
            scalars = tuple((key, amount) for key, amount in resources if isinstance(amount, int))
            other = Resources({key: amount for key, amount in resources if not isinstance(amount, int)})
            known = _FITS[(resources, rules, ports)] = cls(resources, rules, ports, scalars, other)
        return known


class Slot:
    """One offer and what is left of it in this round, and the tasks put on it."""

    __slots__ = ("offer", "free", "other", "ports", "tasks")

    def __init__(self, offer: OfferView) -> None:
        self.offer = offer
        self.free: dict[ResourceKey, int] = {}
        other = {}
        for key, amount in offer.resources:
            if isinstance(amount, int):
                self.free[key] = amount
            else:
                other[key] = amount
        self.other = Resources(other)
        self.ports = offer.resources.range_count("ports")  # host ports left
        self.tasks: list[PendingTask] = []


class OfferRound:
    """The offers of one round: what is left of each, and each shape's cursor."""

    def __init__(self, offers: list[OfferView]) -> None:
        self.slots = [Slot(offer) for offer in offers]
        self.cursor: dict[Fit, int] = {}
        self.allowed: dict[tuple[AttributeRule, ...], list[int]] = {}
        self.exhausted: set[Fit] = set()  # shapes no offer left can hold
        self.nowhere: dict[Fit, bool] = {}

    def passing(self, rules: tuple[AttributeRule, ...]) -> list[int]:
        """The offers (positions) whose agent passes ``rules``."""
        allowed = self.allowed.get(rules)
        if allowed is None:
            allowed = self.allowed[rules] = [i for i, slot in enumerate(self.slots)
                                             if not any(rule.refuses(slot.offer) for rule in rules)]
        return allowed

    def find(self, fit: Fit) -> Slot | None:
        """The first offer still holding one task of ``fit`` (the cursor moves past the rest)."""
        allowed = self.passing(fit.rules)
        pos = self.cursor.get(fit, 0)
        shape, extra, ports, slots = fit.shape, fit.extra, fit.ports, self.slots
        while pos < len(allowed):
            slot = slots[allowed[pos]]
            if slot.ports < ports:
                pos += 1
                continue
            free = slot.free
            for key, amount in shape:
                if free.get(key, 0) < amount:
                    break
            else:
                if not extra or slot.other.contains(extra):
                    self.cursor[fit] = pos
                    return slot
            pos += 1
        self.cursor[fit] = pos
        return None

    def fits_nowhere(self, fit: Fit) -> bool:
        """Whether no offer, as offered, could hold one task of ``fit``."""
        known = self.nowhere.get(fit)
        if known is None:
            known = self.nowhere[fit] = not any(
                self.slots[i].offer.resources.contains(fit.resources)
                and self.slots[i].offer.resources.range_count("ports") >= fit.ports for i in self.passing(fit.rules))
        return known


def take(slot: Slot, fit: Fit, sign: int = 1) -> None:
    """Uses one task's resources of ``slot`` (``sign=-1`` gives them back)."""
    free = slot.free
    for key, amount in fit.shape:
        free[key] = free.get(key, 0) - sign * amount
    slot.ports -= sign * fit.ports
    if fit.extra:
        slot.other = slot.other.subtract_contained(fit.extra) if sign > 0 else slot.other + fit.extra
