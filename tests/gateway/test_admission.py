"""Admission: credentials checked, then every rate-limit bucket of a request taken in one limiter call.

The order matters for security (a limited sender is refused before it learns whether its credential was
good, and a refused credential still costs its sender a token) and for speed (one Redis round trip per
request). Each test runs on the in-memory limiter and on a real redis-server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from harness import digit_png, gateway_template, make_gateway

from gateway.servers import redis_url
from modelward.gateway.config import load_config
from modelward.gateway.keys import Action, Role
from modelward.gateway.ratelimit import Bucket
from modelward.gateway.service import GatewayService, Outcome, RequestInfo

__all__ = ["redis_url"]  # the imported fixture is used by name

LIMITS = {
    "per_address": {"rate_per_s": 0.001, "burst": 4},
    "per_principal": {"rate_per_s": 0.001, "burst": 2},
    "daily_quota": 10,
}


@pytest.fixture(params=["memory", "redis"])
def make_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], GatewayService]]:
    """Gateways with small buckets (next to no refill during a test), on the parametrised limiter backend."""
    limits: dict[str, Any] = dict(LIMITS)
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(url) as client:
            client.flushdb()  # buckets of earlier tests share the server
        limits |= {"backend": "redis", "redis_url": url}
    template = gateway_template(tmp_path_factory, request.config.cache)
    made: list[GatewayService] = []

    def make() -> GatewayService:
        folder = tmp_path_factory.mktemp("admission") / "gw"
        made.append(GatewayService(load_config(make_gateway(template, folder, {"rate_limits": limits}))))
        return made[-1]

    yield make
    for service in made:
        service.close()


def _predict(service: GatewayService, key: str, client: str = "203.0.113.7") -> Outcome:
    info = RequestInfo("predict-image", {"authorization": f"Bearer {key}"}, client, "/v1/predict/image", "POST")
    png = digit_png()
    return service.handle(info, Action.PREDICT, lambda p: service.predict_image(p, png))


def _reason(outcome: Outcome) -> str:
    return str(outcome.body["detail"]["reason"])


def test_a_limited_sender_gets_429_whatever_its_credentials(make_service: Callable[[], GatewayService]) -> None:
    service = make_service()
    good = service.keys.create("alice", Role.END_USER).key
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    refused = [_reason(_predict(service, forged)) for _ in range(4)]
    assert refused == ["hash_mismatch"] * 4  # each refused credential cost its sender a token
    for key in (good, forged):
        limited = _predict(service, key)
        assert limited.status == 429 and _reason(limited) == "rate_limited", limited.body
        assert int(limited.headers["Retry-After"]) >= 1
    assert _predict(service, good, client="203.0.113.8").status == 200  # another address has its own bucket


def test_a_principal_refusal_names_the_principal_and_spares_its_quota(
    make_service: Callable[[], GatewayService],
) -> None:
    service = make_service()
    issued = service.keys.create("bob", Role.END_USER)
    statuses = [_predict(service, issued.key, client=f"198.51.100.{i}").status for i in range(3)]
    assert statuses == [200, 200, 429]
    last = service.stores.audit.tail(1, action="predict-image")[0]
    assert last.outcome == "rate_limited" and last.actor == f"key:{issued.record.prefix}"
    # the quota saw the two requests that passed the principal's bucket, not the one it refused
    quota = service.limiter.hit("quota:bob", Bucket.per_day(10))
    assert quota.remaining == pytest.approx(10 - 2 - 1, abs=0.01)


def test_quota_refusal_says_quota(make_service: Callable[[], GatewayService]) -> None:
    service = make_service()
    issued = service.keys.create("carol", Role.END_USER)
    for _ in range(10):
        assert service.limiter.hit("quota:carol", Bucket.per_day(10)).allowed  # the day's quota spent elsewhere
    refused = _predict(service, issued.key)
    assert refused.status == 429 and _reason(refused) == "quota_exceeded", refused.body
    assert int(refused.headers["Retry-After"]) > 3600


def test_redis_answers_each_request_in_one_round_trip(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    client = redis.Redis.from_url(redis_url)
    template = gateway_template(tmp_path_factory, request.config.cache)
    overrides = {"rate_limits": {"backend": "redis", "redis_url": redis_url}}
    service = GatewayService(load_config(make_gateway(template, tmp_path_factory.mktemp("trips") / "gw", overrides)))
    try:
        key = service.keys.create("dave", Role.END_USER).key
        assert _predict(service, key).status == 200  # loads the script
        client.config_resetstat()
        for _ in range(5):
            assert _predict(service, key).status == 200
        stats = client.info("commandstats")
    finally:
        service.close()
        client.close()
    calls = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    # Redis counts the commands a script runs as well as the calls that reach it
    in_script = {"time", "hmget", "hset", "pexpire"}
    sent = {name: n for name, n in calls.items() if name not in in_script and not name.startswith(("info", "config"))}
    assert sent == {"evalsha": 5}  # one round trip per request
    assert calls["hmget"] == 15  # in which the address, principal and quota buckets were all taken
