"""OAuth2/OIDC bearer tokens: validate a JWT against local public keys and turn it into a :class:`Principal`.

Keys come from PEM files and/or a JWKS JSON file on disk, never from the network: a gateway that fetches
its trust anchors at run time can be made to trust an attacker's keys (or to stall). Only asymmetric
algorithms on an explicit allow-list are accepted, and each key is used only with algorithms of its own
type, so ``alg: none`` and the HS256-with-the-public-key-as-secret confusion are refused before any
signature is computed. Every refusal is a :class:`TokenRejected` with a short, loggable reason code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, SECP384R1, SECP521R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.exceptions import InvalidSubjectError

from modelward.core.errors import InputError
from modelward.gateway.identity import Principal
from modelward.gateway.keys import ROLE_ACTIONS, Role

if TYPE_CHECKING:
    from modelward.gateway.config import GatewayConfig

__all__ = ["SUPPORTED_ALGORITHMS", "JWTSettings", "JWTValidator", "TokenRejected", "settings_from_config"]

log = logging.getLogger(__name__)

PublicKey = RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey

_EC_CURVES = {"ES256": SECP256R1.name, "ES384": SECP384R1.name, "ES512": SECP521R1.name}
SUPPORTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", *_EC_CURVES, "EdDSA"})
"""Asymmetric only: HS* (shared secrets) and ``none`` can never be configured."""

MAX_TOKEN_CHARS = 16 * 1024
MAX_SUBJECT_CHARS = 256
_MFA_METHODS = frozenset({"mfa", "otp"})


class TokenRejected(InputError):
    """A bearer token was refused; ``reason`` is a short code safe to log and return."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason.replace("_", " "))
        self.reason = reason


@dataclass(frozen=True)
class JWTSettings:
    """Who may issue tokens for us (issuer, audience), with which local keys and algorithms."""

    issuer: str
    audience: str
    public_keys: list[Path] = field(default_factory=list)
    jwks_file: Path | None = None
    algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    role_claim: str = "modelward_role"
    leeway_s: float = 30.0


def settings_from_config(config: GatewayConfig) -> JWTSettings | None:
    """The JWT settings of a gateway configuration with paths resolved, or ``None`` when JWT is off."""
    section = config.auth.jwt
    if section is None:
        return None
    return JWTSettings(
        issuer=section.issuer,
        audience=section.audience,
        public_keys=[config.path(p) for p in section.public_keys],
        jwks_file=None if section.jwks_file is None else config.path(section.jwks_file),
        algorithms=list(section.algorithms),
        role_claim=section.role_claim,
        leeway_s=section.leeway_s,
    )


def _fits(key: PublicKey, algorithm: str) -> bool:
    """Whether ``key`` is of the type ``algorithm`` needs (so one key never serves another family)."""
    if algorithm.startswith(("RS", "PS")):
        return isinstance(key, RSAPublicKey)
    if algorithm in _EC_CURVES:
        return isinstance(key, EllipticCurvePublicKey) and key.curve.name == _EC_CURVES[algorithm]
    if algorithm == "EdDSA":
        return isinstance(key, Ed25519PublicKey | Ed448PublicKey)
    return False


def _load_pem(path: Path) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise InputError("no such JWT public key file", file=str(path)) from None
    except (ValueError, TypeError):
        raise InputError("not a readable PEM public key", file=str(path)) from None
    if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey):
        raise InputError("JWT keys must be RSA, EC or Ed25519/Ed448 public keys", file=str(path))
    return key


def _load_jwks(path: Path) -> dict[str, PublicKey]:
    try:
        text = path.read_text(encoding="utf-8")
        keyset = jwt.PyJWKSet.from_json(text)
    except FileNotFoundError:
        raise InputError("no such JWKS file", file=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, jwt.PyJWKSetError, jwt.InvalidKeyError) as exc:
        raise InputError(f"not a usable JWKS file: {exc}", file=str(path)) from None
    keys: dict[str, PublicKey] = {}
    for entry in keyset.keys:
        key = entry.key
        if not entry.key_id:
            raise InputError("every key in the JWKS file needs a 'kid'", file=str(path))
        if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey):
            raise InputError(f"JWKS key {entry.key_id!r} is not an asymmetric public key", file=str(path))
        keys[entry.key_id] = key
    return keys


