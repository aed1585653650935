"""API keys and roles for the gateway: who is calling, and what they may do.

A key looks like ``mw_<prefix>_<secret>``. The prefix (12 hex characters) is public: it names the key
in logs, lists and the audit trail. The secret is 32 random bytes from :func:`secrets.token_urlsafe`.
Only the SHA-256 of the whole key is stored; the plaintext is returned once, by :meth:`KeyManager.create`.

Why SHA-256 and not argon2/bcrypt: slow, salted hashes exist to make guessing *low-entropy human
passwords* expensive. A 256-bit random secret cannot be guessed, so one fast hash is enough and keeps
authentication cheap on every request (the same choice GitHub and Stripe tokens make). Hashes are
compared with :func:`hmac.compare_digest`, and unknown prefixes are compared against a dummy hash so
both paths do the same work.

Roles follow least privilege; actions marked in :data:`MFA_REQUIRED` need a second factor (the flag is
here; TOTP verification lives elsewhere). Storage goes through the small :class:`KeyStore` protocol so a
PostgreSQL store can replace :class:`SQLiteKeyStore` without touching the manager.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from modelward.core.errors import InputError

__all__ = [
    "MFA_REQUIRED",
    "ROLE_ACTIONS",
    "AccessDecision",
    "Action",
    "AuthReason",
    "AuthResult",
    "IssuedKey",
    "KeyManager",
    "KeyRecord",
    "KeyStore",
    "Role",
    "SQLiteKeyStore",
    "allowed",
    "check_access",
    "describe_key",
    "hash_key",
    "key_from_row",
]

log = logging.getLogger(__name__)

KEY_TAG = "mw"
PREFIX_HEX_CHARS = 12
SECRET_BYTES = 32
_SECRET_CHARS = 43  # len(token_urlsafe(32))
_KEY_RE = re.compile(rf"^{KEY_TAG}_([0-9a-f]{{{PREFIX_HEX_CHARS}}})_([A-Za-z0-9_-]{{{_SECRET_CHARS}}})$")
_MAX_PRESENTED = 128
_DUMMY_HASH = hashlib.sha256(b"modelward-dummy-key").hexdigest()


class Role(enum.StrEnum):
    """Who a principal is to the gateway."""

    END_USER = "end-user"
    MODERATOR = "moderator"
    ML_ENGINEER = "ml-engineer"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Action(enum.StrEnum):
    """What a request wants to do; keys carry a subset of these as scopes."""

    PREDICT = "predict"
    READ_DECISIONS = "read-decisions"
    FILE_REPORTS = "file-reports"
    DEPLOY_MODEL = "deploy-model"
    READ_AUDIT_LOG = "read-audit-log"
    EXPORT_AUDIT_LOG = "export-audit-log"
    MANAGE_KEYS = "manage-keys"
    CHANGE_ROLES = "change-roles"
    VIEW_MODELS = "view-models"
    READ_METRICS = "read-metrics"


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.END_USER: frozenset({Action.PREDICT}),
    Role.MODERATOR: frozenset({Action.PREDICT, Action.READ_DECISIONS, Action.FILE_REPORTS}),
    Role.ML_ENGINEER: frozenset({Action.DEPLOY_MODEL, Action.VIEW_MODELS}),
    Role.AUDITOR: frozenset({Action.READ_AUDIT_LOG, Action.EXPORT_AUDIT_LOG, Action.VIEW_MODELS, Action.READ_METRICS}),
    Role.ADMIN: frozenset({Action.MANAGE_KEYS, Action.CHANGE_ROLES, Action.READ_METRICS}),
}
"""Least privilege: each role gets only what its job needs (an admin cannot predict or deploy)."""

MFA_REQUIRED: frozenset[Action] = frozenset(
    {Action.DEPLOY_MODEL, Action.MANAGE_KEYS, Action.CHANGE_ROLES, Action.EXPORT_AUDIT_LOG}
)
"""Privileged actions that need a verified second factor on top of the key."""


def allowed(role: Role, action: Action) -> bool:
    """Whether ``role`` may ever perform ``action`` (before key scopes and MFA)."""
    return action in ROLE_ACTIONS[role]


class AuthReason(enum.StrEnum):
    """Why an authentication succeeded or failed (safe to log: never contains key material)."""

    OK = "ok"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    HASH_MISMATCH = "hash_mismatch"  # right prefix, wrong key
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class KeyRecord:
    """What the store holds about one key: no plaintext, ever."""

    prefix: str
    key_hash: str = field(repr=False)
    principal: str
    role: Role
    scopes: frozenset[Action]
    created_at: float
    expires_at: float | None = None
    revoked: bool = False
    last_used: float | None = None


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: ``key`` is the only copy of the plaintext; hand it over and drop it."""

    key: str = field(repr=False)
    record: KeyRecord


