"""End to end against a real ``modelward serve``: every way around authentication is refused with its reason.

One server for the module (API keys and JWT both on); keys and users are made with the real CLI while it runs,
so revocation, demotion and disabling are seen to take effect at once. The last test greps the audit database
and the server log for every secret handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from harness import (
    GatewayProcess,
    Totp,
    ambiguous_png,
    auth,
    digit_png,
    gateway_template,
    last_audit_record,
    make_gateway,
)

ISSUER = "https://idp.test"
AUDIENCE = "modelward-gateway"
PNG = digit_png(0)


class Env:
    """The module's server, a client for it, the JWT signing key, and every secret handed out."""

    def __init__(self, gateway: GatewayProcess, signing_key: rsa.RSAPrivateKey, public_pem: bytes) -> None:
        self.gateway = gateway
        self.client = gateway.client()
        self.signing_key = signing_key
        self.public_pem = public_pem
        self.secrets: list[str] = []

    def key(self, principal: str, role: str, *, expires_in: str | None = None, cli: bool = False) -> dict[str, Any]:
        """A key through the CLI when its creation matters (``cli`` or an expiry), else the fast in-process path."""
        if cli or expires_in is not None:
            created = self.gateway.create_key(principal, role, expires_in=expires_in)
        else:
            created = self.gateway.quick_key(principal, role)
        self.secrets.append(created["key"])
        return created

    def user(self, name: str, role: str) -> tuple[str, Totp]:
        """A user with a key of their role; the key and a TOTP source."""
        added = self.gateway.add_user(name, role)
        self.secrets.append(added["totp_secret"])
        return self.key(name, role)["key"], Totp(added["totp_secret"])

    def predict(self, key: str) -> httpx.Response:
        return self.client.post("/v1/predict/image", files={"file": ("d.png", PNG, "image/png")}, headers=auth(key))

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "jwt-moderator", "iat": now, "exp": now + 300}
        body["modelward_role"] = "moderator"
        body.update(claims)
        token = jwt.encode(body, self.signing_key, algorithm="RS256")
        self.secrets.append(token)
        return token


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Env]:
    template = gateway_template(tmp_path_factory, request.config.cache)
    folder = tmp_path_factory.mktemp("http-auth") / "gateway"
    generous = {"rate_per_s": 1000, "burst": 1000}
    config = make_gateway(
        template,
        folder,
        {
            "rate_limits": {"per_principal": generous, "per_address": generous},
            "auth": {"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "public_keys": ["keys/jwt.pub.pem"]}},
        },
    )
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / "keys/jwt.pub.pem").write_bytes(public_pem)
    with GatewayProcess(config) as gateway:
        state = Env(gateway, signing_key, public_pem)
        yield state
        state.client.close()


def _reason(response: httpx.Response) -> str:
    return str(response.json()["detail"]["reason"])


def _refused(response: httpx.Response, status: int, reason: str, env: Env | None = None) -> None:
    """The response is the refusal expected; with ``env``, its audit record was committed before the answer."""
    assert (response.status_code, _reason(response)) == (status, reason), response.text
    if env is not None:
        record = last_audit_record(env.gateway.audit_db)
        assert (record["outcome"], record["details"].get("status")) == (reason, status), record
        assert not str(record["actor"]).startswith("mw_"), record


# --- API keys -----------------------------------------------------------------------------------
def test_missing_credentials_are_refused(env: Env) -> None:
    response = env.client.post("/v1/predict/image", files={"file": ("d.png", PNG, "image/png")})
    _refused(response, 401, "missing_credentials", env)
    assert response.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Basic x"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer mw_" + "a" * 4000},
        {"Authorization": "Bearer mw_0123456789ab_short"},
        {"X-API-Key": "not-a-key"},
    ],
    ids=["bearer-garbage", "basic", "basic-x", "empty-bearer", "overlong", "short-secret", "x-api-key-garbage"],
)
def test_malformed_credentials_are_refused(env: Env, headers: dict[str, str]) -> None:
    _refused(env.client.get("/v1/decisions", headers=headers), 401, "malformed", env)


def test_unknown_well_formed_key_is_refused(env: Env) -> None:
    _refused(env.predict("mw_000000000000_" + "a" * 43), 401, "unknown_key", env)


