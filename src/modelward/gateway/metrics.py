"""Prometheus metrics of one gateway: requests, refusals by reason, latency, the served model.

Each gateway owns its registry (not the process-global one), so several gateways in one process
(tests, benchmarks) never collide.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """The counters and histograms the gateway updates on every request."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelward_gateway_requests",
            "Requests by action and outcome (ok or the refusal reason).",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "modelward_gateway_refusals",
            "Refused requests by HTTP status and reason.",
            ["status", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelward_gateway_request_seconds",
            "Time from request to durable audit record, by action.",
            ["action"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model = Gauge(
            "modelward_gateway_model_info",
            "The served model (value 1 for the current version).",
            ["artifact", "version", "key_id"],
            registry=self.registry,
        )
        self.deployments = Counter(
            "modelward_gateway_deployments",
            "Model deployments and rollbacks by outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        # (action, outcome, status) -> the label children observe() updates; the combinations are few
        # (actions and reasons are fixed sets, statuses a handful), so this stays small
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def observe(self, action: str, outcome: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        children = self._children.get((action, outcome, status))
        if children is None:  # labels() takes a lock and builds a key: once per combination, not per request
            refused = self.refusals.labels(str(status), outcome) if status >= 400 else None
            children = (self.requests.labels(action, outcome), self.latency.labels(action), refused)
            self._children[(action, outcome, status)] = children
        requests, latency, refused = children
        requests.inc()
        latency.observe(seconds)
        if refused is not None:
            refused.inc()

    def serving(self, artifact: str, version: str, key_id: str) -> None:
        """Mark ``version`` as the one served (clearing the previous one)."""
        self.model.clear()
        self.model.labels(artifact, version, key_id).set(1)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
