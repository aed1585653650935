"""The gateway's one YAML configuration file, validated by pydantic with file:line errors.

Relative paths resolve against the folder of the configuration file, so a deployment folder can be
moved as a whole. Secrets need not sit in the file: a PostgreSQL or Redis URL and the TOTP encryption
key may be written ``env:VARNAME`` (read from the environment) or ``file:PATH`` (read from an owner-only
file) when the gateway starts.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelward.core.errors import InputError
from modelward.core.yamlio import load_yaml
from modelward.gateway.keys import Role

if TYPE_CHECKING:
    from modelward.gateway.totp_secrets import TotpSecretBox

__all__ = [
    "AuditConfig",
    "AuthConfig",
    "BucketConfig",
    "GatewayConfig",
    "JWTConfig",
    "MetricsConfig",
    "ModelConfig",
    "RateLimitsConfig",
    "ServerConfig",
    "StorageConfig",
    "Stores",
    "UploadsConfig",
    "load_config",
    "open_stores",
    "resolve_secret",
    "totp_secret_box",
]

DEFAULT_OUTPUT_POLICY: dict[str, list[dict[str, Any]]] = {
    Role.END_USER.value: [{"kind": "label_only"}],
    Role.MODERATOR.value: [{"kind": "top_k", "k": 3}, {"kind": "rounding", "decimals": 2}],
}
"""End users get a label and nothing else; moderators see the three likeliest classes, rounded."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    """Where and how uvicorn listens."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    request_timeout_s: float = Field(10.0, gt=0, le=600)
    max_body_bytes: int = Field(6 * 1024 * 1024, ge=1024)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    inference_threads: int | None = Field(None, ge=1, le=1024)
    worker_threads: int = Field(16, ge=1, le=1024)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        return self


class StorageConfig(_Section):
    """Keys and users: SQLite for one node, PostgreSQL for several replicas."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: Path = Path("gateway.db")
    postgres_url: str | None = None

    @model_validator(mode="after")
    def _url_for_postgres(self) -> StorageConfig:
        if self.backend == "postgres" and not self.postgres_url:
            raise ValueError("backend postgres needs postgres_url (a URL, env:VARNAME or file:PATH)")
        return self


class AuditConfig(_Section):
    """The tamper-evident log: where it lives (with ``storage``'s backend) and who signs its checkpoints."""

    sqlite_path: Path = Path("audit.db")
    signing_key: Path | None = None
    checkpoint_every: int = Field(100, ge=1)
    synchronous: Literal["full", "normal"] = "full"
    batch_delay_ms: float = Field(0.0, ge=0, le=100)
    redaction_key_env: str | None = None


class BucketConfig(_Section):
    """One token bucket: a sustained rate and the burst allowed above it."""

    rate_per_s: float = Field(gt=0)
    burst: float = Field(gt=0)


class RateLimitsConfig(_Section):
    """Per-principal and per-address buckets plus a daily quota, in memory or shared through Redis."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    per_principal: BucketConfig = BucketConfig(rate_per_s=20, burst=40)
    per_address: BucketConfig = BucketConfig(rate_per_s=50, burst=100)
    daily_quota: int | None = Field(10_000, ge=1)

    @model_validator(mode="after")
    def _url_for_redis(self) -> RateLimitsConfig:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("backend redis needs redis_url (a URL, env:VARNAME or file:PATH)")
        return self


class UploadsConfig(_Section):
    """Limits on uploaded images (see :class:`modelward.gateway.uploads.ImageLimits`)."""

    max_bytes: int = Field(5 * 1024 * 1024, ge=64)
    max_pixels: int = Field(4_000_000, ge=1)
    max_ratio: float = Field(250.0, gt=1)


class ModelConfig(_Section):
    """The signed artifact to serve and the keys its signature must verify against."""

    models_dir: Path = Path("models")
    artifact: str
    public_keys: list[Path] = Field(min_length=1)
    allow_pickle: bool = False
    keep_versions: int = Field(5, ge=1, le=100)


class JWTConfig(_Section):
    """OAuth2/OIDC bearer tokens: issuer, audience and local verification keys (never fetched)."""

    issuer: str
    audience: str
    public_keys: list[Path] = Field(default_factory=list)
    jwks_file: Path | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    role_claim: str = "modelward_role"
    leeway_s: float = Field(30.0, ge=0, le=600)

    @model_validator(mode="after")
    def _some_key(self) -> JWTConfig:
        if not self.public_keys and self.jwks_file is None:
            raise ValueError("jwt needs public_keys or jwks_file")
        return self


class AuthConfig(_Section):
    """Which credentials are accepted and how the second factor is checked."""

    api_keys: bool = True
    jwt: JWTConfig | None = None
    totp_valid_window: int = Field(1, ge=0, le=3)
    #: a Fernet key (or ``env:NAME``, ``file:PATH``) sealing TOTP secrets in the user store; None stores them as is
    totp_encryption_key: str | None = None


class MetricsConfig(_Section):
    """Whether ``/metrics`` is open, or needs an auditor or admin credential."""

    public: bool = False


class GatewayConfig(_Section):
    """The whole gateway configuration; ``base_dir`` is the configuration file's folder."""

    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    audit: AuditConfig = AuditConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    uploads: UploadsConfig = UploadsConfig()
    model: ModelConfig
    auth: AuthConfig = AuthConfig()
    output_policy: dict[Role, list[dict[str, Any]]] = Field(
        default_factory=lambda: {Role(k): v for k, v in DEFAULT_OUTPUT_POLICY.items()}
    )
    metrics: MetricsConfig = MetricsConfig()
    base_dir: Path = Field(default=Path("."), exclude=True)

    def path(self, value: Path) -> Path:
        """``value`` resolved against the configuration file's folder."""
        return value if value.is_absolute() else (self.base_dir / value).resolve()

    def policy_for(self, role: Role) -> list[dict[str, Any]]:
        """The output-hardening steps for ``role``: label only unless the file says otherwise."""
        return self.output_policy.get(role, [{"kind": "label_only"}])


def resolve_secret(value: str, what: str, base_dir: Path | None = None) -> str:
    """``value`` itself, the environment variable it names as ``env:VARNAME``, or the content of the file it
    names as ``file:PATH`` (relative to ``base_dir``; owner-only on POSIX, as ssh insists for its keys).

    Secrets are never logged nor put in error messages; a missing, empty or shared file is an :class:`InputError`.
    """
    if value.startswith("env:"):
        name = value.removeprefix("env:")
        found = os.environ.get(name)
        if not found:
            raise InputError(f"{what}: environment variable {name} is not set")
        return found
    if value.startswith("file:"):
        return _secret_file(value.removeprefix("file:"), what, base_dir)
    return value


def _secret_file(name: str, what: str, base_dir: Path | None) -> str:
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & 0o077:
            raise InputError(
                f"{what}: secret file {path} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it"
            )
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"{what}: secret file {path} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{what}: secret file {path} is not UTF-8 text") from None
    if not text:
        raise InputError(f"{what}: secret file {path} is empty")
    return text


