"""Users, TOTP with replay protection, argon2id passwords, principals and authorization."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from argon2 import PasswordHasher

from modelward.core.errors import InputError
from modelward.gateway.identity import (
    Principal,
    SQLiteUserStore,
    UserManager,
    UserRecord,
    authorize,
    principal_from_key,
)
from modelward.gateway.keys import Action, KeyManager, Role, SQLiteKeyStore

T0 = 1_700_000_000.0  # a step boundary is irrelevant: tests move by whole 30 s steps
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"  # noqa: S105 - test fixture value


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(clock: Clock) -> UserManager:
    return UserManager(SQLiteUserStore(), clock, hasher=CHEAP)


def _code(secret: str, when: float) -> str:
    return pyotp.TOTP(secret).at(when)


# --- names and store ---------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a" * 65, "al ice", "bob/x", "é", "a;drop"])
def test_bad_names_are_refused(users: UserManager, name: str) -> None:
    with pytest.raises(InputError):
        users.add(name, Role.ADMIN)


def test_good_names_pass(users: UserManager) -> None:
    for name in ("a", "alice.smith@example.org", "ops-bot_1", "x" * 64):
        assert users.add(name, Role.AUDITOR).user.name == name


def test_store_round_trip_and_errors() -> None:
    store = SQLiteUserStore()
    first, second = "hash-1", "hash-2"
    record = UserRecord("alice", Role.MODERATOR, 1.5, totp_secret="S" * 32, password_hash=first)
    store.insert(record)
    assert store.get("alice") == record
    assert store.get("nobody") is None
    with pytest.raises(InputError, match="already exists"):
        store.insert(record)
    with pytest.raises(InputError, match="no user"):
        store.update("nobody", role=Role.ADMIN)
    store.update("alice", role=Role.ADMIN, disabled=True, password_hash=second)
    got = store.get("alice")
    assert got is not None and got.role is Role.ADMIN and got.disabled and got.password_hash == second
    assert got.totp_secret == "S" * 32
    assert [u.name for u in store.all()] == ["alice"]
    store.close()


def test_claim_totp_step_only_grows() -> None:
    store = SQLiteUserStore()
    store.insert(UserRecord("alice", Role.ADMIN, 0.0))
    assert store.claim_totp_step("alice", 10)
    assert not store.claim_totp_step("alice", 10)
    assert not store.claim_totp_step("alice", 9)
    assert store.claim_totp_step("alice", 11)
    assert not store.claim_totp_step("nobody", 99)
    got = store.get("alice")
    assert got is not None and got.last_totp_step == 11


def test_claim_is_atomic_across_connections_sharing_a_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    keys = SQLiteKeyStore(path)  # the same database file holds keys and users, in separate tables
    stores = [SQLiteUserStore(path) for _ in range(4)]
    stores[0].insert(UserRecord("alice", Role.ADMIN, 0.0))
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(stores))

    def claim(store: SQLiteUserStore) -> None:
        barrier.wait()
        won = store.claim_totp_step("alice", 42)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert keys.all() == []
    for s in stores:
        s.close()
    keys.close()


def test_secrets_are_not_in_repr(users: UserManager) -> None:
    enrolled = users.add("alice", Role.ADMIN, password=PASSWORD)
    stored = users.get("alice")
    assert stored is not None and stored.password_hash is not None
    for text in (repr(enrolled), repr(stored)):
        assert enrolled.totp_secret not in text
        assert stored.password_hash not in text


# --- enrolment and TOTP ------------------------------------------------------


def test_add_returns_secret_and_provisioning_uri(users: UserManager) -> None:
    enrolled = users.add("alice", "admin")
    assert enrolled.user.role is Role.ADMIN
    assert len(enrolled.totp_secret) == 32
    uri = urlparse(enrolled.provisioning_uri)
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    query = parse_qs(uri.query)
    assert query["secret"] == [enrolled.totp_secret]
    assert query["issuer"] == ["modelward"]
    assert "alice" in uri.path
    with pytest.raises(InputError, match="already exists"):
        users.add("alice", Role.ADMIN)
    with pytest.raises(InputError, match="unknown role"):
        users.add("bob", "root")


def test_totp_valid_once_then_replay_refused(users: UserManager, clock: Clock) -> None:
    secret = users.add("alice", Role.ADMIN).totp_secret
    code = _code(secret, clock.now)
    assert users.verify_totp("alice", code)
    assert not users.verify_totp("alice", code)  # replay, same step


def test_totp_window(users: UserManager, clock: Clock) -> None:
    secret = users.add("alice", Role.ADMIN).totp_secret
    previous = _code(secret, clock.now - 30)
    too_old = _code(secret, clock.now - 60)
    assert too_old != _code(secret, clock.now) and too_old != previous
    assert not users.verify_totp("alice", too_old)
    assert users.verify_totp("alice", previous)  # one step of drift is accepted by default
    # once a later step was used, an older (still in-window) code is refused too
    clock.now += 30
    assert not users.verify_totp("alice", previous)
    assert users.verify_totp("alice", _code(secret, clock.now))


def test_totp_window_zero(clock: Clock) -> None:
    strict = UserManager(SQLiteUserStore(), clock, valid_window=0, hasher=CHEAP)
    secret = strict.add("alice", Role.ADMIN).totp_secret
    assert not strict.verify_totp("alice", _code(secret, clock.now - 30))
    assert strict.verify_totp("alice", _code(secret, clock.now))
    with pytest.raises(InputError):
        UserManager(SQLiteUserStore(), clock, valid_window=-1)


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12345a", " 123456", "１２３４５６"])
def test_totp_malformed_codes_refused(users: UserManager, code: str) -> None:
    users.add("alice", Role.ADMIN)
    assert not users.verify_totp("alice", code)


def test_totp_unknown_and_disabled_users_refused(users: UserManager, clock: Clock) -> None:
    assert not users.verify_totp("nobody", "123456")
    secret = users.add("alice", Role.ADMIN).totp_secret
    users.disable("alice")
    assert not users.verify_totp("alice", _code(secret, clock.now))


def test_reset_totp_replaces_secret(users: UserManager, clock: Clock) -> None:
    old = users.add("alice", Role.ADMIN).totp_secret
    new = users.reset_totp("alice").totp_secret
    assert new != old
    clock.now += 30
    assert not users.verify_totp("alice", _code(old, clock.now))
    assert users.verify_totp("alice", _code(new, clock.now))
    with pytest.raises(InputError, match="no user"):
        users.reset_totp("nobody")


# --- passwords ---------------------------------------------------------------


def test_password_is_argon2id_and_verifies(users: UserManager) -> None:
    users.add("alice", Role.ADMIN, password=PASSWORD)
    stored = users.get("alice")
    assert stored is not None and stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert users.verify_password("alice", PASSWORD)
    assert not users.verify_password("alice", PASSWORD[:-1] + "x")
    assert not users.verify_password("nobody", PASSWORD)
    users.add("bob", Role.ADMIN)  # no password at all
    assert not users.verify_password("bob", "")
    users.disable("alice")
    assert not users.verify_password("alice", PASSWORD)


def test_short_password_refused(users: UserManager) -> None:
    with pytest.raises(InputError, match="password"):
        users.add("alice", Role.ADMIN, password=PASSWORD[:5])
    assert users.get("alice") is None


def test_password_rehashed_when_parameters_change(clock: Clock) -> None:
    store = SQLiteUserStore()
    UserManager(store, clock, hasher=CHEAP).add("alice", Role.ADMIN, password=PASSWORD)
    before = store.get("alice")
    assert before is not None and before.password_hash is not None and "m=8," in before.password_hash
    stronger = UserManager(store, clock, hasher=PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    assert stronger.verify_password("alice", PASSWORD)
    after = store.get("alice")
    assert after is not None and after.password_hash is not None
    assert "m=16," in after.password_hash and after.password_hash != before.password_hash
    assert stronger.verify_password("alice", PASSWORD)


def test_set_password(users: UserManager) -> None:
    users.add("alice", Role.ADMIN)
    users.set_password("alice", "a much longer phrase")
    assert users.verify_password("alice", "a much longer phrase")


# --- roles, principals, authorization ----------------------------------------


def test_set_role_and_disable(users: UserManager) -> None:
    users.add("alice", Role.ADMIN)
    assert users.set_role("alice", "auditor").role is Role.AUDITOR
    assert users.disable("alice").disabled
    assert not users.enable("alice").disabled
    with pytest.raises(InputError):
        users.enable("nobody")
    with pytest.raises(InputError):
        users.set_role("nobody", Role.ADMIN)
    with pytest.raises(InputError):
        users.set_role("alice", "superuser")
    assert [u.name for u in users.list()] == ["alice"]


def test_principal_from_key_follows_user_role(users: UserManager) -> None:
    keys = KeyManager(SQLiteKeyStore())
    users.add("alice", Role.ADMIN)
    record = keys.create("alice", Role.ADMIN).record
    principal = principal_from_key(record, users.store)
    assert principal is not None
    assert (principal.role, principal.via, principal.key_prefix) == (Role.ADMIN, "api-key", record.prefix)
    assert Action.MANAGE_KEYS in principal.scopes and not principal.mfa_from_token

    users.set_role("alice", Role.END_USER)  # demoted: the old admin key loses its privileges
    demoted = principal_from_key(record, users.store)
    assert demoted is not None and demoted.role is Role.END_USER
    assert authorize(demoted, Action.MANAGE_KEYS, mfa_code=None, users=users).reason == "forbidden"
    assert authorize(demoted, Action.PREDICT, mfa_code=None, users=users).reason == "forbidden"  # key lacks scope

    users.disable("alice")
    assert principal_from_key(record, users.store) is None


def test_principal_for_non_user_keeps_key_role(users: UserManager) -> None:
    record = KeyManager(SQLiteKeyStore()).create("service-42", Role.MODERATOR, scopes=[Action.PREDICT]).record
    principal = principal_from_key(record, users.store)
    assert principal is not None and principal.role is Role.MODERATOR
    assert principal.scopes == {Action.PREDICT}
    assert principal_from_key(record, None) == principal


def test_authorize_decisions(users: UserManager, clock: Clock) -> None:
    secret = users.add("alice", Role.ADMIN).totp_secret
    admin = Principal("alice", Role.ADMIN, frozenset({Action.MANAGE_KEYS, Action.READ_METRICS}), "api-key", "p")
    assert authorize(admin, Action.READ_METRICS, mfa_code=None, users=users).allowed  # no MFA needed
    assert authorize(admin, Action.CHANGE_ROLES, mfa_code=None, users=users).reason == "forbidden"  # not in scopes
    assert authorize(admin, Action.PREDICT, mfa_code=None, users=users).reason == "forbidden"
    assert authorize(admin, Action.MANAGE_KEYS, mfa_code=None, users=users).reason == "mfa_required"
    assert authorize(admin, Action.MANAGE_KEYS, mfa_code="000000", users=None).reason == "mfa_invalid"
    wrong = "000000" if _code(secret, clock.now) != "000000" else "111111"
    assert authorize(admin, Action.MANAGE_KEYS, mfa_code=wrong, users=users).reason == "mfa_invalid"
    code = _code(secret, clock.now)
    ok = authorize(admin, Action.MANAGE_KEYS, mfa_code=code, users=users)
    assert ok.allowed and ok.reason == "ok"
    assert authorize(admin, Action.MANAGE_KEYS, mfa_code=code, users=users).reason == "mfa_invalid"  # replayed


def test_authorize_mfa_from_token_and_unenrolled(users: UserManager) -> None:
    scopes = frozenset({Action.DEPLOY_MODEL, Action.VIEW_MODELS})
    via_token = Principal("eve", Role.ML_ENGINEER, scopes, "jwt", None, mfa_from_token=True)
    assert authorize(via_token, Action.DEPLOY_MODEL, mfa_code=None, users=users).allowed
    plain = Principal("eve", Role.ML_ENGINEER, scopes, "jwt", None, mfa_from_token=False)
    assert authorize(plain, Action.VIEW_MODELS, mfa_code=None, users=users).allowed
    assert authorize(plain, Action.DEPLOY_MODEL, mfa_code="123456", users=users).reason == "mfa_invalid"  # no such user


def test_new_actions_role_mapping() -> None:
    from modelward.gateway.keys import MFA_REQUIRED, ROLE_ACTIONS

    holders = {r for r, actions in ROLE_ACTIONS.items() if Action.VIEW_MODELS in actions}
    assert holders == {Role.ML_ENGINEER, Role.AUDITOR}
    holders = {r for r, actions in ROLE_ACTIONS.items() if Action.READ_METRICS in actions}
    assert holders == {Role.AUDITOR, Role.ADMIN}
    assert not {Action.VIEW_MODELS, Action.READ_METRICS} & MFA_REQUIRED