class JWTValidator:
    """Checks signature, algorithm, time, issuer, audience, subject and role of a bearer token."""

    def __init__(self, settings: JWTSettings) -> None:
        bad = [a for a in settings.algorithms if a not in SUPPORTED_ALGORITHMS]
        if bad or not settings.algorithms:
            allowed = ", ".join(sorted(SUPPORTED_ALGORITHMS))
            raise InputError(f"JWT algorithms must be a non-empty subset of {allowed}; refused: {', '.join(bad)}")
        if not settings.issuer or not settings.audience:
            raise InputError("JWT issuer and audience must be set")
        if settings.leeway_s < 0:
            raise InputError("JWT leeway_s must not be negative")
        self._settings = settings
        self._pem_keys = [_load_pem(p) for p in settings.public_keys]
        self._jwks = _load_jwks(settings.jwks_file) if settings.jwks_file is not None else {}
        if not self._pem_keys and not self._jwks:
            raise InputError("JWT validation needs at least one public key (public_keys or jwks_file)")

    def _candidates(self, header: dict[str, Any], algorithm: str) -> list[PublicKey]:
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("malformed", "token header 'kid' is not a string")
        if kid is not None and kid in self._jwks:
            chosen = [self._jwks[kid]]
        elif kid is not None and not self._pem_keys:
            raise TokenRejected("unknown_key", "token key id is not in the JWKS")
        else:
            chosen = list(self._pem_keys) if kid is not None else [*self._jwks.values(), *self._pem_keys]
        fitting = [k for k in chosen if _fits(k, algorithm)]
        if not fitting:
            raise TokenRejected("unknown_key", f"no configured key fits algorithm {algorithm}")
        return fitting

    def _decode(self, token: str, key: PublicKey, algorithm: str) -> dict[str, Any]:
        settings = self._settings
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.audience,
            issuer=settings.issuer,
            leeway=settings.leeway_s,
            options={"require": ["exp", "iss", "aud", "sub"], "verify_signature": True},
        )
        return claims

    def _verified_claims(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenRejected("malformed", "not a compact JWS token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenRejected("malformed", "token header is not valid") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._settings.algorithms:
            raise TokenRejected("algorithm_not_allowed", f"algorithm {str(algorithm)[:20]!r} is not allowed")
        for key in self._candidates(header, algorithm):
            try:
                return self._decode(token, key, algorithm)
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
                continue
            except jwt.ExpiredSignatureError:
                raise TokenRejected("expired", "token has expired") from None
            except jwt.ImmatureSignatureError:
                raise TokenRejected("not_yet_valid", "token is not valid yet (nbf or iat in the future)") from None
            except jwt.InvalidIssuerError:
                raise TokenRejected("wrong_issuer", "token issuer is not trusted") from None
            except jwt.InvalidAudienceError:
                raise TokenRejected("wrong_audience", "token is meant for another audience") from None
            except jwt.MissingRequiredClaimError as exc:
                raise TokenRejected(*_missing(exc.claim)) from None
            except jwt.InvalidAlgorithmError:
                raise TokenRejected("algorithm_not_allowed", "algorithm is not allowed for this key") from None
            except jwt.InvalidTokenError as exc:
                raise TokenRejected(_other(exc), "token claims are not valid") from None
        raise TokenRejected("bad_signature", "token signature does not verify with any configured key")

    def validate(self, token: str) -> Principal:
        """The principal a valid token names; :class:`TokenRejected` with a reason code otherwise."""
        claims = self._verified_claims(token)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("missing_subject", "token has no subject")
        if len(subject) > MAX_SUBJECT_CHARS or not subject.isprintable():
            raise TokenRejected("malformed", "token subject is too long or not printable")
        value = claims.get(self._settings.role_claim)
        if value is None:
            raise TokenRejected("missing_role", f"token has no {self._settings.role_claim!r} claim")
        try:
            role = Role(value) if isinstance(value, str) else None
        except ValueError:
            role = None
        if role is None:
            raise TokenRejected("unknown_role", f"token {self._settings.role_claim!r} is not a known role")
        methods = claims.get("amr")
        mfa = isinstance(methods, list) and any(isinstance(m, str) and m in _MFA_METHODS for m in methods)
        log.debug("jwt accepted sub=%s role=%s mfa=%s", subject, role.value, mfa)
        return Principal(
            name=subject, role=role, scopes=ROLE_ACTIONS[role], via="jwt", key_prefix=None, mfa_from_token=mfa
        )


def _missing(claim: str) -> tuple[str, str]:
    reasons: dict[str, str] = {"sub": "missing_subject", "iss": "wrong_issuer", "aud": "wrong_audience"}
    return reasons.get(claim, "malformed"), f"token has no {claim!r} claim"


def _other(exc: jwt.InvalidTokenError) -> str:
    """Reason code for the remaining PyJWT errors (a non-string ``sub``, an undecodable payload, ...)."""
    if isinstance(exc, InvalidSubjectError):
        return "missing_subject"
    return "malformed"
