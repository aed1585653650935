"""End to end against a real ``modelward serve``: output policy, upload limits, rate limits, signed deploys, TLS.

Two servers: the main one (small body limit, generous rate limits), and one with tiny rate limits that speaks
TLS (each rate-limit test calls it from its own loopback address, so address buckets do not mix). The last test
checks the main server's audit log with ``modelward audit-log verify``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import (
    MODEL_PRIVATE_KEY,
    GatewayProcess,
    Totp,
    ambiguous_png,
    auth,
    cli,
    decompression_bomb_png,
    digit_png,
    gateway_template,
    make_gateway,
    truncated_png,
)

MAX_BODY = 1_000_000
PNG = digit_png(0)


def _files(data: bytes, name: str = "d.png", kind: str = "image/png") -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, kind)}


def _reason(response: httpx.Response) -> str:
    return str(response.json()["detail"]["reason"])


class Main:
    """The main server and a counting client."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.client = gateway.client()

    def predict(self, key: str, data: bytes = PNG) -> httpx.Response:
        return self.client.post("/v1/predict/image", files=_files(data), headers=auth(key))


def _folder(factory: pytest.TempPathFactory, request: pytest.FixtureRequest, name: str) -> tuple[Path, Path]:
    return gateway_template(factory, request.config.cache), factory.mktemp(name) / "gateway"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def main(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Main]:
    template, folder = _folder(tmp_path_factory, request, "http-protections")
    generous = {"rate_per_s": 1000, "burst": 1000}
    overrides = {
        "server": {"max_body_bytes": MAX_BODY},
        "rate_limits": {"per_principal": generous, "per_address": generous},
    }
    with GatewayProcess(make_gateway(template, folder, overrides)) as gateway:
        state = Main(gateway)
        yield state
        state.client.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    """A server with tiny rate limits, speaking TLS with a self-signed certificate (one start for both)."""
    template, folder = _folder(tmp_path_factory, request, "http-limits")
    cert, _ = _self_signed(folder.parent / "tls")
    overrides = {
        "server": {"tls_certfile": "../tls/tls.crt", "tls_keyfile": "../tls/tls.key"},
        "rate_limits": {
            "per_principal": {"rate_per_s": 1, "burst": 3},
            "per_address": {"rate_per_s": 1, "burst": 6},
            "daily_quota": 4,
        },
    }
    with GatewayProcess(make_gateway(template, folder, overrides), cert=cert) as gateway:
        yield gateway


# --- output policy ----------------------------------------------------------------------------------
def test_end_user_gets_a_label_and_nothing_else(main: Main) -> None:
    key = main.gateway.quick_key("uma", "end-user")["key"]
    response = main.predict(key, ambiguous_png())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"decision_id", "label", "model_version"}
    assert 0 <= body["label"] <= 9


def test_moderator_gets_three_rounded_scores(main: Main) -> None:
    key = main.gateway.quick_key("moe", "moderator")["key"]
    response = main.predict(key, ambiguous_png())
    assert response.status_code == 200, response.text
    body = response.json()
    scores = body["scores"]
    assert len(scores) == 10
    kept = [s for s in scores if s != 0]
    assert len(kept) == 3, scores
    assert all(abs(s - round(s, 2)) < 1e-6 for s in scores), scores  # float32 0.36 reads 0.36000001...
    assert body["label"] == scores.index(max(scores))
    plain = main.predict(key).json()  # a clear digit still names its class
    assert plain["label"] == 0


# --- uploads --------------------------------------------------------------------------------------
def test_body_over_the_limit_is_refused_by_content_length(main: Main) -> None:
    key = main.gateway.quick_key("bulky", "end-user")["key"]
    response = main.client.post(
        "/v1/predict/image", content=b"\x00" * (MAX_BODY + 1), headers=auth(key, content_type="image/png")
    )
    assert response.status_code == 413 and _reason(response) == "body_too_large", response.text


def test_streamed_body_over_the_limit_is_refused(main: Main) -> None:
    key = main.gateway.quick_key("streamer", "end-user")["key"]

    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 2.5 MB in 64 KiB pieces, no Content-Length: chunked transfer
            yield b"\x89PNG" + b"\x00" * (64 * 1024 - 4)

    response = main.client.post("/v1/predict/image", content=chunks(), headers=auth(key, content_type="image/png"))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and _reason(response) == "body_too_large", response.text


