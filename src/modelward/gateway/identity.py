"""Users of the gateway: roles, TOTP second factor, argon2id passwords, and the Principal a request resolves to.

A user is a named person with a current role. API keys and JWTs say *who* calls; the user record says what
that person may do *now*: demoting or disabling a user takes effect on every key they already hold.

TOTP (RFC 6238, 30-second steps, 6 digits) is checked within ``valid_window`` steps of now, and a code is
accepted once: the matched step is claimed atomically in the store (``last_totp_step`` only grows), so a
code seen on the wire cannot be replayed, not even against another replica sharing the store. Passwords
are hashed with argon2id (memory-hard, salted): unlike API keys they are low-entropy human secrets.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from modelward.core.errors import InputError
from modelward.gateway.keys import MFA_REQUIRED, AccessDecision, Action, KeyRecord, Role, allowed
from modelward.gateway.totp_secrets import TotpSecretBox, UnreadableSecret

__all__ = [
    "ISSUER",
    "EnrolledUser",
    "Principal",
    "SQLiteUserStore",
    "UserManager",
    "UserRecord",
    "UserStore",
    "authorize",
    "check_name",
    "principal_from_key",
    "user_from_row",
]

log = logging.getLogger(__name__)

ISSUER = "modelward"
TOTP_DIGITS = 6
TOTP_PERIOD_S = 30
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 hashes any length; a bound keeps one request from costing much
_NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_CODE_RE = re.compile(r"^[0-9]{6}$")
# A public dummy secret: unknown users cost the same TOTP work as real ones.
_DUMMY_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105  # nosec B105


def check_name(name: str) -> str:
    """``name`` when it is 1-64 characters of ``[A-Za-z0-9._@-]``; an :class:`InputError` otherwise."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InputError(f"user name must be 1-64 characters of A-Z a-z 0-9 . _ @ -, got {name!r}"[:200])
    return name


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InputError(f"unknown role {value!r}; expected one of: {', '.join(r.value for r in Role)}") from None


@dataclass(frozen=True)
class UserRecord:
    """What the store holds about one user; secrets are hidden from ``repr``."""

    name: str
    role: Role
    created_at: float
    totp_secret: str | None = field(default=None, repr=False)
    password_hash: str | None = field(default=None, repr=False)
    disabled: bool = False
    last_totp_step: int | None = None

    def __post_init__(self) -> None:
        check_name(self.name)


@dataclass(frozen=True)
class EnrolledUser:
    """A user with a fresh TOTP secret: ``totp_secret`` and ``provisioning_uri`` are shown once, then dropped."""

    user: UserRecord
    totp_secret: str = field(repr=False)
    provisioning_uri: str = field(repr=False)