def totp_secret_box(config: GatewayConfig) -> TotpSecretBox:
    """The box that seals TOTP secrets with ``auth.totp_encryption_key`` (a plain one when none is set)."""
    from modelward.gateway.totp_secrets import TotpSecretBox

    value = config.auth.totp_encryption_key
    return TotpSecretBox(None if value is None else resolve_secret(value, "auth.totp_encryption_key", config.base_dir))


def load_config(path: Path | str) -> GatewayConfig:
    """Read and validate a gateway configuration file; every problem is a located :class:`InputError`."""
    from modelward.system.loader import validation_problems

    path = Path(path)
    if not path.is_file():
        raise InputError("no such gateway configuration file", file=str(path))
    document = load_yaml(path, max_bytes=1024 * 1024)
    if not isinstance(document.data, dict):
        raise InputError("expected a mapping with at least a 'model' section", file=document.file, line=1)
    try:
        config = GatewayConfig.model_validate(document.data)
    except ValidationError as exc:
        problems = validation_problems(exc, document, GatewayConfig)
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise InputError(first.message + more, file=first.file, line=first.line, field=first.field) from None
    return config.model_copy(update={"base_dir": path.resolve().parent})


class Stores:
    """The gateway's stores opened from a configuration: keys, users and the audit log."""

    def __init__(self, keys: Any, users: Any, audit: Any) -> None:
        from modelward.gateway.audit_log import AuditStore
        from modelward.gateway.identity import UserStore
        from modelward.gateway.keys import KeyStore

        self.keys: KeyStore = keys
        self.users: UserStore = users
        self.audit: AuditStore = audit

    def close(self) -> None:
        """Close every store (each is closed even when another fails)."""
        for store in (self.keys, self.users, self.audit):
            with contextlib.suppress(Exception):  # best effort: the process is going away
                store.close()


def open_stores(config: GatewayConfig) -> Stores:
    """Open (and create or migrate) the stores the configuration names."""
    if config.storage.backend == "postgres":
        from modelward.gateway.postgres import PostgresAuditStore, PostgresKeyStore, PostgresUserStore, migrate

        url = resolve_secret(config.storage.postgres_url or "", "storage.postgres_url", config.base_dir)
        migrate(url)
        return Stores(PostgresKeyStore(url), PostgresUserStore(url), PostgresAuditStore(url))
    from modelward.gateway.audit_log import SQLiteAuditStore
    from modelward.gateway.identity import SQLiteUserStore
    from modelward.gateway.keys import SQLiteKeyStore

    database = config.path(config.storage.sqlite_path)
    database.parent.mkdir(parents=True, exist_ok=True)
    audit_path = config.path(config.audit.sqlite_path)
    audit_path.parent.mkdir(parents=True, exist_ok=True)
    return Stores(
        SQLiteKeyStore(database),
        SQLiteUserStore(database),
        SQLiteAuditStore(audit_path, synchronous=config.audit.synchronous),
    )
