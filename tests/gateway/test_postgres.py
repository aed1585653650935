"""PostgreSQL stores against a real server: migrations, keys, users, and one audit chain from two processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.servers import create_database, free_port, postgres_url
from modelward.core.errors import InputError
from modelward.gateway.audit_log import AuditLog, verify_store
from modelward.gateway.identity import UserManager, UserRecord
from modelward.gateway.keys import Action, AuthReason, KeyManager, Role
from modelward.gateway.postgres import (
    MIGRATIONS,
    PostgresAuditStore,
    PostgresKeyStore,
    PostgresUserStore,
    migrate,
    redact_url,
)

__all__ = ["postgres_url"]  # the imported fixture is used by name

SRC = Path(__file__).resolve().parents[2] / "src"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PASSWORD_HASH = "$argon2id$not-a-real-hash"  # noqa: S105 - opaque text the store must keep as is


@pytest.fixture
def db_url(postgres_url: str) -> str:
    return create_database(postgres_url)


def _run_threads(target: object, count: int) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# --- migrations and connections --------------------------------------------------------------------


def test_migrations_are_idempotent_and_safe_when_replicas_start_together(db_url: str) -> None:
    versions: list[int] = []
    _run_threads(lambda: versions.append(migrate(db_url)), 6)
    assert versions == [len(MIGRATIONS)] * 6
    assert migrate(db_url) == len(MIGRATIONS)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


def test_a_newer_schema_is_refused(db_url: str) -> None:
    migrate(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (%s, now())", (len(MIGRATIONS) + 1,))
    with pytest.raises(InputError, match="newer"):
        migrate(db_url)


def test_connection_errors_never_show_the_password(postgres_url: str) -> None:
    wrong = postgres_url.replace("://modelward:", "://modelward:wrong-s3cret-pw", 1)
    with pytest.raises(InputError) as caught:
        PostgresKeyStore(wrong)
    assert "wrong-s3cret-pw" not in str(caught.value) and "***" in str(caught.value)
    with pytest.raises(InputError, match="cannot connect") as down:
        migrate(f"postgresql://u:topsecret@127.0.0.1:{free_port()}/x")
    assert "topsecret" not in str(down.value)
    assert redact_url("postgresql://u:p@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("postgresql://h/db") == "postgresql://h/db"


# --- keys ------------------------------------------------------------------------------------------


def test_key_store_round_trips_through_the_key_manager(db_url: str) -> None:
    store = PostgresKeyStore(db_url)
    try:
        manager = KeyManager(store)
        issued = manager.create("mod-1", Role.MODERATOR, scopes=[Action.PREDICT, Action.READ_DECISIONS])
        record = store.get(issued.record.prefix)
        assert record == issued.record
        assert record is not None and record.scopes == frozenset({Action.PREDICT, Action.READ_DECISIONS})
        assert manager.authenticate(issued.key).ok
        touched = store.get(issued.record.prefix)
        assert touched is not None and touched.last_used is not None
        rotated = manager.rotate(issued.record.prefix, grace_s=0)
        assert manager.authenticate(issued.key).reason is AuthReason.EXPIRED
        manager.revoke(rotated.record.prefix)
        assert manager.authenticate(rotated.key).reason is AuthReason.REVOKED
        assert [r.prefix for r in manager.list()] == [issued.record.prefix, rotated.record.prefix]
        with pytest.raises(InputError, match="already exists"):
            store.insert(issued.record)
        assert store.get("000000000000") is None
        # a second replica sees the same keys
        other = PostgresKeyStore(db_url)
        try:
            assert KeyManager(other).authenticate(rotated.key).reason is AuthReason.REVOKED
        finally:
            other.close()
    finally:
        store.close()


# --- users -----------------------------------------------------------------------------------------


def test_user_store_insert_get_update(db_url: str) -> None:
    store = PostgresUserStore(db_url)
    try:
        store.insert(UserRecord("ann", Role.AUDITOR, 1.5, totp_secret="S" * 32))
        with pytest.raises(InputError, match="already exists"):
            store.insert(UserRecord("ann", Role.ADMIN, 2.0))
        store.update("ann", role=Role.ADMIN, password_hash=PASSWORD_HASH)
        got = store.get("ann")
        assert got == UserRecord("ann", Role.ADMIN, 1.5, totp_secret="S" * 32, password_hash=PASSWORD_HASH)
        store.update("ann", disabled=True)
        assert store.get("ann") == UserRecord(
            "ann", Role.ADMIN, 1.5, totp_secret="S" * 32, password_hash=PASSWORD_HASH, disabled=True
        )
        with pytest.raises(InputError, match="no user"):
            store.update("nobody", role=Role.ADMIN)
        store.insert(UserRecord("bob", Role.END_USER, 3.0))
        assert [u.name for u in store.all()] == ["ann", "bob"]
        assert store.get("carol") is None
    finally:
        store.close()


def test_totp_steps_are_claimed_once_across_replicas(db_url: str) -> None:
    replicas = [PostgresUserStore(db_url), PostgresUserStore(db_url)]
    try:
        replicas[0].insert(UserRecord("ann", Role.ADMIN, 0.0, totp_secret=pyotp.random_base32()))
        assert replicas[0].claim_totp_step("ann", 100)
        assert not replicas[1].claim_totp_step("ann", 100)  # replay on another replica
        assert not replicas[1].claim_totp_step("ann", 99)  # older step
        assert not replicas[0].claim_totp_step("nobody", 500)
        wins: list[bool] = []
        lock = threading.Lock()
        count = iter(range(1000))

        def race() -> None:
            store = replicas[next(count) % 2]
            for step in range(101, 121):
                claimed = store.claim_totp_step("ann", step)
                with lock:
                    wins.append(claimed)

        _run_threads(race, 6)
        assert sum(wins) == 20  # every step claimed by exactly one caller
        got = replicas[1].get("ann")
        assert got is not None and got.last_totp_step == 120
    finally:
        for store in replicas:
            store.close()


def test_user_manager_verifies_totp_on_postgres(db_url: str) -> None:
    store = PostgresUserStore(db_url)
    try:
        now = 1_700_000_000.0
        users = UserManager(store, clock=lambda: now)
        enrolled = users.add("ann", Role.ADMIN)
        code = pyotp.TOTP(enrolled.totp_secret).at(now)
        assert users.verify_totp("ann", code)
        assert not users.verify_totp("ann", code)  # the same code twice is a replay
    finally:
        store.close()


# --- audit -----------------------------------------------------------------------------------------


def test_audit_log_on_postgres_verifies_and_detects_tampering(db_url: str) -> None:
    store = PostgresAuditStore(db_url)
    try:
        log = AuditLog(store=store, signing_key=KEY, checkpoint_every=5)
        for i in range(12):
            log.append(f"key-{i % 2}", "predict" if i % 3 else "deploy-model", "ok", {"n": i, "x": 0.5})
        log.checkpoint()
        result = verify_store(store, KEY.public_key())
        assert result.valid and result.records == 12 and result.checkpoints == 3 and result.authenticated
        assert [r.seq for r in store.tail(3)] == [12, 11, 10]
        assert [r.seq for r in store.tail(10, action="deploy-model")] == [10, 7, 4, 1]
        assert store.head()[0] == 12
        with psycopg.connect(db_url) as conn:
            conn.execute("UPDATE audit_records SET details = %s WHERE seq = 6", ('{"n":600,"x":0.5}',))
        tampered = verify_store(store, KEY.public_key())
        assert not tampered.valid and tampered.first_bad_seq == 6
    finally:
        store.close()


_WRITER = """
import sys, threading
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from modelward.gateway.audit_log import AuditLog
from modelward.gateway.postgres import PostgresAuditStore

