"""Token buckets in memory (exact, with an injected clock) and in a real redis-server shared by two replicas."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from gateway.servers import free_port, redis_url
from modelward.core.errors import InputError, ModelwardError
from modelward.gateway.ratelimit import (
    Bucket,
    MemoryRateLimiter,
    RateLimiter,
    RateLimitUnavailable,
    RedisRateLimiter,
)

__all__ = ["redis_url"]  # the imported fixture is used by name


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _hammer(limiters: list[RateLimiter], key: str, bucket: Bucket, threads: int, hits: int) -> int:
    allowed = 0
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        nonlocal allowed
        limiter = limiters[i % len(limiters)]
        start.wait()
        mine = sum(limiter.hit(key, bucket).allowed for _ in range(hits))
        with lock:
            allowed += mine

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return allowed


# --- buckets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0), (-1, 5), (math.inf, 5), (1, math.nan)])
def test_bucket_rejects_non_positive_or_non_finite(rate: float, burst: float) -> None:
    with pytest.raises(InputError):
        Bucket(rate, burst)


def test_per_day_spreads_the_quota_over_24_hours() -> None:
    bucket = Bucket.per_day(86_400)
    assert bucket.rate_per_s == pytest.approx(1.0)
    assert bucket.burst == 86_400
    with pytest.raises(InputError):
        Bucket.per_day(0)


# --- memory ----------------------------------------------------------------------------------------


def test_memory_burst_then_refusal_with_exact_retry_after() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    bucket = Bucket(rate_per_s=2.0, burst=5)
    decisions = [limiter.hit("k", bucket) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert decisions[5].retry_after_s == pytest.approx(0.5)
    assert all(d.retry_after_s == 0 for d in decisions[:5])


def test_memory_refills_over_time_up_to_burst_only() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    bucket = Bucket(rate_per_s=2.0, burst=3)
    for _ in range(3):
        assert limiter.hit("k", bucket).allowed
    clock.now += 0.4  # 0.8 tokens: still short of one
    refused = limiter.hit("k", bucket)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.1)
    clock.now += refused.retry_after_s  # exactly when the token exists
    assert limiter.hit("k", bucket).allowed
    clock.now += 3600  # a long idle time refills to the burst, not beyond
    assert [limiter.hit("k", bucket).allowed for _ in range(4)] == [True, True, True, False]


def test_memory_cost_above_one() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    bucket = Bucket(rate_per_s=1.0, burst=10)
    assert limiter.hit("k", bucket, cost=4).remaining == 6
    assert limiter.hit("k", bucket, cost=4).remaining == 2
    refused = limiter.hit("k", bucket, cost=4)
    assert not refused.allowed and refused.remaining == 2
    assert refused.retry_after_s == pytest.approx(2.0)
    assert limiter.hit("k", bucket, cost=2).allowed  # a cheaper request still fits
    with pytest.raises(InputError):
        limiter.hit("k", bucket, cost=11)  # could never pass: an error, not an endless wait
    with pytest.raises(InputError):
        limiter.hit("k", bucket, cost=0)


def test_memory_keys_are_isolated() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    bucket = Bucket(rate_per_s=1.0, burst=2)
    assert [limiter.hit("alice", bucket).allowed for _ in range(3)] == [True, True, False]
    assert [limiter.hit("bob", bucket).allowed for _ in range(3)] == [True, True, False]


def test_memory_is_thread_safe_exactly_burst_allowed() -> None:
    limiter = MemoryRateLimiter()
    bucket = Bucket(rate_per_s=1e-6, burst=100)
    assert _hammer([limiter], "hot", bucket, threads=8, hits=50) == 100


def test_memory_lru_bound_evicts_full_buckets_first_then_oldest() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(max_keys=3, clock=clock)
    slow, fast = Bucket(rate_per_s=0.001, burst=5), Bucket(rate_per_s=100.0, burst=5)
    limiter.hit("a", slow)
    limiter.hit("b", fast)
    limiter.hit("c", slow)
    clock.now += 1.0  # b has refilled completely; a is the oldest but still owes tokens
    limiter.hit("d", slow)
    assert len(limiter) == 3
    assert limiter.hit("a", slow).remaining == pytest.approx(3.0, abs=0.01)  # a was kept
    limiter.hit("e", slow)  # nothing is full now: the least recently used (c) goes
    assert len(limiter) == 3
    assert limiter.hit("c", slow).remaining == pytest.approx(4.0)  # c starts over
    for i in range(1000):
        limiter.hit(f"flood-{i}", slow)
    assert len(limiter) == 3


def _check_hit_many_stops_at_the_first_refusal(limiter: RateLimiter) -> None:
    wide, narrow, last = Bucket(0.001, 5), Bucket(0.001, 1), Bucket(0.001, 3)
    hits = [("wide", wide), ("narrow", narrow), ("last", last)]
    first = limiter.hit_many(hits)
    assert [d.allowed for d in first] == [True, True, True]
    assert [round(d.remaining, 2) for d in first] == [4.0, 0.0, 2.0]
    second = limiter.hit_many(hits)
    assert [d.allowed for d in second] == [True, False]  # "narrow" refused; "last" not consulted
    assert second[1].retry_after_s == pytest.approx(1000.0, rel=0.01)
    assert limiter.hit("last", last).remaining == pytest.approx(1.0, abs=0.01)  # untouched by the refused call
    assert limiter.hit("wide", wide).remaining == pytest.approx(2.0, abs=0.01)  # the first bucket still paid
    assert limiter.hit_many([]) == []
    with pytest.raises(InputError):
        limiter.hit_many([("wide", wide), ("narrow", narrow)], cost=2)  # could never pass "narrow"


def test_memory_hit_many_stops_at_the_first_refusal() -> None:
    _check_hit_many_stops_at_the_first_refusal(MemoryRateLimiter(clock=FakeClock()))


# --- redis -----------------------------------------------------------------------------------------


@pytest.fixture
def make_redis(redis_url: str) -> Iterator[Callable[[], RedisRateLimiter]]:
    prefix = f"test:{uuid.uuid4().hex}:"
    made: list[RedisRateLimiter] = []

    def make() -> RedisRateLimiter:
        made.append(RedisRateLimiter(redis_url, prefix=prefix))
        return made[-1]

    yield make
    for limiter in made:
        limiter.close()


def test_redis_burst_then_refusal_and_retry_after(make_redis: Callable[[], RedisRateLimiter]) -> None:
    limiter = make_redis()
    bucket = Bucket(rate_per_s=0.5, burst=3)  # slow: the refill during the test is tiny
    decisions = [limiter.hit("k", bucket) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[0].remaining == pytest.approx(2.0, abs=0.01)
    assert decisions[3].retry_after_s == pytest.approx(2.0, abs=0.05)
    assert decisions[3].retry_after_s <= 2.0


def test_redis_hit_many_stops_at_the_first_refusal(make_redis: Callable[[], RedisRateLimiter]) -> None:
    _check_hit_many_stops_at_the_first_refusal(make_redis())


def test_redis_refills_and_retry_after_is_right(make_redis: Callable[[], RedisRateLimiter]) -> None:
    limiter = make_redis()
    bucket = Bucket(rate_per_s=10.0, burst=2)
    assert limiter.hit("k", bucket).allowed and limiter.hit("k", bucket).allowed
    refused = limiter.hit("k", bucket)
    assert not refused.allowed and 0.05 < refused.retry_after_s <= 0.1
    time.sleep(refused.retry_after_s + 0.01)
    assert limiter.hit("k", bucket).allowed


def test_redis_cost_and_key_isolation(make_redis: Callable[[], RedisRateLimiter]) -> None:
    limiter = make_redis()
    bucket = Bucket(rate_per_s=0.01, burst=10)
    assert limiter.hit("alice", bucket, cost=4).remaining == pytest.approx(6, abs=0.01)
    assert limiter.hit("alice", bucket, cost=4).allowed
    refused = limiter.hit("alice", bucket, cost=4)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(200, abs=1)
    assert limiter.hit("bob", bucket, cost=10).allowed


def test_redis_keys_expire_once_they_would_be_full(redis_url: str, make_redis: Callable[[], RedisRateLimiter]) -> None:
    limiter = make_redis()
    limiter.hit("k", Bucket(rate_per_s=2.0, burst=4), cost=3)  # 3 tokens missing: full again in 1.5 s
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k for k in client.scan_iter(match=f"{limiter._prefix}*")]
        assert len(keys) == 1
        assert 1400 < int(client.pttl(keys[0])) <= 1501
    finally:
        client.close()


def test_redis_reloads_the_script_after_a_flush(redis_url: str, make_redis: Callable[[], RedisRateLimiter]) -> None:
    limiter = make_redis()
    bucket = Bucket(rate_per_s=0.01, burst=3)
    assert limiter.hit("k", bucket).allowed
    client = redis.Redis.from_url(redis_url)
    try:
        client.script_flush()
    finally:
        client.close()
    decision = limiter.hit("k", bucket)  # NOSCRIPT answered by loading it again; state survived
    assert decision.allowed and decision.remaining == pytest.approx(1.0, abs=0.01)


def test_two_replicas_share_one_bucket_exactly(make_redis: Callable[[], RedisRateLimiter]) -> None:
    replicas: list[RateLimiter] = [make_redis(), make_redis()]
    bucket = Bucket(rate_per_s=1e-6, burst=100)
    assert _hammer(replicas, "shared", bucket, threads=8, hits=30) == 100


def test_redis_down_is_a_clear_error_without_the_password() -> None:
    limiter = RedisRateLimiter(f"redis://:hunter2secret@127.0.0.1:{free_port()}/0", timeout_s=0.5)
    try:
        with pytest.raises(RateLimitUnavailable) as caught:
            limiter.hit("k", Bucket(1.0, 1.0))
    finally:
        limiter.close()
    message = str(caught.value)
    assert isinstance(caught.value, ModelwardError)
    assert "unavailable" in message and "127.0.0.1" in message
    assert "hunter2secret" not in message and "***" in message


def test_invalid_redis_url_is_an_input_error() -> None:
    with pytest.raises(InputError):
        RedisRateLimiter("http://not-redis/")
