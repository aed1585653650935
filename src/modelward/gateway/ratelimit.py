"""Token-bucket rate limiting for the gateway: in memory for one process, in Redis for many replicas.

A bucket holds at most ``burst`` tokens and refills at ``rate_per_s``; a request costing ``cost`` tokens
passes when that many are there. The state of a key is two numbers (tokens, time of last update), so the
math is exact and memory is constant per key. :class:`RedisRateLimiter` runs the update as one Lua script
timed by the Redis server's own clock, so replicas with skewed clocks share one bucket; ``hit_many`` takes all
of a request's buckets (address, principal, quota) in that one script call, one round trip. When Redis cannot
be reached it raises :class:`RateLimitUnavailable`; the gateway then fails closed (503), because a limiter
that silently lets everything through is no limiter.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from redis.exceptions import NoScriptError, RedisError

from modelward.core.errors import InputError, ModelwardError
from modelward.gateway.redaction import redact_url

__all__ = [
    "Bucket",
    "MemoryRateLimiter",
    "RateDecision",
    "RateLimitUnavailable",
    "RateLimiter",
    "RedisRateLimiter",
]

SECONDS_PER_DAY = 86_400


class RateLimitUnavailable(ModelwardError):
    """The shared rate-limit store cannot be reached; callers must refuse the request (fail closed)."""


@dataclass(frozen=True)
class Bucket:
    """Refill rate (tokens per second) and capacity (the largest burst) of one token bucket."""

    rate_per_s: float
    burst: float

    def __post_init__(self) -> None:
        for name, value in (("rate_per_s", self.rate_per_s), ("burst", self.burst)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise InputError(f"{name} must be a positive finite number, got {value!r}")

    @classmethod
    def per_day(cls, quota: int) -> Bucket:
        """A daily quota: ``quota`` requests at once at most, refilled evenly over 24 hours."""
        if not isinstance(quota, int) or quota <= 0:
            raise InputError(f"daily quota must be a positive integer, got {quota!r}")
        return cls(rate_per_s=quota / SECONDS_PER_DAY, burst=float(quota))


@dataclass(frozen=True)
class RateDecision:
    """Whether a hit passed, the tokens left, and (when refused) the seconds until ``cost`` tokens exist."""

    allowed: bool
    remaining: float
    retry_after_s: float


class RateLimiter(Protocol):
    """Take ``cost`` tokens from the bucket named ``key``, or say how long to wait."""

    def hit(self, key: str, bucket: Bucket, cost: float = 1.0) -> RateDecision: ...

    def hit_many(self, hits: Sequence[tuple[str, Bucket]], cost: float = 1.0) -> list[RateDecision]:
        """Take ``cost`` from each bucket in turn and stop at the first that refuses (later ones untouched).

        Returns the decisions of the buckets consulted: all allowed, or the last one refused.
        """
        ...

    def close(self) -> None: ...


def _check_cost(bucket: Bucket, cost: float) -> None:
    if not math.isfinite(cost) or cost <= 0:
        raise InputError(f"cost must be a positive finite number, got {cost!r}")
    if cost > bucket.burst:
        raise InputError(f"cost {cost} exceeds the bucket's burst {bucket.burst}: it could never pass")


def _take(tokens: float, bucket: Bucket, cost: float) -> tuple[float, RateDecision]:
    """Tokens after the attempt, and the decision, from the refilled token count."""
    if tokens >= cost:
        left = tokens - cost
        return left, RateDecision(True, left, 0.0)
    return tokens, RateDecision(False, tokens, (cost - tokens) / bucket.rate_per_s)


@dataclass
class _State:
    tokens: float
    updated: float
    bucket: Bucket

    def refill(self, now: float) -> float:
        elapsed = max(0.0, now - self.updated)
        return min(self.bucket.burst, self.tokens + elapsed * self.bucket.rate_per_s)


class MemoryRateLimiter:
    """Token buckets in this process's memory; thread-safe, at most ``max_keys`` buckets kept.

    When full, buckets that have refilled completely are evicted first (forgetting them changes nothing),
    oldest use first; if none has, the least recently used one goes, so memory stays bounded under a flood
    of new keys.
    """

    _SCAN = 64  # how many of the oldest buckets to look at for a full one before evicting the oldest

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise InputError(f"max_keys must be >= 1, got {max_keys}")
        self._max = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._states: OrderedDict[str, _State] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def hit(self, key: str, bucket: Bucket, cost: float = 1.0) -> RateDecision:
        _check_cost(bucket, cost)
        with self._lock:
            now = self._clock()
            state = self._states.get(key)
            if state is None:
                self._make_room(now)
                state = _State(bucket.burst, now, bucket)
                self._states[key] = state
            else:
                self._states.move_to_end(key)
            state.bucket = bucket
            state.tokens, decision = _take(state.refill(now), bucket, cost)
            state.updated = now
            return decision

    def hit_many(self, hits: Sequence[tuple[str, Bucket]], cost: float = 1.0) -> list[RateDecision]:
        for _key, bucket in hits:  # all checked before any bucket is charged
            _check_cost(bucket, cost)
        decisions: list[RateDecision] = []
        for key, bucket in hits:
            decisions.append(self.hit(key, bucket, cost))
            if not decisions[-1].allowed:
                break
        return decisions

    def _make_room(self, now: float) -> None:
        while len(self._states) >= self._max:
            victim = None
            for i, (name, state) in enumerate(self._states.items()):
                if i >= self._SCAN:
                    break
                if state.refill(now) >= state.bucket.burst:
                    victim = name
                    break
            if victim is None:
                victim = next(iter(self._states))
            del self._states[victim]

    def close(self) -> None:
        with self._lock:
            self._states.clear()


# KEYS = bucket keys, taken in order; ARGV = cost, then rate per second and burst of each key. Stops at the
# first bucket that refuses (later ones untouched) and returns {allowed 0/1, remaining, retry_after_s} per bucket
# consulted, as strings (Lua numbers would be truncated to integers on the way back). State: hash {tokens, micros}.
_LUA = """
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'micros')
  local tokens = tonumber(state[1])
  local updated = tonumber(state[2])
  if tokens == nil or updated == nil then
    tokens = burst
    updated = now
  end
  local elapsed = now - updated
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(burst, tokens + elapsed * rate / 1000000)
  local allowed = 0
  local retry = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  else
    retry = (cost - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'micros', string.format('%.17g', now))
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1)
  out[#out + 1] = allowed
  out[#out + 1] = string.format('%.17g', tokens)
  out[#out + 1] = string.format('%.17g', retry)
  if allowed == 0 then return out end
end
return out
"""


class RedisRateLimiter:
    """Token buckets in Redis shared by every replica: one atomic Lua script per request, server time, TTL'd keys."""

    def __init__(self, url: str, *, prefix: str = "mw:rl:", timeout_s: float = 1.0) -> None:
        self._where = redact_url(url)
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
            )
        except ValueError as exc:
            raise InputError(f"invalid Redis URL {self._where}: {exc}") from None
        self._prefix = prefix
        self._sha: str | None = None
        self._lock = threading.Lock()

    def _unavailable(self, exc: Exception) -> RateLimitUnavailable:
        reason, secret = str(exc), self._client.connection_pool.connection_kwargs.get("password")
        if secret:
            reason = reason.replace(str(secret), "***")
        return RateLimitUnavailable(f"rate-limit store Redis at {self._where} is unavailable: {reason}")

    def _load(self) -> str:
        sha = str(self._client.script_load(_LUA))
        with self._lock:
            self._sha = sha
        return sha

    def hit(self, key: str, bucket: Bucket, cost: float = 1.0) -> RateDecision:
        return self.hit_many([(key, bucket)], cost)[0]

    def hit_many(self, hits: Sequence[tuple[str, Bucket]], cost: float = 1.0) -> list[RateDecision]:
        """One script call, one round trip, for all the buckets (a request's address, principal and quota)."""
        if not hits:
            return []
        args: list[str] = [repr(float(cost))]
        for _key, bucket in hits:
            _check_cost(bucket, cost)
            args += [repr(float(bucket.rate_per_s)), repr(float(bucket.burst))]
        keys = [self._prefix + key for key, _bucket in hits]
        try:
            sha = self._sha or self._load()
            try:
                reply = self._client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:  # the server restarted or flushed its script cache
                reply = self._client.evalsha(self._load(), len(keys), *keys, *args)
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return [
            RateDecision(bool(int(reply[i])), float(reply[i + 1]), float(reply[i + 2])) for i in range(0, len(reply), 3)
        ]

    def close(self) -> None:
        self._client.close()
