"""The offers outstanding: who holds each, on which agent, and its timeout — a component of
:class:`tepui.master.core.MasterCore` that owns them (decline filters stay in the allocator,
which applies them).

Mesos semantics: offers count as allocated until used, declined, rescinded or timed out; an
offer never survives its framework's disconnect or its agent's removal. Each offer is also
listed on its framework's and its agent's record (``FrameworkRecord.offers``,
``AgentRecord.offers``) so that those departures find theirs without a scan; the book keeps
the three in step.
"""

from __future__ import annotations

from tepui.master.events import CancelTimer, Log, MasterEffect, OfferTimeout, ScheduleTimer, Send
from tepui.master.offering.pool import Pool
from tepui.master.records import OfferRecord
from tepui.master.members.roster import Roster
from tepui.sdk.protocol import scheduler as sm


class OfferBook:
    def __init__(self, roster: Roster, pool: Pool, offer_timeout: float | None) -> None:
        self.offers: dict[str, OfferRecord] = {}
        self._roster = roster
        self._pool = pool
        self._timeout = offer_timeout

    def get(self, offer_id: str) -> OfferRecord | None:
        return self.offers.get(offer_id)

    def __contains__(self, offer_id: object) -> bool:
        return offer_id in self.offers

    def open(self, offer: OfferRecord, now: float, out: list[MasterEffect]) -> None:
        """A new offer, listed on its framework and agent, timed out after ``offer_timeout``."""
        self.offers[offer.offer_id] = offer
        self._roster.frameworks[offer.framework_id].offers.add(offer.offer_id)
        self._roster.agents[offer.agent_id].offers.add(offer.offer_id)
        if self._timeout is not None:
            out.append(ScheduleTimer(now + self._timeout, OfferTimeout(offer.offer_id)))

    def take(self, offer_id: str) -> OfferRecord | None:
        """The offer, no longer outstanding (its timer still set: see :meth:`withdraw`)."""
        offer = self.offers.pop(offer_id, None)
        if offer is not None:
            framework = self._roster.frameworks.get(offer.framework_id)
            if framework is not None:
                framework.offers.discard(offer_id)
            agent = self._roster.agents.get(offer.agent_id)
            if agent is not None:
                agent.offers.discard(offer_id)
        return offer

    def cancel_timer(self, offer_id: str, out: list[MasterEffect]) -> None:
        if self._timeout is not None:
            out.append(CancelTimer(OfferTimeout(offer_id)))

    def withdraw(self, offer_id: str, out: list[MasterEffect]) -> None:
        """The framework used or declined the offer: no longer outstanding, its timer cancelled."""
        self.take(offer_id)
        self.cancel_timer(offer_id, out)

    def rescind(self, offer_id: str, now: float, out: list[MasterEffect], notify: bool = True,
                recover: bool = True) -> None:
        """The master takes the offer back: its resources return (unless its agent is being
        removed), and the framework hears RESCIND (unless it is disconnecting or leaving)."""
        offer = self.take(offer_id)
        if offer is None:
            return
        if recover:
            self._pool.recover(offer.agent_id, offer.framework_id, offer.role, offer.resources)
            self._pool.request_allocation()
        framework = self._roster.frameworks.get(offer.framework_id)
        if notify and framework is not None and framework.peer is not None:
            out.append(Send(framework.peer, sm.Rescind(offer_id)))
        self.cancel_timer(offer_id, out)

    def timed_out(self, key: OfferTimeout, now: float, out: list[MasterEffect]) -> None:
        if key.offer_id in self.offers:
            out.append(Log("info", "offer_timed_out", {"offer_id": key.offer_id}))
            self.rescind(key.offer_id, now, out)
