""""Why isn't it running?": every offer an app waiting for capacity saw, and why it was not used.

Marathon users' most common question about a deployment that hangs is why — Marathon 1.4 added
the launch queue's ``processedOffersSummary`` for it. The launcher records one decision per
(waiting app, offer) here; the API turns the last minute of them into counts by reason and the
last few decisions with their agent, and a one-line summary of what to do. Pure: the caller
passes ``now``; old decisions fall out of the window as new ones arrive or when asked.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

WINDOW = 60.0
RECENT = 20
MAX_KEPT = 2000  # per app: a bound on memory whatever the offer rate


@dataclass(frozen=True)
class Decision:
    at: float
    agent_id: str
    hostname: str
    reason: str


class WhyLog:
    """The recent offer decisions of every waiting app."""

    def __init__(self) -> None:
        self._by_app: dict[str, deque[Decision]] = {}

    def refused(self, app: str, agent_id: str, hostname: str, reason: str, now: float) -> None:
        decisions = self._by_app.setdefault(app, deque(maxlen=MAX_KEPT))
        decisions.append(Decision(now, agent_id, hostname, reason))

    def forget(self, app: str) -> None:
        self._by_app.pop(app, None)

    def _recent(self, app: str, now: float) -> list[Decision]:
        decisions = self._by_app.get(app)
        if not decisions:
            return []
        while decisions and decisions[0].at < now - WINDOW:
            decisions.popleft()
        return list(decisions)

    def report(self, app: str, waiting: int, backoff_seconds: float, role: str, now: float) -> dict[str, Any]:
        """The API's Why value (docs/services.md)."""
        decisions = self._recent(app, now)
        reasons = Counter(d.reason for d in decisions)
        agents = {d.agent_id for d in decisions}
        if waiting == 0:
            summary = "Nothing is waiting: every instance the app wants has been launched."
        elif backoff_seconds > 0:
            summary = (f"{waiting} instance(s) wait for the launch backoff ({backoff_seconds:.1f} s left) after "
                       "repeated failures: see `tepui apps show` for the last failure.")
        elif not decisions:
            summary = (f"{waiting} instance(s) wait, and no offer was seen in the last minute: the cluster has no "
                       f"free resources for role {role!r}, or the offers go to other frameworks. Add agents or "
                       "free capacity (`tepui state`).")
        else:
            top, count = reasons.most_common(1)[0]
            summary = (f"{waiting} instance(s) wait: {len(decisions)} offer(s) from {len(agents)} agent(s) were "
                       f"refused in the last minute, most often because {top} ({count}x). Add capacity or relax "
                       "the app's constraints and resources.")
        return {
            "app": app,
            "waiting": waiting,
            "offers_seen": len(decisions),
            "reasons": dict(reasons.most_common()),
            "recent": [{"agent_id": d.agent_id, "hostname": d.hostname, "reason": d.reason, "at": d.at}
                       for d in decisions[-RECENT:]],
            "backoff_seconds": round(max(0.0, backoff_seconds), 3),
            "summary": summary,
        }