def test_right_prefix_with_wrong_secret_is_refused(env: Env) -> None:
    key = env.key("wendy", "end-user")["key"]
    assert env.predict(key).status_code == 200
    head, secret = key[:16], key[16:]  # "mw_<12 hex>_" and the 43-character secret
    forged = head + ("b" * 43 if secret != "b" * 43 else "c" * 43)
    env.secrets.append(forged)
    _refused(env.predict(forged), 401, "hash_mismatch", env)


def test_key_is_accepted_in_x_api_key_header(env: Env) -> None:
    key = env.key("xavier", "end-user")["key"]
    response = env.client.post("/v1/predict/image", content=PNG, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text


def test_revoked_key_is_refused_at_once(env: Env) -> None:
    created = env.key("rita", "end-user", cli=True)
    assert env.predict(created["key"]).status_code == 200
    env.gateway.admin("keys", "revoke", created["prefix"])
    _refused(env.predict(created["key"]), 401, "revoked", env)


def test_expired_key_is_refused(env: Env) -> None:
    created = env.key("ernie", "end-user", expires_in="2s")
    assert created["expires_at"] is not None
    if time.time() < created["expires_at"] - 0.5:  # the CLI may be slow on a loaded machine
        assert env.predict(created["key"]).status_code == 200
    time.sleep(max(0.0, created["expires_at"] - time.time()) + 0.2)
    _refused(env.predict(created["key"]), 401, "expired", env)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/keys", None),
        ("GET", "/v1/audit-log/verify", None),
        ("POST", "/v1/models/deploy", {"artifact": "digits-cnn"}),
        ("GET", "/metrics", None),
        ("GET", "/v1/models", None),
        ("GET", "/v1/decisions", None),
    ],
)
def test_end_user_cannot_leave_its_scope(env: Env, method: str, path: str, body: dict[str, str] | None) -> None:
    key = env.key("scoped", "end-user")["key"]
    response = env.client.request(method, path, json=body, headers=auth(key))
    _refused(response, 403, "forbidden", env)


def test_end_user_cannot_mint_an_admin_key(env: Env) -> None:
    key = env.key("mallory", "end-user")["key"]
    response = env.client.post("/v1/keys", json={"principal": "mallory", "role": "admin"}, headers=auth(key))
    _refused(response, 403, "forbidden", env)
    with_code = env.client.post(
        "/v1/keys", json={"principal": "mallory", "role": "admin"}, headers=auth(key, X_MFA_Code="123456")
    )
    _refused(with_code, 403, "forbidden", env)


def test_moderator_cannot_deploy(env: Env) -> None:
    key = env.key("mona", "moderator")["key"]
    response = env.client.post("/v1/models/deploy", json={"artifact": "digits-cnn"}, headers=auth(key))
    _refused(response, 403, "forbidden", env)
    _refused(env.client.post("/v1/models/rollback", headers=auth(key)), 403, "forbidden", env)


def test_demoted_user_loses_moderation_at_once(env: Env) -> None:
    key, _ = env.user("dan", "moderator")
    assert env.client.get("/v1/decisions", headers=auth(key)).status_code == 200
    env.gateway.admin("users", "set-role", "dan", "end-user")
    _refused(env.client.get("/v1/decisions", headers=auth(key)), 403, "forbidden", env)
    demoted = env.predict(key)
    assert demoted.status_code == 200
    assert "scores" not in demoted.json()  # the end-user output policy applies now


def test_disabled_user_is_refused(env: Env) -> None:
    key, _ = env.user("carl", "end-user")
    assert env.predict(key).status_code == 200
    env.gateway.admin("users", "disable", "carl")
    _refused(env.predict(key), 401, "disabled", env)
    env.gateway.admin("users", "enable", "carl")
    assert env.predict(key).status_code == 200  # a suspension, not a revocation: the key works again