url, name, per_thread = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = PostgresAuditStore(url)
log = AuditLog(store=store, signing_key=Ed25519PrivateKey.from_private_bytes(bytes(range(32))), checkpoint_every=7)
def work(t):
    for i in range(per_thread):
        log.append(f"{name}-{t}", "predict", "ok", {"i": i})
threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
print("ready", flush=True)
sys.stdin.readline()  # both replicas start writing at once
for t in threads: t.start()
for t in threads: t.join()
store.close()
"""


def test_two_processes_write_one_valid_chain(db_url: str) -> None:
    migrate(db_url)  # not required (stores migrate), but keeps the two starts symmetric
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    per_thread = 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, db_url, name, str(per_thread)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("replica-a", "replica-b")
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
    store = PostgresAuditStore(db_url)
    try:
        result = verify_store(store, KEY.public_key())
        assert result.valid, result.reason
        assert result.records == 2 * 4 * per_thread
        assert result.checkpoints == result.records // 7
        records = list(store.records())
        seen = {(r.actor, r.details["i"]) for r in records}
        switches = sum(a.actor[:9] != b.actor[:9] for a, b in itertools.pairwise(records))
        assert switches >= 2  # the two processes really interleaved on the chain
        expected = {(f"{n}-{t}", i) for n in ("replica-a", "replica-b") for t in range(4) for i in range(per_thread)}
        assert seen == expected  # every record present once, from both processes
    finally:
        store.close()


def test_records_pages_through_large_logs(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelward.gateway.postgres as pg

    monkeypatch.setattr(pg, "_PAGE", 4)
    store = PostgresAuditStore(db_url)
    try:
        log = AuditLog(store=store)
        log.append_many([("a", "predict", "ok", {"i": i}) for i in range(10)])
        assert [r.seq for r in store.records()] == list(range(1, 11))
        assert verify_store(store, None).valid
    finally:
        store.close()
