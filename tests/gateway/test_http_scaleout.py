"""Two gateway replicas behind one PostgreSQL and one Redis: one rate limit, one audit chain, one key store."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import AUDIT_PUBLIC_KEY, GatewayProcess, auth, cli, digit_png, gateway_template, make_gateway

from gateway.servers import create_database

BURST = 12


@pytest.fixture
def replicas(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    postgres_url: str,
    redis_url: str,
) -> Iterator[list[GatewayProcess]]:
    template = gateway_template(tmp_path_factory, request.config.cache)  # type: ignore[arg-type]
    database = create_database(postgres_url)
    config = make_gateway(
        template,
        tmp_path / "shared",
        {
            "storage": {"backend": "postgres", "postgres_url": database},
            "rate_limits": {
                "backend": "redis",
                "redis_url": redis_url,
                "per_principal": {"rate_per_s": 0.001, "burst": BURST},
                "per_address": {"rate_per_s": 1000, "burst": 1000},
            },
            "audit": {"checkpoint_every": 5},
        },
    )
    started = [GatewayProcess(config).start()]
    try:
        started.append(GatewayProcess(config).start())
    except BaseException:
        started[0].stop()
        raise
    yield started
    for replica in started:
        replica.stop()


def test_two_replicas_share_one_rate_limit_one_key_store_and_one_chain(replicas: list[GatewayProcess]) -> None:
    first = replicas[0]
    key = first.create_key("carol", "end-user")
    png = digit_png(3)
    clients = [r.client() for r in replicas]
    statuses: list[int] = []
    acknowledged: list[str] = []
    for i in range(BURST + 8):  # alternate replicas: each alone would allow BURST
        response = clients[i % 2].post(
            "/v1/predict/image", content=png, headers={**auth(key["key"]), "Content-Type": "image/png"}
        )
        statuses.append(response.status_code)
        if response.status_code == 200:
            acknowledged.append(response.json()["decision_id"])
    counts = Counter(statuses)
    assert counts[200] == BURST, statuses  # one bucket across both replicas
    assert counts[429] == 8
    assert {s for s in statuses[:BURST]} == {200}

    # a revocation through the shared store takes effect on both replicas at once
    first.admin("keys", "revoke", key["prefix"])
    for client in clients:
        refused = client.post("/v1/predict/image", content=png, headers=auth(key["key"]))
        assert refused.status_code == 401
        assert refused.json()["detail"]["reason"] == "revoked"

    for replica in replicas:
        replica.stop()
    verified = cli(
        "audit-log",
        "verify",
        "--config",
        str(first.config),
        "--public-key",
        str(first.folder / AUDIT_PUBLIC_KEY),
        "-f",
        "json",
        check=False,
    )
    result = json.loads(verified.stdout)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert result["valid"] and result["authenticated"]
    assert result["checkpoints"] >= 2

    from modelward.gateway.config import load_config, resolve_secret
    from modelward.gateway.postgres import PostgresAuditStore

    config = load_config(first.config)
    store = PostgresAuditStore(resolve_secret(config.storage.postgres_url or "", "postgres_url"))
    try:
        records = list(store.records())
    finally:
        store.close()
    logged = {d["decision_id"] for r in records if r.action == "predict-image" for d in r.details.get("decisions", [])}
    assert set(acknowledged) <= logged  # every acknowledged decision is in the one chain
    starts = [r for r in records if r.action == "start"]
    assert len(starts) == 2  # both replicas wrote into the same chain
    outcomes = Counter(r.outcome for r in records if r.action == "predict-image")
    assert outcomes["ok"] == BURST and outcomes["rate_limited"] == 8 and outcomes["revoked"] == 2
