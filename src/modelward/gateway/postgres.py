"""PostgreSQL storage for a scaled-out gateway: API keys, users and the audit chain, shared by every replica.

Schema changes are ordered SQL migrations recorded in ``schema_migrations``; :func:`migrate` applies the
missing ones in one transaction under a transaction-scoped advisory lock, so replicas starting together
never race. The audit store takes another advisory lock around "read head, build, insert" so concurrent
writers on several machines still produce one hash chain. Default ``synchronous_commit`` (on) is kept: an
acknowledged audit record is on disk. Each store holds a small pool of connections (psycopg 3) and is
thread-safe; connection failures become :class:`InputError` with the URL's password masked.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors

from modelward.core.errors import InputError
from modelward.gateway.audit_log import (
    GENESIS_HASH,
    AuditRecord,
    ChainBuilder,
    Checkpoint,
    record_from_row,
)
from modelward.gateway.identity import UserRecord, user_from_row
from modelward.gateway.keys import KeyRecord, Role, key_from_row
from modelward.gateway.redaction import redact_url

__all__ = [
    "AUDIT_LOCK_ID",
    "MIGRATIONS",
    "MIGRATION_LOCK_ID",
    "PostgresAuditStore",
    "PostgresKeyStore",
    "PostgresUserStore",
    "migrate",
    "redact_url",
]

MIGRATION_LOCK_ID = 0x6D77_6D69_6772  # "mwmigr": serialises schema migrations across replicas
AUDIT_LOCK_ID = 0x6D77_6175_6469  # "mwaudi": serialises audit-chain appends across replicas
_PAGE = 1000

MIGRATIONS: tuple[str, ...] = (
    # 1: the tables of SQLiteKeyStore, SQLiteUserStore and SQLiteAuditStore, with native types.
    """
    CREATE TABLE api_keys (
        prefix     text PRIMARY KEY,
        key_hash   text NOT NULL,
        principal  text NOT NULL,
        role       text NOT NULL,
        scopes     text[] NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision,
        revoked    boolean NOT NULL DEFAULT false,
        last_used  double precision
    );
    CREATE TABLE users (
        name           text PRIMARY KEY,
        role           text NOT NULL,
        created_at     double precision NOT NULL,
        totp_secret    text,
        password_hash  text,
        disabled       boolean NOT NULL DEFAULT false,
        last_totp_step bigint
    );
    CREATE TABLE audit_records (
        seq bigint PRIMARY KEY, ts text NOT NULL, actor text NOT NULL, action text NOT NULL,
        outcome text NOT NULL, details text NOT NULL, prev_hash text NOT NULL, hash text NOT NULL
    );
    CREATE INDEX audit_records_action_seq ON audit_records (action, seq);
    CREATE TABLE audit_checkpoints (
        seq bigint PRIMARY KEY, head_hash text NOT NULL, signature bytea NOT NULL, key_id text NOT NULL
    );
    """,
)
"""Schema versions 1..N, in order. Append new migrations; never edit a released one."""


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, connect_timeout=10)
    except (psycopg.Error, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        password = None
        with contextlib.suppress(ValueError):
            password = urlsplit(url).password
        if password:
            reason = reason.replace(password, "***")
        raise InputError(f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}") from None


def migrate(url: str) -> int:
    """Bring the database at ``url`` to the newest schema version and return it (safe to run concurrently)."""
    with _connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL)"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row is not None else 0
        if current > len(MIGRATIONS):
            raise InputError(
                f"database schema version {current} is newer than this modelward ({len(MIGRATIONS)}): upgrade it"
            )
        for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (%s, now())", (version,))
    return len(MIGRATIONS)


class _Pool:
    """Up to ``size`` connections opened on demand, handed out one at a time; broken ones are replaced."""

    def __init__(self, url: str, size: int) -> None:
        self._url = url
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise InputError("the PostgreSQL store is closed")
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = _connect(self._url)
            try:
                yield conn
            except psycopg.OperationalError as exc:
                conn.close()
                raise InputError(f"PostgreSQL at {redact_url(self._url)} failed: {exc}") from None
            except BaseException:
                if conn.broken or conn.closed:
                    conn.close()
                else:
                    conn.rollback()
                    self._idle.put(conn)
                raise
            if conn.closed or conn.broken:
                conn.close()
            else:
                self._idle.put(conn)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class _Store:
    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        migrate(url)
        self._pool = _Pool(url, pool_size)

    def close(self) -> None:
        self._pool.close()


class PostgresKeyStore(_Store):
    """:class:`~modelward.gateway.keys.KeyStore` in PostgreSQL (scopes as ``text[]``)."""

    def insert(self, record: KeyRecord) -> None:
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO api_keys"
                    " (prefix, key_hash, principal, role, scopes, created_at, expires_at, revoked, last_used)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        record.prefix,
                        record.key_hash,
                        record.principal,
                        record.role.value,
                        sorted(a.value for a in record.scopes),
                        record.created_at,
                        record.expires_at,
                        record.revoked,
                        record.last_used,
                    ),
                )
        except pg_errors.UniqueViolation:
            raise InputError(f"an API key with prefix {record.prefix!r} already exists") from None

    def get(self, prefix: str) -> KeyRecord | None:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT prefix, key_hash, principal, role, scopes, created_at, expires_at, revoked, last_used"
                " FROM api_keys WHERE prefix = %s",
                (prefix,),
            ).fetchone()
        return None if row is None else key_from_row(row)

    def update(self, prefix: str, *, expires_at: float | None = None, revoked: bool | None = None) -> None:
        with self._pool.connection() as conn, conn.transaction():
            if expires_at is not None:
                conn.execute("UPDATE api_keys SET expires_at = %s WHERE prefix = %s", (expires_at, prefix))
            if revoked is not None:
                conn.execute("UPDATE api_keys SET revoked = %s WHERE prefix = %s", (revoked, prefix))

    def touch(self, prefix: str, when: float) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("UPDATE api_keys SET last_used = %s WHERE prefix = %s", (when, prefix))

    def all(self) -> list[KeyRecord]:
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT prefix, key_hash, principal, role, scopes, created_at, expires_at, revoked, last_used"
                " FROM api_keys ORDER BY created_at, prefix"
            ).fetchall()
        return [key_from_row(r) for r in rows]


class PostgresUserStore(_Store):
    """:class:`~modelward.gateway.identity.UserStore` in PostgreSQL; TOTP steps are claimed atomically."""

    def insert(self, user: UserRecord) -> None:
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO users (name, role, created_at, totp_secret, password_hash, disabled, last_totp_step)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        user.name,
                        user.role.value,
                        user.created_at,
                        user.totp_secret,
                        user.password_hash,
                        user.disabled,
                        user.last_totp_step,
                    ),
                )
        except pg_errors.UniqueViolation:
            raise InputError(f"user {user.name!r} already exists") from None

    def get(self, name: str) -> UserRecord | None:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT name, role, created_at, totp_secret, password_hash, disabled, last_totp_step"
                " FROM users WHERE name = %s",
                (name,),
            ).fetchone()
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
        # Fixed statements per column (no SQL built from input); COALESCE keeps what is not being changed.
        with self._pool.connection() as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE users SET role = coalesce(%s, role), totp_secret = coalesce(%s, totp_secret),"
                " password_hash = coalesce(%s, password_hash), disabled = coalesce(%s, disabled)"
                " WHERE name = %s",
                (None if role is None else Role(role).value, totp_secret, password_hash, disabled, name),
            )
            if cursor.rowcount != 1:
                raise InputError(f"no user named {name!r}")

    def claim_totp_step(self, name: str, step: int) -> bool:
        with self._pool.connection() as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE users SET last_totp_step = %s"
                " WHERE name = %s AND (last_totp_step IS NULL OR last_totp_step < %s)",
                (int(step), name, int(step)),
            )
            return cursor.rowcount == 1

    def all(self) -> list[UserRecord]:
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT name, role, created_at, totp_secret, password_hash, disabled, last_totp_step"
                " FROM users ORDER BY name"
            ).fetchall()
        return [user_from_row(r) for r in rows]


class PostgresAuditStore(_Store):
    """:class:`~modelward.gateway.audit_log.AuditStore` in PostgreSQL; one chain however many replicas write."""

    def head(self) -> tuple[int, str]:
        with self._pool.connection() as conn, conn.transaction():
            return self._head(conn)

    @staticmethod
    def _head(conn: psycopg.Connection[Any]) -> tuple[int, str]:
        row = conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def append(self, records: Sequence[AuditRecord], checkpoints: Sequence[Checkpoint]) -> None:
        self.append_chained(lambda _seq, _hash: (records, checkpoints))

    def append_chained(self, build: ChainBuilder) -> list[AuditRecord]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK_ID,))
            records, checkpoints = build(*self._head(conn))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO audit_records (seq, ts, actor, action, outcome, details, prev_hash, hash)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (r.seq, r.ts, r.actor, r.action, r.outcome, r.stored_details(), r.prev_hash, r.hash)
                        for r in records
                    ],
                )
                if checkpoints:  # one in checkpoint_every transactions carries one
                    cur.executemany(
                        # Two replicas closing at once may both sign the same head: Ed25519 is deterministic, so the
                        # rows are identical and the second is dropped instead of failing the close.
                        "INSERT INTO audit_checkpoints (seq, head_hash, signature, key_id) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (seq) DO NOTHING",
                        [(c.seq, c.head_hash, c.signature, c.key_id) for c in checkpoints],
                    )
        return list(records)

    def records(self) -> Iterator[AuditRecord]:
        after = -1
        while True:  # keyset pages: no transaction stays open while the caller iterates
            with self._pool.connection() as conn, conn.transaction():
                rows = conn.execute(
                    "SELECT seq, ts, actor, action, outcome, details, prev_hash, hash"
                    " FROM audit_records WHERE seq > %s ORDER BY seq LIMIT %s",
                    (after, _PAGE),
                ).fetchall()
            for row in rows:
                yield record_from_row(row)
            if len(rows) < _PAGE:
                return
            after = int(rows[-1][0])

    def tail(self, limit: int, action: str | None = None) -> list[AuditRecord]:
        with self._pool.connection() as conn, conn.transaction():
            if action is None:
                rows = conn.execute(
                    "SELECT seq, ts, actor, action, outcome, details, prev_hash, hash"
                    " FROM audit_records ORDER BY seq DESC LIMIT %s",
                    (limit,),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT seq, ts, actor, action, outcome, details, prev_hash, hash"
                    " FROM audit_records WHERE action = %s ORDER BY seq DESC LIMIT %s",
                    (action, limit),
                ).fetchall()
        return [record_from_row(r) for r in rows]

    def checkpoints(self) -> list[Checkpoint]:
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT seq, head_hash, signature, key_id FROM audit_checkpoints ORDER BY seq"
            ).fetchall()
        return [Checkpoint(int(s), str(h), bytes(sig), str(k)) for s, h, sig, k in rows]