# --- second factor -------------------------------------------------------------------------------
def test_admin_key_creation_needs_a_fresh_totp_code(env: Env) -> None:
    key, totp = env.user("ada", "admin")
    wanted = {"principal": "eve", "role": "end-user"}
    _refused(env.client.post("/v1/keys", json=wanted, headers=auth(key)), 403, "mfa_required", env)
    wrong = env.client.post("/v1/keys", json=wanted, headers=auth(key, X_MFA_Code=totp.wrong()))
    _refused(wrong, 403, "mfa_invalid", env)
    malformed = env.client.post("/v1/keys", json=wanted, headers=auth(key, X_MFA_Code="12ab56"))
    _refused(malformed, 403, "mfa_invalid", env)

    code = totp.next()
    created = env.client.post("/v1/keys", json=wanted, headers=auth(key, X_MFA_Code=code))
    assert created.status_code == 201, created.text
    issued = created.json()
    env.secrets.append(issued["key"])
    assert issued["principal"] == "eve" and issued["role"] == "end-user"
    assert env.predict(issued["key"]).status_code == 200

    replayed = env.client.post("/v1/keys", json=wanted, headers=auth(key, X_MFA_Code=code))
    _refused(replayed, 403, "mfa_invalid", env)
    listed = env.client.get("/v1/keys", headers=auth(key, X_MFA_Code=totp.next()))
    assert listed.status_code == 200, listed.text
    assert issued["prefix"] in {k["prefix"] for k in listed.json()["keys"]}
    assert issued["key"] not in listed.text


def test_totp_code_of_another_user_is_refused(env: Env) -> None:
    key, _ = env.user("ann", "admin")
    _, other = env.user("otto", "admin")
    response = env.client.get("/v1/keys", headers=auth(key, X_MFA_Code=other.next()))
    _refused(response, 403, "mfa_invalid", env)


# --- JWT ---------------------------------------------------------------------------------------------
def test_valid_moderator_token_gets_scores(env: Env) -> None:
    token = env.token()
    response = env.client.post(
        "/v1/predict/image", files={"file": ("d.png", ambiguous_png(), "image/png")}, headers=auth(token)
    )
    assert response.status_code == 200, response.text
    assert len([s for s in response.json()["scores"] if s > 0]) == 3
    assert env.client.get("/v1/decisions", headers=auth(token)).status_code == 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unsigned(env: Env, header: dict[str, Any], key: bytes | None) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "jwt-moderator", "exp": now + 300, "modelward_role": "moderator"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(signature)}"
    env.secrets.append(token)
    return token


@pytest.mark.parametrize("case", ["expired", "wrong-issuer", "wrong-audience", "alg-none", "hs256-public-key"])
def test_bad_tokens_are_refused(env: Env, case: str) -> None:
    now = int(time.time())
    if case == "expired":
        token = env.token(iat=now - 7200, exp=now - 3600)
    elif case == "wrong-issuer":
        token = env.token(iss="https://evil.test")
    elif case == "wrong-audience":
        token = env.token(aud="another-service")
    elif case == "alg-none":
        token = _unsigned(env, {"alg": "none", "typ": "JWT"}, None)
    else:  # algorithm confusion: HMAC keyed with the RSA public key the server trusts
        token = _unsigned(env, {"alg": "HS256", "typ": "JWT"}, env.public_pem)
    response = env.client.get("/v1/decisions", headers=auth(token))
    _refused(response, 401, "invalid_token", env)


def test_token_of_another_key_is_refused(env: Env) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 300, "modelward_role": "moderator"}
    token = jwt.encode(claims, stranger, algorithm="RS256")
    _refused(env.client.get("/v1/decisions", headers=auth(token)), 401, "invalid_token", env)


# --- the record ---------------------------------------------------------------------------------------
def test_no_secret_reaches_the_audit_log_or_server_log(env: Env) -> None:
    if not env.secrets:
        pytest.skip("no secret was handed out in this process (the module's other tests ran elsewhere)")
    folder = env.gateway.folder
    files = [p for p in folder.iterdir() if p.name.startswith("audit.db")] + [env.gateway.log_path]
    blobs = {p.name: p.read_bytes() for p in files if p.is_file()}
    assert blobs.get("audit.db") or blobs.get("audit.db-wal")
    for secret in env.secrets:
        needle = secret.encode()
        tail = needle[len("mw_0123456789ab_") :] if needle.startswith(b"mw_") else needle[-40:]
        for name, blob in blobs.items():
            assert needle not in blob, f"a secret appears in {name}"
            assert tail not in blob, f"a key's secret part appears in {name}"