@dataclass(frozen=True)
class AuthResult:
    """Outcome of :meth:`KeyManager.authenticate`; ``record`` is set only when ``ok``."""

    reason: AuthReason
    prefix: str | None = None
    record: KeyRecord | None = None

    @property
    def ok(self) -> bool:
        return self.reason is AuthReason.OK


@dataclass(frozen=True)
class AccessDecision:
    """Whether a key may perform an action now, and if not, why (``forbidden`` or ``mfa_required``)."""

    allowed: bool
    reason: str


def check_access(record: KeyRecord, action: Action, *, mfa_verified: bool = False) -> AccessDecision:
    """Role, key scope and MFA in one decision; deny by default."""
    if not allowed(record.role, action) or action not in record.scopes:
        return AccessDecision(False, "forbidden")
    if action in MFA_REQUIRED and not mfa_verified:
        return AccessDecision(False, "mfa_required")
    return AccessDecision(True, "ok")


def describe_key(record: KeyRecord, now: float) -> dict[str, object]:
    """What may be shown about a key (never its hash): for lists, the CLI's JSON and the admin API."""
    status = "revoked" if record.revoked else "active"
    if not record.revoked and record.expires_at is not None and now >= record.expires_at:
        status = "expired"
    return {
        "prefix": record.prefix,
        "principal": record.principal,
        "role": record.role.value,
        "scopes": sorted(a.value for a in record.scopes),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "last_used": record.last_used,
        "status": status,
    }


