"""API keys: round trip, every refusal reason, rotation grace, roles, and no secret leaks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modelward.core.errors import InputError
from modelward.gateway.keys import (
    MFA_REQUIRED,
    Action,
    AuthReason,
    KeyManager,
    Role,
    SQLiteKeyStore,
    allowed,
    check_access,
    hash_key,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(clock: FakeClock) -> KeyManager:
    return KeyManager(SQLiteKeyStore(), clock=clock)


def _secret(key: str) -> str:
    return key.split("_", 2)[2]


def test_round_trip_and_storage_holds_only_hash(manager: KeyManager) -> None:
    issued = manager.create("alice", Role.END_USER)
    assert issued.key.startswith(f"mw_{issued.record.prefix}_")
    assert len(issued.record.prefix) >= 8
    assert len(_secret(issued.key)) == 43
    result = manager.authenticate(issued.key)
    assert result.ok and result.reason is AuthReason.OK
    assert result.record is not None and result.record.principal == "alice"
    assert result.record.scopes == {Action.PREDICT}
    listed = manager.list()[0]
    assert listed.key_hash == hash_key(issued.key) != issued.key
    assert listed.last_used == pytest.approx(1_000_000.0)
    assert manager.create("bob", Role.END_USER).key != issued.key


def test_sqlite_file_store_persists_and_has_no_plaintext(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "keys.db"
    store = SQLiteKeyStore(path)
    issued = KeyManager(store, clock=clock).create("carol", Role.AUDITOR)
    store.close()
    assert _secret(issued.key).encode() not in path.read_bytes()
    assert KeyManager(SQLiteKeyStore(path), clock=clock).authenticate(issued.key).ok


def test_wrong_secret_unknown_and_malformed(manager: KeyManager) -> None:
    issued = manager.create("alice", Role.END_USER)
    prefix = issued.record.prefix
    secret = _secret(issued.key)
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    wrong = manager.authenticate(f"mw_{prefix}_{flipped}")
    assert wrong.reason is AuthReason.HASH_MISMATCH and not wrong.ok and wrong.record is None
    unknown = manager.authenticate(f"mw_{'0' * 12}_{secret}")
    assert unknown.reason is AuthReason.UNKNOWN_KEY
    for bad in ["", "mw_", issued.key + "x", issued.key[:-1], "Bearer " + issued.key, "mw_ZZ_" + secret, "x" * 5000]:
        assert manager.authenticate(bad).reason is AuthReason.MALFORMED


def test_expired_and_revoked(manager: KeyManager, clock: FakeClock) -> None:
    short = manager.create("alice", Role.END_USER, ttl_s=60)
    assert manager.authenticate(short.key).ok
    clock.now += 61
    assert manager.authenticate(short.key).reason is AuthReason.EXPIRED
    other = manager.create("bob", Role.MODERATOR)
    manager.revoke(other.record.prefix)
    assert manager.authenticate(other.key).reason is AuthReason.REVOKED
    assert manager.list()[1].revoked
    with pytest.raises(InputError):
        manager.revoke("000000000000")
    with pytest.raises(InputError):
        manager.rotate(other.record.prefix)


def test_rotation_grace(manager: KeyManager, clock: FakeClock) -> None:
    old = manager.create("eve", Role.ML_ENGINEER)
    new = manager.rotate(old.record.prefix, grace_s=30)
    assert new.record.prefix != old.record.prefix
    assert (new.record.principal, new.record.role, new.record.scopes) == ("eve", Role.ML_ENGINEER, old.record.scopes)
    clock.now += 10
    assert manager.authenticate(old.key).ok
    assert manager.authenticate(new.key).ok
    clock.now += 30
    assert manager.authenticate(old.key).reason is AuthReason.EXPIRED
    assert manager.authenticate(new.key).ok


def test_role_matrix_least_privilege() -> None:
    expected = {
        Role.END_USER: {Action.PREDICT},
        Role.MODERATOR: {Action.PREDICT, Action.READ_DECISIONS, Action.FILE_REPORTS},
        Role.ML_ENGINEER: {Action.DEPLOY_MODEL, Action.VIEW_MODELS},
        Role.AUDITOR: {Action.READ_AUDIT_LOG, Action.EXPORT_AUDIT_LOG, Action.VIEW_MODELS, Action.READ_METRICS},
        Role.ADMIN: {Action.MANAGE_KEYS, Action.CHANGE_ROLES, Action.READ_METRICS},
    }
    for role in Role:
        for action in Action:
            assert allowed(role, action) == (action in expected[role]), (role, action)
    assert {Action.DEPLOY_MODEL, Action.MANAGE_KEYS, Action.CHANGE_ROLES, Action.EXPORT_AUDIT_LOG} == MFA_REQUIRED
    assert Action.PREDICT not in MFA_REQUIRED


def test_scopes_narrow_and_mfa_gate(manager: KeyManager) -> None:
    narrow = manager.create("mod", Role.MODERATOR, scopes=[Action.PREDICT]).record
    assert check_access(narrow, Action.PREDICT).allowed
    assert check_access(narrow, Action.READ_DECISIONS).reason == "forbidden"
    with pytest.raises(InputError, match="deploy-model"):
        manager.create("mod", Role.MODERATOR, scopes=[Action.DEPLOY_MODEL])
    eng = manager.create("eng", Role.ML_ENGINEER).record
    assert check_access(eng, Action.DEPLOY_MODEL).reason == "mfa_required"
    assert check_access(eng, Action.DEPLOY_MODEL, mfa_verified=True).allowed
    assert check_access(eng, Action.PREDICT, mfa_verified=True).reason == "forbidden"


def test_no_secret_in_repr_list_or_logs(manager: KeyManager, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="modelward.gateway.keys")
    issued = manager.create("alice", Role.ADMIN)
    secret = _secret(issued.key)
    manager.authenticate(issued.key)
    manager.authenticate(issued.key[:-3] + "AAA")
    rotated = manager.rotate(issued.record.prefix)
    manager.revoke(rotated.record.prefix)
    texts = [repr(issued), str(issued), repr(manager.list()), repr(manager.authenticate(issued.key)), caplog.text]
    for text in texts:
        assert secret not in text
        assert _secret(rotated.key) not in text
        assert hash_key(issued.key) not in text
    assert issued.record.prefix in caplog.text  # the public prefix is what identifies a key in logs