def test_body_under_the_limit_is_accepted(main: Main) -> None:
    key = main.gateway.quick_key("normal", "end-user")["key"]

    def chunks() -> Iterator[bytes]:
        yield PNG[:100]
        yield PNG[100:]

    response = main.client.post("/v1/predict/image", content=chunks(), headers=auth(key, content_type="image/png"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("make", "statuses", "reasons"),
    [
        (lambda: decompression_bomb_png(20_000), {413}, {"too_many_pixels"}),
        (lambda: decompression_bomb_png(1_900), {413}, {"decompression_ratio"}),
        (truncated_png, {422}, {"truncated", "malformed"}),
    ],
    ids=["pixel-bomb", "ratio-bomb", "truncated"],
)
def test_hostile_images_are_refused(main: Main, make: Any, statuses: set[int], reasons: set[str]) -> None:
    data = make()
    assert len(data) < MAX_BODY
    key = main.gateway.quick_key("hostile", "end-user")["key"]
    response = main.predict(key, data)
    assert response.status_code in statuses and _reason(response) in reasons, response.text


def test_text_named_png_is_refused(main: Main) -> None:
    key = main.gateway.quick_key("texter", "end-user")["key"]
    response = main.client.post(
        "/v1/predict/image", files=_files(b"hello, I am not an image\n" * 20, "digit.png"), headers=auth(key)
    )
    assert response.status_code == 415 and _reason(response) == "unsupported_type", response.text


def test_png_with_a_script_is_refused(main: Main) -> None:
    key = main.gateway.quick_key("polyglot", "end-user")["key"]
    response = main.predict(key, PNG + b"<script>alert(1)</script>")
    assert response.status_code == 422 and _reason(response) == "polyglot", response.text


# --- rate limits ------------------------------------------------------------------------------------
def test_principal_rate_limit_answers_429_then_recovers(limited: GatewayProcess) -> None:
    key = limited.quick_key("rapid", "end-user")["key"]
    with limited.client(source="127.0.0.11") as client:
        answers = [client.post("/v1/predict/image", content=PNG, headers=auth(key)) for _ in range(4)]
        assert [r.status_code for r in answers[:3]] == [200, 200, 200]
        refused = answers[3]
        assert refused.status_code == 429 and _reason(refused) == "rate_limited", refused.text
        retry = int(refused.headers["Retry-After"])
        assert 1 <= retry <= 2
        time.sleep(retry + 0.1)
        again = client.post("/v1/predict/image", content=PNG, headers=auth(key))
        assert again.status_code == 200, again.text


def test_daily_quota_answers_429_quota_exceeded(limited: GatewayProcess) -> None:
    key = limited.quick_key("quota", "end-user")["key"]
    with limited.client(source="127.0.0.12") as client:
        statuses = [client.post("/v1/predict/image", content=PNG, headers=auth(key)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        time.sleep(1.1)
        assert client.post("/v1/predict/image", content=PNG, headers=auth(key)).status_code == 200  # 4 of 4 used
        time.sleep(1.1)
        over = client.post("/v1/predict/image", content=PNG, headers=auth(key))
        assert over.status_code == 429 and _reason(over) == "quota_exceeded", over.text
        assert int(over.headers["Retry-After"]) > 2  # not before the day is over


def test_address_rate_limit_counts_even_anonymous_calls(limited: GatewayProcess) -> None:
    with limited.client(source="127.0.0.13") as noisy, limited.client(source="127.0.0.14") as quiet:
        statuses = [noisy.get("/v1/decisions").status_code for _ in range(9)]
        assert statuses[:6] == [401] * 6  # refused for lack of credentials, but counted
        assert 429 in statuses[6:]
        last = noisy.get("/v1/decisions")
        assert last.status_code == 429 and _reason(last) == "rate_limited" and "Retry-After" in last.headers
        assert quiet.get("/v1/decisions").status_code == 401  # another address has its own bucket


# --- signed deploys and rollback ---------------------------------------------------------------------
def _copy_artifact(folder: Path, name: str, description: str, *, sign: bool) -> Path:
    target = folder / "models" / name
    shutil.copytree(folder / "models/digits-cnn", target)
    document = json.loads((target / "model.json").read_text())
    document["metadata"]["description"] = description
    (target / "model.json").write_text(json.dumps(document, indent=2))
    if sign:
        cli("sign", str(target), "--key", str(folder / MODEL_PRIVATE_KEY))
        assert (folder / "models" / f"{name}.sig.json").is_file()
    return target


def _current(main: Main, key: str) -> dict[str, Any]:
    response = main.client.get("/v1/models", headers=auth(key))
    assert response.status_code == 200, response.text
    models: dict[str, Any] = response.json()
    return models


def test_deploy_and_rollback_with_mfa_and_tampered_artifacts_refused(main: Main) -> None:
    gateway = main.gateway
    folder = gateway.folder
    engineer = gateway.add_user("emma", "ml-engineer")
    key = gateway.create_key("emma", "ml-engineer")["key"]
    totp = Totp(engineer["totp_secret"])
    end_user = gateway.quick_key("viewer", "end-user")["key"]
    first = _current(main, key)["current"]
    assert first["artifact"] == "digits-cnn"

    _copy_artifact(folder, "digits-cnn-v2", "second release", sign=True)
    wanted = {"artifact": "digits-cnn-v2"}
    no_code = main.client.post("/v1/models/deploy", json=wanted, headers=auth(key))
    assert no_code.status_code == 403 and _reason(no_code) == "mfa_required"
    deployed = main.client.post("/v1/models/deploy", json=wanted, headers=auth(key, X_MFA_Code=totp.next()))
    assert deployed.status_code == 200, deployed.text
    second = _current(main, key)
    assert second["current"]["artifact"] == "digits-cnn-v2"
    assert second["current"]["version"] != first["version"]
    assert first["version"] in {m["version"] for m in second["history"]}
    assert main.predict(end_user).json()["model_version"] == second["current"]["version"]

    rolled = main.client.post("/v1/models/rollback", headers=auth(key, X_MFA_Code=totp.next()))
    assert rolled.status_code == 200, rolled.text
    assert _current(main, key)["current"]["version"] == first["version"]
    assert main.predict(end_user).json()["model_version"] == first["version"]

    tampered = _copy_artifact(folder, "digits-cnn-v3", "third release", sign=True)
    document = json.loads((tampered / "model.json").read_text())
    document["metadata"]["description"] = "third release, quietly changed after signing"
    (tampered / "model.json").write_text(json.dumps(document, indent=2))
    _copy_artifact(folder, "digits-cnn-unsigned", "never signed", sign=False)
    for artifact in ("digits-cnn-v3", "digits-cnn-unsigned"):
        refused = main.client.post(
            "/v1/models/deploy", json={"artifact": artifact}, headers=auth(key, X_MFA_Code=totp.next())
        )
        assert refused.status_code == 422 and _reason(refused) == "model_refused", refused.text
        assert _current(main, key)["current"]["version"] == first["version"]
        served = main.predict(end_user)
        assert served.status_code == 200 and served.json()["model_version"] == first["version"]


# --- operations ---------------------------------------------------------------------------------------
def test_metrics_for_an_auditor(main: Main) -> None:
    key = main.gateway.quick_key("audrey", "auditor")["key"]
    response = main.client.get("/metrics", headers=auth(key))
    assert response.status_code == 200, response.text
    assert "modelward_gateway_requests_total" in response.text
    assert main.client.get("/metrics").status_code == 401


def test_openapi_lists_the_routes(main: Main) -> None:
    response = main.client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/health",
        "/ready",
        "/metrics",
        "/v1/predict/image",
        "/v1/predict/tabular",
        "/v1/decisions",
        "/v1/reports",
        "/v1/models",
        "/v1/models/deploy",
        "/v1/models/rollback",
        "/v1/keys",
        "/v1/keys/{prefix}",
        "/v1/keys/{prefix}/rotate",
        "/v1/users",
        "/v1/users/{name}/role",
        "/v1/audit-log/verify",
        "/v1/audit-log/export",
    ):
        assert path in paths, path


def test_tls_serves_https_only(limited: GatewayProcess) -> None:
    assert limited.cert is not None and limited.url.startswith("https://")
    with httpx.Client(verify=ssl.create_default_context(cafile=limited.cert)) as client:
        response = client.get(f"{limited.url}/health")
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{limited.port}/health", timeout=5)
    with pytest.raises(httpx.ConnectError):  # the self-signed certificate is not trusted by default
        httpx.get(f"{limited.url}/health", timeout=5)


# --- the record ---------------------------------------------------------------------------------------
def test_audit_log_verifies_and_holds_every_request(main: Main) -> None:
    sent = main.gateway.audited_requests
    if sent == 0:
        pytest.skip("no request reached the main server in this process")
    result = main.gateway.verify_audit_log()
    assert result["valid"] is True, result
    assert result["records"] >= sent
