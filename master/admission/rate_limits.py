"""Per-principal rate limits for framework calls: token buckets on the caller's clock, pure.

Why: one framework that floods the master (a retry loop gone wrong, a hostile client) must not
slow every other framework down (RELIABILITY scenario 37). Mesos has ``--rate_limits`` (qps per
principal, calls over capacity answered 429); Tepui gives every principal — or, for a framework
without one, every framework — a token bucket: ``rate`` calls per second on average, ``burst``
at once. A call over the limit is answered with an ERROR and dropped before the master does any
work for it, so nothing queues for it either.

The limiter takes ``now`` from its caller (the core's fake or real clock) and keeps at most
``max_keys`` buckets: the least recently used go first, and a bucket that has refilled is the
same as no bucket, so forgetting it loses nothing.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass

DEFAULT_RATE = 1000.0  # calls per second per principal: far above any well-behaved framework
DEFAULT_BURST_SECONDS = 5.0  # burst = rate × this, unless given: absorbs a burst of acknowledgements


@dataclass(frozen=True)
class RateLimit:
    rate: float  # tokens per second
    burst: float  # bucket size

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")

    def __str__(self) -> str:
        return f"{self.rate:g}/s (burst {self.burst:g})"


DEFAULT_RATE_LIMIT = RateLimit(DEFAULT_RATE, DEFAULT_RATE * DEFAULT_BURST_SECONDS)

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_rate_limit(text: str, burst: float | None = None) -> RateLimit | None:
    """``"1000/s"``, ``"600/m"`` or ``"unlimited"`` (None); ``burst`` defaults to 5 s of rate."""
    text = text.strip().lower()
    if text in ("unlimited", "none", "0"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*/\s*([a-z]+)", text)
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a rate; write CALLS/UNIT like 1000/s or 600/m, or 'unlimited'")
    rate = float(match.group(1)) / _UNITS[match.group(2)]
    if rate <= 0:
        raise ValueError(f"{text!r}: the rate must be above zero; use 'unlimited' to turn limits off")
    chosen = burst if burst is not None else max(1.0, rate * DEFAULT_BURST_SECONDS)
    if chosen < 1:
        raise ValueError(f"burst {chosen:g} is below 1; a burst of at least 1 call is needed")
    return RateLimit(rate, chosen)


@dataclass
class TokenBucket:
    tokens: float
    updated: float

    def refill(self, limit: RateLimit, now: float) -> None:
        elapsed = max(0.0, now - self.updated)  # a clock that steps back never mints tokens
        self.tokens = min(limit.burst, self.tokens + elapsed * limit.rate)
        self.updated = max(self.updated, now)

    def take(self, limit: RateLimit, now: float) -> bool:
        self.refill(limit, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, limit: RateLimit) -> float:
        """Seconds until the next call would go through."""
        return max(0.0, (1.0 - self.tokens) / limit.rate)


class RateLimiter:
    """Buckets by key (a principal, or ``framework:ID``), at most ``max_keys`` of them."""

    def __init__(self, limit: RateLimit, max_keys: int = 10000) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.limit.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(self.limit, now)

    def retry_after(self, key: str) -> float:
        bucket = self._buckets.get(key)
        return bucket.wait(self.limit) if bucket is not None else 0.0
