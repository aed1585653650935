"""JWT validation with local keys: every rejection reason, and the classic algorithm-confusion attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from modelward.core.errors import InputError
from modelward.gateway.jwt_auth import JWTSettings, JWTValidator, TokenRejected, settings_from_config
from modelward.gateway.keys import ROLE_ACTIONS, Action, Role

ISS = "https://idp.example.test/"
AUD = "modelward-gateway"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
        "other-rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def _pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def pem_files(tmp_path: Path, keys: dict[str, PrivateKey]) -> dict[str, Path]:
    paths = {}
    for name in ("RS256", "ES256", "EdDSA"):
        path = tmp_path / f"{name}.pub.pem"
        path.write_bytes(_pem(keys[name]))
        paths[name] = path
    return paths


@pytest.fixture
def validator(pem_files: dict[str, Path]) -> JWTValidator:
    return JWTValidator(JWTSettings(issuer=ISS, audience=AUD, public_keys=list(pem_files.values())))


def _claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "alice@example.org",
        "iat": now,
        "exp": now + 300,
        "modelward_role": "moderator",
    }
    for name, value in override.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _token(key: PrivateKey, alg: str = "RS256", headers: dict[str, Any] | None = None, **override: Any) -> str:
    return jwt.encode(_claims(**override), key, algorithm=alg, headers=headers)


def _reason(validator: JWTValidator, token: str) -> str:
    with pytest.raises(TokenRejected) as info:
        validator.validate(token)
    assert isinstance(info.value, InputError)
    return info.value.reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- accepted tokens ---------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_valid_token_per_algorithm(validator: JWTValidator, keys: dict[str, PrivateKey], alg: str) -> None:
    principal = validator.validate(_token(keys[alg], alg))
    assert principal.name == "alice@example.org"
    assert principal.role is Role.MODERATOR
    assert principal.scopes == ROLE_ACTIONS[Role.MODERATOR]
    assert principal.via == "jwt" and principal.key_prefix is None
    assert not principal.mfa_from_token


@pytest.mark.parametrize(
    ("amr", "mfa"),
    [(["pwd", "otp"], True), (["mfa"], True), (["pwd"], False), ("otp", False), ([1, 2], False)],
)
def test_amr_sets_mfa(validator: JWTValidator, keys: dict[str, PrivateKey], amr: Any, mfa: bool) -> None:
    assert validator.validate(_token(keys["RS256"], amr=amr)).mfa_from_token is mfa


def test_audience_list_and_leeway(validator: JWTValidator, keys: dict[str, PrivateKey]) -> None:
    now = int(time.time())
    assert validator.validate(_token(keys["ES256"], "ES256", aud=["other", AUD])).role is Role.MODERATOR
    # expired 10 s ago, within the default 30 s leeway
    assert validator.validate(_token(keys["ES256"], "ES256", exp=now - 10, iat=now - 100)).name


def test_custom_role_claim(pem_files: dict[str, Path], keys: dict[str, PrivateKey]) -> None:
    custom = JWTValidator(JWTSettings(ISS, AUD, public_keys=[pem_files["EdDSA"]], role_claim="https://mw/role"))
    claims = _claims(**{"https://mw/role": "auditor"})
    token = jwt.encode(claims, keys["EdDSA"], algorithm="EdDSA")
    principal = custom.validate(token)
    assert principal.role is Role.AUDITOR and Action.READ_METRICS in principal.scopes


# --- rejections --------------------------------------------------------------


def test_expired_and_not_yet_valid(validator: JWTValidator, keys: dict[str, PrivateKey]) -> None:
    now = int(time.time())
    assert _reason(validator, _token(keys["RS256"], exp=now - 120, iat=now - 600)) == "expired"
    assert _reason(validator, _token(keys["RS256"], nbf=now + 600)) == "not_yet_valid"


def test_issuer_audience_subject_role(validator: JWTValidator, keys: dict[str, PrivateKey]) -> None:
    key = keys["RS256"]
    assert _reason(validator, _token(key, iss="https://evil.example/")) == "wrong_issuer"
    assert _reason(validator, _token(key, iss=None)) == "wrong_issuer"
    assert _reason(validator, _token(key, aud="another-service")) == "wrong_audience"
    assert _reason(validator, _token(key, aud=None)) == "wrong_audience"
    assert _reason(validator, _token(key, sub=None)) == "missing_subject"
    assert _reason(validator, _token(key, sub="")) == "missing_subject"
    assert _reason(validator, _token(key, exp=None)) == "malformed"
    assert _reason(validator, _token(key, modelward_role=None)) == "missing_role"
    assert _reason(validator, _token(key, modelward_role="root")) == "unknown_role"
    assert _reason(validator, _token(key, modelward_role=["admin"])) == "unknown_role"


def test_bad_signature(validator: JWTValidator, keys: dict[str, PrivateKey]) -> None:
    assert _reason(validator, _token(keys["other-rsa"])) == "bad_signature"
    header, payload, signature = _token(keys["RS256"]).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["modelward_role"] = "admin"
    tampered = ".".join([header, _b64(json.dumps(forged).encode()), signature])
    assert _reason(validator, tampered) == "bad_signature"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "x" * 20000, "eyJhbGciOiJSUzI1NiJ9.e30"])
def test_malformed(validator: JWTValidator, token: str) -> None:
    assert _reason(validator, token) == "malformed"


def test_alg_none_refused(validator: JWTValidator) -> None:
    unsigned = jwt.encode(_claims(modelward_role="admin"), "", algorithm="none")
    assert _reason(validator, unsigned) == "algorithm_not_allowed"
    header = _b64(json.dumps({"alg": "NONE", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    assert _reason(validator, f"{header}.{body}.") == "algorithm_not_allowed"


def test_hs256_with_public_key_as_secret_refused(validator: JWTValidator, pem_files: dict[str, Path]) -> None:
    """Algorithm confusion: an attacker signs HS256 with the (public) PEM bytes as the HMAC secret."""
    secret = pem_files["RS256"].read_bytes()
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims(modelward_role="admin")).encode())
    signature = _b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    assert _reason(validator, f"{header}.{body}.{signature}") == "algorithm_not_allowed"


def test_algorithm_outside_list_and_key_type_mismatch(
    pem_files: dict[str, Path], keys: dict[str, PrivateKey], validator: JWTValidator
) -> None:
    assert _reason(validator, _token(keys["RS256"], "RS384")) == "algorithm_not_allowed"
    rsa_only = JWTValidator(JWTSettings(ISS, AUD, public_keys=[pem_files["RS256"]], algorithms=["RS256", "ES256"]))
    assert _reason(rsa_only, _token(keys["ES256"], "ES256")) == "unknown_key"
    assert _reason(rsa_only, _token(keys["EdDSA"], "EdDSA")) == "algorithm_not_allowed"


# --- JWKS --------------------------------------------------------------------


def _jwks(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": entries}), encoding="utf-8")
    return path


def _jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        entry = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        entry = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        entry = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**entry, "kid": kid}


def test_jwks_by_kid(tmp_path: Path, keys: dict[str, PrivateKey]) -> None:
    path = _jwks(tmp_path, [_jwk(keys["RS256"], "rsa-1"), _jwk(keys["ES256"], "ec-1"), _jwk(keys["EdDSA"], "ed-1")])
    jwks = JWTValidator(JWTSettings(ISS, AUD, jwks_file=path))
    assert jwks.validate(_token(keys["ES256"], "ES256", headers={"kid": "ec-1"})).role is Role.MODERATOR
    assert jwks.validate(_token(keys["EdDSA"], "EdDSA", headers={"kid": "ed-1"})).name
    assert jwks.validate(_token(keys["RS256"])).name  # no kid: every fitting key is tried
    assert _reason(jwks, _token(keys["RS256"], headers={"kid": "rsa-9"})) == "unknown_key"
    assert _reason(jwks, _token(keys["other-rsa"], headers={"kid": "rsa-1"})) == "bad_signature"
    # a kid naming a key of another family does not make that key usable
    assert _reason(jwks, _token(keys["RS256"], headers={"kid": "ec-1"})) == "unknown_key"


def test_jwks_with_symmetric_key_refused(tmp_path: Path, keys: dict[str, PrivateKey]) -> None:
    oct_key = {"kty": "oct", "kid": "s", "k": _b64(b"0123456789abcdef0123456789abcdef"), "alg": "HS256"}
    path = _jwks(tmp_path, [_jwk(keys["RS256"], "rsa-1"), oct_key])
    with pytest.raises(InputError, match="asymmetric"):
        JWTValidator(JWTSettings(ISS, AUD, jwks_file=path))


# --- settings ----------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [["HS256"], ["RS256", "none"], [], ["HS512", "RS256"]])
def test_settings_refuse_symmetric_or_none(pem_files: dict[str, Path], algorithms: list[str]) -> None:
    with pytest.raises(InputError):
        JWTValidator(JWTSettings(ISS, AUD, public_keys=[pem_files["RS256"]], algorithms=algorithms))


def test_settings_need_keys_and_readable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="at least one"):
        JWTValidator(JWTSettings(ISS, AUD))
    with pytest.raises(InputError, match="no such"):
        JWTValidator(JWTSettings(ISS, AUD, public_keys=[tmp_path / "missing.pem"]))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key", encoding="utf-8")
    with pytest.raises(InputError, match="PEM"):
        JWTValidator(JWTSettings(ISS, AUD, public_keys=[garbage]))
    bad_jwks = tmp_path / "bad.json"
    bad_jwks.write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="JWKS"):
        JWTValidator(JWTSettings(ISS, AUD, jwks_file=bad_jwks))


def test_settings_from_config(tmp_path: Path, pem_files: dict[str, Path], keys: dict[str, PrivateKey]) -> None:
    from modelward.gateway.config import load_config

    (tmp_path / "conf").mkdir()
    config_file = tmp_path / "conf" / "gateway.yaml"
    config_file.write_text(
        "model: {artifact: digits, public_keys: [k.pub]}\n"
        f"auth: {{jwt: {{issuer: '{ISS}', audience: {AUD}, public_keys: [../EdDSA.pub.pem], algorithms: [EdDSA]}}}}\n",
        encoding="utf-8",
    )
    settings = settings_from_config(load_config(config_file))
    assert settings is not None and settings.public_keys == [pem_files["EdDSA"].resolve()]
    assert JWTValidator(settings).validate(_token(keys["EdDSA"], "EdDSA")).name == "alice@example.org"
