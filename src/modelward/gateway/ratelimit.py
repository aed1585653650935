"""Token-bucket rate limiting for the gateway: in memory for one process, in Redis for many replicas.

A bucket holds at most ``burst`` tokens and refills at ``rate_per_s``; a request costing ``cost`` tokens
passes when that many are there. The state of a key is two numbers (tokens, time of last update), so the
math is exact and memory is constant per key. :class:`RedisRateLimiter` runs the update as one Lua script
timed by the Redis server's own clock, so replicas with skewed clocks share one bucket. When Redis cannot
be reached it raises :class:`RateLimitUnavailable`; the gateway then fails closed (503), because a limiter
that silently lets everything through is no limiter.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
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


# KEYS[1] = bucket key; ARGV = rate per second, burst, cost. Returns {allowed 0/1, remaining, retry_after_s}
# as strings (Lua numbers would be truncated to integers on the way back). State: hash {tokens, micros}.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'micros')
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
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'micros', string.format('%.17g', now))
local full_in_ms = math.ceil((burst - tokens) / rate * 1000) + 1
redis.call('PEXPIRE', KEYS[1], full_in_ms)
return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry)}
"""


class RedisRateLimiter:
    """Token buckets in Redis shared by every replica: one atomic Lua script per hit, server time, TTL'd keys."""

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
        _check_cost(bucket, cost)
        args = (self._prefix + key, repr(float(bucket.rate_per_s)), repr(float(bucket.burst)), repr(float(cost)))
        try:
            sha = self._sha or self._load()
            try:
                reply = self._client.evalsha(sha, 1, *args)
            except NoScriptError:  # the server restarted or flushed its script cache
                reply = self._client.evalsha(self._load(), 1, *args)
        except RedisError as exc:
            raise self._unavailable(exc) from None
        allowed, remaining, retry = reply
        return RateDecision(bool(int(allowed)), float(remaining), float(retry))

    def close(self) -> None:
        self._client.close()
