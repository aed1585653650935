"""Nothing is acknowledged that the audit log lacks, and no privileged change happens that it did not see first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from harness import Totp, digit_png, gateway_template, make_gateway

from modelward.gateway.config import load_config
from modelward.gateway.keys import Action, Role
from modelward.gateway.service import GatewayService, RequestInfo


@pytest.fixture
def service(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[GatewayService]:
    template = gateway_template(tmp_path_factory, request.config.cache)
    gateway = GatewayService(load_config(make_gateway(template, tmp_path_factory.mktemp("first") / "gw")))
    yield gateway
    gateway.close()


class _Outage:
    """Makes the audit writer fail from the ``after``-th append on, as a full disk or a lost database would."""

    def __init__(self, service: GatewayService, after: int = 0) -> None:
        self.real = service.writer.append
        self.calls: list[tuple[str, str]] = []
        self.after = after

    def __call__(self, actor: str, action: str, outcome: str, details: Any = None) -> Any:
        self.calls.append((action, outcome))
        if len(self.calls) > self.after:
            raise OSError("disk full")
        return self.real(actor, action, outcome, details)


def _admin(service: GatewayService) -> tuple[dict[str, str], Totp]:
    enrolled = service.users.add("ada", Role.ADMIN)
    assert enrolled.totp_secret is not None
    key = service.keys.create("ada", Role.ADMIN).key
    return {"authorization": f"Bearer {key}"}, Totp(enrolled.totp_secret)


def _create_key(service: GatewayService, headers: dict[str, str]) -> Any:
    info = RequestInfo("create-key", headers, "127.0.0.1", "/v1/keys", "POST")
    return service.handle(
        info, Action.MANAGE_KEYS, lambda _p: (201, {"key": service.keys.create("eve", Role.ADMIN).key})
    )


def test_a_prediction_whose_record_cannot_be_written_is_not_answered(
    service: GatewayService, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = service.keys.create("user", Role.END_USER).key
    info = RequestInfo("predict-image", {"authorization": f"Bearer {key}"}, "127.0.0.1", "/v1/predict/image", "POST")
    png = digit_png()
    assert service.handle(info, Action.PREDICT, lambda p: service.predict_image(p, png)).status == 200
    monkeypatch.setattr(service.writer, "append", _Outage(service))
    outcome = service.handle(info, Action.PREDICT, lambda p: service.predict_image(p, png))
    assert outcome.status == 503 and outcome.body["detail"]["reason"] == "audit_unavailable"
    assert "label" not in outcome.body and "decision_id" not in str(outcome.body)


def test_a_privileged_change_is_recorded_before_it_happens(service: GatewayService) -> None:
    headers, totp = _admin(service)
    before = len(service.keys.list())
    outcome = _create_key(service, {**headers, "x-mfa-code": totp.next()})
    assert outcome.status == 201, outcome.body
    assert len(service.keys.list()) == before + 1
    last = service.stores.audit.tail(2, action="create-key")
    assert [r.outcome for r in reversed(last)] == ["attempt", "ok"]  # the attempt first, then what came of it
    assert last[0].seq == last[1].seq + 1 and last[0].actor == last[1].actor


def test_no_privileged_change_when_the_attempt_cannot_be_recorded(
    service: GatewayService, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers, totp = _admin(service)
    before = len(service.keys.list())
    outage = _Outage(service)
    monkeypatch.setattr(service.writer, "append", outage)
    outcome = _create_key(service, {**headers, "x-mfa-code": totp.next()})
    assert outcome.status == 503 and outcome.body["detail"]["reason"] == "audit_unavailable"
    assert len(service.keys.list()) == before  # the admin key was never made
    assert outage.calls[0] == ("create-key", "attempt")


def test_refused_privileged_requests_write_no_attempt(service: GatewayService) -> None:
    headers, _ = _admin(service)
    outcome = _create_key(service, headers)  # no second factor
    assert outcome.status == 403 and outcome.body["detail"]["reason"] == "mfa_required"
    assert [r.outcome for r in service.stores.audit.tail(5, action="create-key")] == ["mfa_required"]