def hash_key(key: str) -> str:
    """SHA-256 hex digest of the full presented key (see module docstring for why no slow hash)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore(Protocol):
    """The storage a :class:`KeyManager` needs: five operations, easy to back with any SQL database."""

    def insert(self, record: KeyRecord) -> None: ...

    def get(self, prefix: str) -> KeyRecord | None: ...

    def update(self, prefix: str, *, expires_at: float | None = None, revoked: bool | None = None) -> None: ...

    def touch(self, prefix: str, when: float) -> None: ...

    def all(self) -> list[KeyRecord]: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    prefix     TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL,
    principal  TEXT NOT NULL,
    role       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    last_used  REAL
)
"""
_INSERT = (
    "INSERT INTO api_keys (prefix, key_hash, principal, role, scopes, created_at, expires_at, revoked, last_used)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = "SELECT prefix, key_hash, principal, role, scopes, created_at, expires_at, revoked, last_used FROM api_keys"
_SELECT_ONE = _SELECT + " WHERE prefix = ?"
_SELECT_ALL = _SELECT + " ORDER BY created_at, prefix"


def key_from_row(row: Sequence[Any]) -> KeyRecord:
    """A :class:`KeyRecord` from a ``(prefix, key_hash, principal, role, scopes, created, expires, revoked,
    last_used)`` row of any store; ``scopes`` is a comma-joined text (SQLite) or an array (PostgreSQL)."""
    prefix, key_hash, principal, role, scopes, created, expires, revoked, last_used = row
    names = [s for s in scopes.split(",") if s] if isinstance(scopes, str) else list(scopes)
    return KeyRecord(
        prefix=str(prefix),
        key_hash=str(key_hash),
        principal=str(principal),
        role=Role(str(role)),
        scopes=frozenset(Action(s) for s in names),
        created_at=float(created),
        expires_at=None if expires is None else float(expires),
        revoked=bool(revoked),
        last_used=None if last_used is None else float(last_used),
    )


class SQLiteKeyStore:
    """:class:`KeyStore` on the standard-library sqlite3, parameterised SQL only, safe across threads."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        with self._lock, self._db:
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, record: KeyRecord) -> None:
        with self._lock, self._db:
            self._db.execute(
                _INSERT,
                (
                    record.prefix,
                    record.key_hash,
                    record.principal,
                    record.role.value,
                    ",".join(sorted(a.value for a in record.scopes)),
                    record.created_at,
                    record.expires_at,
                    int(record.revoked),
                    record.last_used,
                ),
            )

    def get(self, prefix: str) -> KeyRecord | None:
        with self._lock:
            row = self._db.execute(
                _SELECT_ONE,
                (prefix,),
            ).fetchone()
        return None if row is None else key_from_row(row)

    def update(self, prefix: str, *, expires_at: float | None = None, revoked: bool | None = None) -> None:
        with self._lock, self._db:
            if expires_at is not None:
                self._db.execute("UPDATE api_keys SET expires_at = ? WHERE prefix = ?", (expires_at, prefix))
            if revoked is not None:
                self._db.execute("UPDATE api_keys SET revoked = ? WHERE prefix = ?", (int(revoked), prefix))

    def touch(self, prefix: str, when: float) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE api_keys SET last_used = ? WHERE prefix = ?", (when, prefix))

    def all(self) -> list[KeyRecord]:
        with self._lock:
            rows = self._db.execute(_SELECT_ALL).fetchall()
        return [key_from_row(r) for r in rows]


class KeyManager:
    """Issue, authenticate, rotate, revoke and list API keys over a :class:`KeyStore`."""

    def __init__(self, store: KeyStore, *, clock: Callable[[], float] = time.time, touch_every_s: float = 60.0) -> None:
        self._store = store
        self._clock = clock
        self._touch_every = touch_every_s  # last_used is coarse on purpose: no write on every request

    def create(
        self,
        principal: str,
        role: Role,
        *,
        scopes: Iterable[Action] | None = None,
        ttl_s: float | None = None,
    ) -> IssuedKey:
        """A new key for ``principal``; scopes default to the role's actions and may only narrow them."""
        if not principal or len(principal) > 200 or not principal.isprintable():
            raise InputError("principal must be a non-empty printable name of at most 200 characters")
        role = Role(role)
        granted = ROLE_ACTIONS[role] if scopes is None else frozenset(Action(s) for s in scopes)
        extra = granted - ROLE_ACTIONS[role]
        if extra:
            names = ", ".join(sorted(a.value for a in extra))
            raise InputError(f"role {role.value} may not hold scope(s): {names}")
        if ttl_s is not None and ttl_s <= 0:
            raise InputError("ttl_s must be positive")
        now = self._clock()
        while True:
            prefix = secrets.token_hex(PREFIX_HEX_CHARS // 2)
            if self._store.get(prefix) is None:
                break
        key = f"{KEY_TAG}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
        record = KeyRecord(
            prefix=prefix,
            key_hash=hash_key(key),
            principal=principal,
            role=role,
            scopes=granted,
            created_at=now,
            expires_at=None if ttl_s is None else now + ttl_s,
        )
        self._store.insert(record)
        log.info("api key created prefix=%s principal=%s role=%s", prefix, principal, role.value)
        return IssuedKey(key=key, record=record)

    def authenticate(self, presented: str) -> AuthResult:
        """Check a presented key; the result names a reason code and never echoes the secret."""
        well_formed = isinstance(presented, str) and len(presented) <= _MAX_PRESENTED
        match = _KEY_RE.fullmatch(presented) if well_formed else None
        if match is None:
            log.info("api key refused reason=%s", AuthReason.MALFORMED.value)
            return AuthResult(AuthReason.MALFORMED)
        prefix = match.group(1)
        record = self._store.get(prefix)
        digest = hash_key(presented)
        same = hmac.compare_digest(digest, record.key_hash if record is not None else _DUMMY_HASH)
        now = self._clock()
        if record is None:
            reason = AuthReason.UNKNOWN_KEY
        elif not same:
            reason = AuthReason.HASH_MISMATCH
        elif record.revoked:
            reason = AuthReason.REVOKED
        elif record.expires_at is not None and now >= record.expires_at:
            reason = AuthReason.EXPIRED
        else:
            if record.last_used is None or now - record.last_used >= self._touch_every:
                self._store.touch(prefix, now)
            log.debug("api key accepted prefix=%s", prefix)
            return AuthResult(AuthReason.OK, prefix, replace(record, last_used=now))
        log.info("api key refused prefix=%s reason=%s", prefix, reason.value)
        return AuthResult(reason, prefix)

    def _existing(self, prefix: str) -> KeyRecord:
        record = self._store.get(prefix)
        if record is None:
            raise InputError(f"no API key with prefix {prefix!r}")
        return record

    def rotate(self, prefix: str, *, grace_s: float = 300.0) -> IssuedKey:
        """Issue a successor with the same principal, role and scopes; the old key expires after ``grace_s``."""
        old = self._existing(prefix)
        if old.revoked:
            raise InputError(f"API key {prefix} is revoked and cannot be rotated")
        if grace_s < 0:
            raise InputError("grace_s must not be negative")
        now = self._clock()
        ttl = None if old.expires_at is None else old.expires_at - old.created_at
        issued = self.create(old.principal, old.role, scopes=old.scopes, ttl_s=ttl)
        deadline = now + grace_s
        if old.expires_at is None or deadline < old.expires_at:
            self._store.update(prefix, expires_at=deadline)
        log.info("api key rotated old=%s new=%s grace_s=%s", prefix, issued.record.prefix, grace_s)
        return issued

    def revoke(self, prefix: str) -> KeyRecord:
        """Refuse this key from now on; returns its record as stored now."""
        self._existing(prefix)
        self._store.update(prefix, revoked=True)
        log.info("api key revoked prefix=%s", prefix)
        return self._existing(prefix)

    def list(self) -> list[KeyRecord]:
        """Every key's metadata (prefix, principal, role, scopes, times, revoked); no plaintext exists to show."""
        return self._store.all()