class UserStore(Protocol):
    """The storage a :class:`UserManager` needs; SQLite here, PostgreSQL in ``gateway/postgres.py``."""

    def insert(self, user: UserRecord) -> None: ...

    def get(self, name: str) -> UserRecord | None: ...

    def update(
        self,
        name: str,
        *,
        role: Role | None = None,
        totp_secret: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> None: ...

    def claim_totp_step(self, name: str, step: int) -> bool: ...

    def all(self) -> list[UserRecord]: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name           TEXT PRIMARY KEY,
    role           TEXT NOT NULL,
    created_at     REAL NOT NULL,
    totp_secret    TEXT,
    password_hash  TEXT,
    disabled       INTEGER NOT NULL DEFAULT 0,
    last_totp_step INTEGER
)
"""
_SELECT = "SELECT name, role, created_at, totp_secret, password_hash, disabled, last_totp_step FROM users"
_INSERT = (
    "INSERT INTO users (name, role, created_at, totp_secret, password_hash, disabled, last_totp_step)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SET_ROLE = "UPDATE users SET role = ? WHERE name = ?"
_SET_TOTP = "UPDATE users SET totp_secret = ? WHERE name = ?"
_SET_HASH = "UPDATE users SET password_hash = ? WHERE name = ?"
_SET_DISABLED = "UPDATE users SET disabled = ? WHERE name = ?"
_CLAIM = "UPDATE users SET last_totp_step = ? WHERE name = ? AND (last_totp_step IS NULL OR last_totp_step < ?)"


def user_from_row(row: Sequence[Any]) -> UserRecord:
    """A :class:`UserRecord` from a ``(name, role, created, totp_secret, password_hash, disabled,
    last_totp_step)`` row of any store."""
    name, role, created, secret, password_hash, disabled, step = row
    return UserRecord(
        name=str(name),
        role=Role(str(role)),
        created_at=float(created),
        totp_secret=None if secret is None else str(secret),
        password_hash=None if password_hash is None else str(password_hash),
        disabled=bool(disabled),
        last_totp_step=None if step is None else int(step),
    )


class SQLiteUserStore:
    """:class:`UserStore` on sqlite3 (WAL, parameterised SQL, one lock); may share a file with the key store."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            with self._db:
                self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, user: UserRecord) -> None:
        try:
            with self._lock, self._db:
                self._db.execute(
                    _INSERT,
                    (
                        user.name,
                        user.role.value,
                        user.created_at,
                        user.totp_secret,
                        user.password_hash,
                        int(user.disabled),
                        user.last_totp_step,
                    ),
                )
        except sqlite3.IntegrityError:
            raise InputError(f"user {user.name!r} already exists") from None

    def get(self, name: str) -> UserRecord | None:
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE name = ?", (name,)).fetchone()
        return None if row is None else user_from_row(row)

    def update(
        self,
        name: str,
        *,
        role: Role | None = None,
        totp_secret: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> None:
        changes: list[tuple[str, object]] = []
        if role is not None:
            changes.append((_SET_ROLE, Role(role).value))
        if totp_secret is not None:
            changes.append((_SET_TOTP, totp_secret))
        if password_hash is not None:
            changes.append((_SET_HASH, password_hash))
        if disabled is not None:
            changes.append((_SET_DISABLED, int(disabled)))
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise InputError(f"no user named {name!r}")
            for statement, value in changes:
                self._db.execute(statement, (value, name))

    def claim_totp_step(self, name: str, step: int) -> bool:
        with self._lock, self._db:
            cursor = self._db.execute(_CLAIM, (int(step), name, int(step)))
            return cursor.rowcount == 1

    def all(self) -> list[UserRecord]:
        with self._lock:
            rows = self._db.execute(_SELECT + " ORDER BY name").fetchall()
        return [user_from_row(r) for r in rows]


class UserManager:
    """Enrol users, change roles, disable them, and verify their TOTP codes and passwords."""

    def __init__(
        self,
        store: UserStore,
        clock: Callable[[], float] = time.time,
        *,
        valid_window: int = 1,
        hasher: PasswordHasher | None = None,
        secrets: TotpSecretBox | None = None,
    ) -> None:
        if not 0 <= valid_window <= 10:
            raise InputError(f"valid_window must be between 0 and 10 steps, got {valid_window}")
        self._store = store
        self._secrets = secrets if secrets is not None else TotpSecretBox()
        # unknown users open a sealed dummy too, so a configured key does not make them answer faster
        self._dummy_stored = self._secrets.seal(_DUMMY_SECRET)
        self._clock = clock
        self._window = valid_window
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._dummy_hash: str | None = None

    @property
    def store(self) -> UserStore:
        return self._store

    def _existing(self, name: str) -> UserRecord:
        user = self._store.get(name)
        if user is None:
            raise InputError(f"no user named {name!r}")
        return user

    @staticmethod
    def _enrol(user: UserRecord, secret: str) -> EnrolledUser:
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_S).provisioning_uri(
            name=user.name, issuer_name=ISSUER
        )
        return EnrolledUser(user=user, totp_secret=secret, provisioning_uri=uri)

    def _hash_password(self, password: str) -> str:
        if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
            raise InputError(f"password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long")
        return self._hasher.hash(password)

    def add(self, name: str, role: Role | str, *, password: str | None = None) -> EnrolledUser:
        """Create a user with a new TOTP secret, returned once together with its ``otpauth://`` URI."""
        check_name(name)
        password_hash = None if password is None else self._hash_password(password)
        secret = pyotp.random_base32()
        user = UserRecord(
            name=name,
            role=_role(role),
            created_at=self._clock(),
            totp_secret=self._secrets.seal(secret),
            password_hash=password_hash,
        )
        self._store.insert(user)
        log.info("user added name=%s role=%s", name, user.role.value)
        return self._enrol(user, secret)

    def set_role(self, name: str, role: Role | str) -> UserRecord:
        """Change a user's role; every key the user holds follows at once (see :func:`principal_from_key`)."""
        new_role = _role(role)
        self._existing(name)
        self._store.update(name, role=new_role)
        log.info("user role changed name=%s role=%s", name, new_role.value)
        return self._existing(name)

    def disable(self, name: str) -> UserRecord:
        """Refuse this user from now on, whatever key, token, code or password they present."""
        self._existing(name)
        self._store.update(name, disabled=True)
        log.info("user disabled name=%s", name)
        return self._existing(name)

    def enable(self, name: str) -> UserRecord:
        """Accept a disabled user again: their keys that are neither revoked nor expired work again."""
        self._existing(name)
        self._store.update(name, disabled=False)
        log.info("user enabled name=%s", name)
        return self._existing(name)

    def reset_totp(self, name: str) -> EnrolledUser:
        """Replace a user's TOTP secret (lost phone); the new one is returned once."""
        self._existing(name)
        secret = pyotp.random_base32()
        self._store.update(name, totp_secret=self._secrets.seal(secret))
        log.info("user totp reset name=%s", name)
        return self._enrol(self._existing(name), secret)

    def verify_totp(self, name: str, code: str) -> bool:
        """Whether ``code`` is this enabled user's current TOTP code, not used before (then it is used up)."""
        user = self._store.get(name) if isinstance(name, str) else None
        well_formed = isinstance(code, str) and _CODE_RE.fullmatch(code) is not None
        stored = user.totp_secret if user is not None and user.totp_secret else self._dummy_stored
        try:
            secret = self._secrets.open(stored)
        except UnreadableSecret as exc:  # a configuration fault: say so in the log, refuse the code
            log.error("totp secret unreadable name=%s: %s", user.name if user else "?", exc.message)
            return False
        totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_S)
        now_step = int(self._clock()) // TOTP_PERIOD_S
        presented = code.encode("ascii") if well_formed else b"000000x"
        matched: int | None = None
        for step in range(now_step - self._window, now_step + self._window + 1):
            # every step is compared (no early exit) so timing does not tell which one matched
            if hmac.compare_digest(totp.generate_otp(step).encode("ascii"), presented) and matched is None:
                matched = step
        if user is None or user.disabled or not user.totp_secret or not well_formed or matched is None:
            return False
        if not self._store.claim_totp_step(user.name, matched):
            log.info("totp code replay refused name=%s", user.name)
            return False
        if self._secrets.sealing and not TotpSecretBox.is_sealed(stored):
            self._store.update(user.name, totp_secret=self._secrets.seal(secret))  # sealed on first use
            log.info("totp secret sealed at rest name=%s", user.name)
        return True

    def set_password(self, name: str, password: str) -> None:
        """Set or replace a user's password (argon2id)."""
        self._existing(name)
        self._store.update(name, password_hash=self._hash_password(password))

    def verify_password(self, name: str, password: str) -> bool:
        """Whether ``password`` is this enabled user's password; unknown users cost the same work."""
        user = self._store.get(name) if isinstance(name, str) else None
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            return False
        if user is None or user.password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash("modelward-dummy-password")
            with contextlib.suppress(VerificationError, InvalidHashError):
                self._hasher.verify(self._dummy_hash, password)
            return False
        try:
            self._hasher.verify(user.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if user.disabled:
            return False
        if self._hasher.check_needs_rehash(user.password_hash):
            self._store.update(user.name, password_hash=self._hasher.hash(password))
            log.info("password rehashed with current parameters name=%s", user.name)
        return True

    def get(self, name: str) -> UserRecord | None:
        """The user named ``name``, or ``None``."""
        return self._store.get(name)

    def list(self) -> list[UserRecord]:
        """Every user, by name."""
        return self._store.all()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, after authentication: name, effective role and scopes, and how it came in."""

    name: str
    role: Role
    scopes: frozenset[Action]
    via: Literal["api-key", "jwt"]
    key_prefix: str | None = None
    mfa_from_token: bool = False


def principal_from_key(record: KeyRecord, users: UserStore | None) -> Principal | None:
    """The principal of an authenticated key; a registered user's *current* role wins, a disabled user gets None.

    Scopes are the key's own, narrowed to what the effective role allows: a demoted user's old key loses the
    privileges at once, and a promoted user needs a new key to use the new ones.
    """
    user = users.get(record.principal) if users is not None else None
    role = record.role
    if user is not None:
        if user.disabled:
            return None
        role = user.role
    scopes = frozenset(a for a in record.scopes if allowed(role, a))
    return Principal(name=record.principal, role=role, scopes=scopes, via="api-key", key_prefix=record.prefix)


def authorize(
    principal: Principal, action: Action, *, mfa_code: str | None, users: UserManager | None
) -> AccessDecision:
    """Role, scope, then second factor: ``forbidden``, ``mfa_required``, ``mfa_invalid`` or ``ok``; deny by default."""
    if not allowed(principal.role, action) or action not in principal.scopes:
        return AccessDecision(False, "forbidden")
    if action not in MFA_REQUIRED or principal.mfa_from_token:
        return AccessDecision(True, "ok")
    if mfa_code is None or mfa_code == "":
        return AccessDecision(False, "mfa_required")
    if users is None or not users.verify_totp(principal.name, mfa_code):
        return AccessDecision(False, "mfa_invalid")
    return AccessDecision(True, "ok")
