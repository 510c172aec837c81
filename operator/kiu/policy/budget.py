"""The TPS budget of a model: its limit, each gateway replica's share, and a token bucket.

The reference service rejects calls beyond the TPS of the in-service units with
ProvisionedThroughputExceededException; the gateway enforces the same contract with
one token bucket per model and replica, refilled at the replica's share of the limit.
"""

from __future__ import annotations

import math

# Float rounding of arrival times must not reject a call that arrives exactly on time.
# The balance never falls below -_SLACK, so over-admission is bounded by _SLACK tokens
# in total, not per call.
_SLACK = 1e-9


def tps_limit(*, tps_per_unit: float, ready_units: int) -> float:
    """The TPS a model may admit: each ready unit adds its throughput, as in the reference."""
    return tps_per_unit * max(ready_units, 0)


def replica_share(*, limit: float, replicas: int) -> float:
    """One gateway replica's part of the limit; fewer than one replica counts as one.

    Splitting evenly assumes the load balancer in front of the gateway spreads calls
    evenly; the sum over replicas never exceeds the limit.
    """
    return limit / max(replicas, 1)


class TokenBucket:
    """Admits calls at `rate` per second with a burst of `burst_seconds` of the rate.

    The clock is injected (`now`, seconds) so that the bucket is deterministic in tests.
    Capacity is `rate * burst_seconds` but at least one token while rate > 0: a limit
    below 1 TPS (say 0.5) would otherwise never hold the token a single call needs.
    Rate 0 (no ready unit) admits nothing. Time going backwards mints no tokens.
    `try_acquire` runs on every call, so it is plain float arithmetic on slots; it
    also counts the calls it is asked for (`offered`, admitted or not), which is how
    gateway replicas learn where a model's calls arrive (`kiu.policy.shares`).
    """

    __slots__ = ("_burst_seconds", "_capacity", "_last", "_rate", "_tokens", "offered")

    def __init__(self, *, rate: float, now: float, burst_seconds: float = 1.0) -> None:
        if not burst_seconds > 0:
            raise ValueError(f"burst_seconds must be > 0, got {burst_seconds}")
        self._burst_seconds = burst_seconds
        self._rate = _checked_rate(rate)
        self._capacity = _capacity(self._rate, burst_seconds)
        self._tokens = self._capacity
        self._last = now
        self.offered = 0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> float:
        return self._capacity

    def set_rate(self, *, rate: float, now: float) -> None:
        """Change the rate (ready units or replicas changed) without minting tokens.

        Tokens earned up to `now` are credited at the old rate; the balance is then
        clipped to the new capacity, and is not topped up when the rate rises. A
        bucket that had no rate (no ready unit) starts full, as a new bucket does:
        otherwise the first calls to a model that just became ready would be
        throttled while well within its limit.
        """
        rate = _checked_rate(rate)
        self._refill(now)
        was_closed = self._rate == 0.0
        self._rate = rate
        self._capacity = _capacity(rate, self._burst_seconds)
        self._tokens = self._capacity if was_closed else min(self._tokens, self._capacity)

    def try_acquire(self, *, now: float, tokens: float = 1.0) -> bool:
        """Take `tokens` if available and say whether the call is admitted."""
        self.offered += 1
        elapsed = now - self._last  # _refill inlined: this is the per-call hot path
        if elapsed > 0.0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._last = now
        if self._tokens >= tokens - _SLACK:
            self._tokens -= tokens
            return True
        return False

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0.0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._last = now


def _checked_rate(rate: float) -> float:
    if not (rate >= 0.0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a finite number >= 0, got {rate}")
    return rate


def _capacity(rate: float, burst_seconds: float) -> float:
    return max(rate * burst_seconds, 1.0) if rate > 0.0 else 0.0
