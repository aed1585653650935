"""Predictions run on their own bounded thread budget; everything else keeps the default one."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import gateway_template, make_gateway

from modelward.gateway.app import create_app, inference_threads
from modelward.gateway.config import load_config
from modelward.gateway.identity import Principal
from modelward.gateway.keys import Role
from modelward.gateway.service import GatewayService


@pytest.fixture
def service(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[GatewayService]:
    template = gateway_template(tmp_path_factory, request.config.cache)
    config = make_gateway(
        template,
        tmp_path_factory.mktemp("budgets") / "gw",
        {"server": {"inference_threads": 1, "worker_threads": 4}, "metrics": {"public": True}},
    )
    gateway = GatewayService(load_config(config))
    yield gateway
    gateway.close()


def test_the_default_is_one_thread_per_core_and_a_configured_number_wins(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("model: {artifact: m, public_keys: [k.pub]}\n", encoding="utf-8")
    assert inference_threads(load_config(config)) == max(2, os.cpu_count() or 2)
    config.write_text("server: {inference_threads: 3}\nmodel: {artifact: m, public_keys: [k.pub]}\n", encoding="utf-8")
    assert inference_threads(load_config(config)) == 3


def test_predictions_queue_for_their_budget_while_other_requests_pass(service: GatewayService) -> None:
    inside = 0
    most_inside = 0
    lock = threading.Lock()
    release = threading.Event()
    entered = threading.Event()

    def blocking_predict(principal: Principal | None, data: bytes) -> tuple[int, dict[str, Any]]:
        nonlocal inside, most_inside
        with lock:
            inside += 1
            most_inside = max(most_inside, inside)
        entered.set()
        release.wait(10)
        with lock:
            inside -= 1
        return 200, {"label": 0}

    service.predict_image = blocking_predict  # type: ignore[method-assign]
    key = service.keys.create("budget-user", Role.END_USER).key
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/png"}

    async def scenario() -> tuple[list[int], int, float]:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            predictions = [
                asyncio.create_task(client.post("/v1/predict/image", content=b"png", headers=headers)) for _ in range(3)
            ]
            while not entered.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # the other two have had time to reach the budget
            started = time.perf_counter()
            metrics = await client.get("/metrics")  # not a prediction: its own budget, not blocked
            waited = time.perf_counter() - started
            release.set()
            answers = await asyncio.gather(*predictions)
            return [a.status_code for a in answers], metrics.status_code, waited

    statuses, metrics_status, waited = asyncio.run(scenario())
    assert statuses == [200, 200, 200]
    assert most_inside == 1  # inference_threads: 1 -> one prediction at a time
    assert metrics_status == 200
    assert waited < 5  # answered while every prediction was still held
