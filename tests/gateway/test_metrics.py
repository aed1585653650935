"""Gateway metrics: each finished request lands in the right counters and histogram, however often it recurs."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from modelward.gateway.metrics import GatewayMetrics


def _samples(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_requests_refusals_and_latency_are_counted_per_label_set() -> None:
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.observe("predict-image", "ok", 200, 0.003)
    metrics.observe("predict-image", "rate_limited", 429, 0.001)
    metrics.observe("predict-image", "rate_limited", 429, 0.001)
    metrics.observe("predict-image", "too_large", 413, 0.002)
    metrics.observe("read-metrics", "ok", 200, 0.0004)
    got = _samples(metrics)
    assert got[("modelward_gateway_requests_total", (("action", "predict-image"), ("outcome", "ok")))] == 3
    assert got[("modelward_gateway_requests_total", (("action", "predict-image"), ("outcome", "rate_limited")))] == 2
    assert got[("modelward_gateway_requests_total", (("action", "read-metrics"), ("outcome", "ok")))] == 1
    assert got[("modelward_gateway_refusals_total", (("reason", "rate_limited"), ("status", "429")))] == 2
    assert got[("modelward_gateway_refusals_total", (("reason", "too_large"), ("status", "413")))] == 1
    assert not any(name == "modelward_gateway_refusals_total" and ("reason", "ok") in labels for name, labels in got)
    assert got[("modelward_gateway_request_seconds_count", (("action", "predict-image"),))] == 6
    assert got[("modelward_gateway_request_seconds_count", (("action", "read-metrics"),))] == 1
    # three predictions at 3 ms fall above the 2 ms bucket; the three faster ones at or below it
    assert got[("modelward_gateway_request_seconds_bucket", (("action", "predict-image"), ("le", "0.002")))] == 3
    assert got[("modelward_gateway_request_seconds_bucket", (("action", "predict-image"), ("le", "0.005")))] == 6
