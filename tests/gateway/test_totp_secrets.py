"""TOTP secrets sealed at rest: the user store holds ciphertext, codes still verify, keys are checked."""

from __future__ import annotations

import logging

import pyotp
import pytest
from cryptography.fernet import Fernet

from modelward.core.errors import InputError
from modelward.gateway.identity import SQLiteUserStore, UserManager
from modelward.gateway.keys import Role
from modelward.gateway.totp_secrets import TotpSecretBox, UnreadableSecret

T0 = 1_750_000_000.0


def _code(secret: str, when: float) -> str:
    return str(pyotp.TOTP(secret).at(when))


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


def _manager(store: SQLiteUserStore, key: str | None, now: list[float]) -> UserManager:
    return UserManager(store, lambda: now[0], secrets=TotpSecretBox(key))


def test_the_store_holds_only_ciphertext_and_codes_verify(key: str) -> None:
    store = SQLiteUserStore()
    now = [T0]
    users = _manager(store, key, now)
    secret = users.add("ada", Role.ADMIN).totp_secret
    stored = store.get("ada")
    assert stored is not None and stored.totp_secret is not None
    assert stored.totp_secret.startswith("fernet:") and secret not in stored.totp_secret
    assert users.verify_totp("ada", _code(secret, now[0]))
    reset = users.reset_totp("ada").totp_secret
    again = store.get("ada")
    assert again is not None and again.totp_secret is not None and reset not in again.totp_secret
    now[0] += 30
    assert users.verify_totp("ada", _code(reset, now[0]))
    assert not users.verify_totp("ada", _code(secret, now[0]))


def test_without_the_key_or_with_another_no_code_is_accepted_and_the_log_says_why(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteUserStore()
    now = [T0]
    secret = _manager(store, key, now).add("ada", Role.ADMIN).totp_secret
    with caplog.at_level(logging.ERROR, logger="modelward.gateway.identity"):
        assert not _manager(store, None, now).verify_totp("ada", _code(secret, now[0]))
        assert not _manager(store, Fernet.generate_key().decode(), now).verify_totp("ada", _code(secret, now[0]))
    messages = [r.getMessage() for r in caplog.records]
    assert any("configure auth.totp_encryption_key" in m for m in messages)
    assert any("another key" in m for m in messages)
    assert all(secret not in m for m in messages)
    assert _manager(store, key, now).verify_totp("ada", _code(secret, now[0]))  # the right key still works


def test_secrets_stored_before_a_key_was_set_are_sealed_on_first_use(key: str) -> None:
    store = SQLiteUserStore()
    now = [T0]
    secret = _manager(store, None, now).add("ada", Role.ADMIN).totp_secret
    plain = store.get("ada")
    assert plain is not None and plain.totp_secret == secret
    assert _manager(store, key, now).verify_totp("ada", _code(secret, now[0]))
    sealed = store.get("ada")
    assert sealed is not None and sealed.totp_secret is not None and sealed.totp_secret.startswith("fernet:")
    now[0] += 30
    assert _manager(store, key, now).verify_totp("ada", _code(secret, now[0]))


def test_a_malformed_key_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="Fernet key"):
        TotpSecretBox("not-a-key")
    with pytest.raises(UnreadableSecret):
        TotpSecretBox().open("fernet:abc")
    assert TotpSecretBox().open("JBSWY3DPEHPK3PXP") == "JBSWY3DPEHPK3PXP"
