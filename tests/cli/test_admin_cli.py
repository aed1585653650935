"""``modelward keys …`` and ``modelward users …`` against a SQLite gateway configuration, audited."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp
import pytest
from click.testing import CliRunner, Result

from modelward.cli.admin import parse_duration
from modelward.cli.main import cli
from modelward.core.errors import InputError
from modelward.gateway.audit_log import AuditLog, AuditRecord, SQLiteAuditStore, load_public_key, verify
from modelward.gateway.identity import SQLiteUserStore, UserManager
from modelward.gateway.keys import AuthReason, KeyManager, Role, SQLiteKeyStore
from modelward.supplychain.signing import generate_keypair

KEY_RE = re.compile(r"^mw_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")
_REAL_APPEND = AuditLog.append


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOGNAME", "tester")
    monkeypatch.delenv("MODELWARD_SIGNING_PASSPHRASE", raising=False)
    generate_keypair(tmp_path / "keys")
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model: {artifact: digits-cnn, public_keys: [keys/model.pub]}\n"
        "storage: {backend: sqlite, sqlite_path: data/gateway.db}\n"
        "audit: {sqlite_path: data/audit.db, signing_key: keys/signing-key.pem, checkpoint_every: 100}\n",
        encoding="utf-8",
    )
    return path


def _invoke(config: Path, *args: str, stdin: str | None = None) -> Result:
    group, *rest = args
    return CliRunner().invoke(cli, [group, *rest, "--config", str(config)], input=stdin)


def _records(config: Path) -> list[AuditRecord]:
    store = SQLiteAuditStore(config.parent / "data" / "audit.db", readonly=True)
    try:
        return list(store.records())
    finally:
        store.close()


def _keys(config: Path) -> KeyManager:
    return KeyManager(SQLiteKeyStore(config.parent / "data" / "gateway.db"))


def _users(config: Path) -> UserManager:
    return UserManager(SQLiteUserStore(config.parent / "data" / "gateway.db"))


def test_commands_are_registered() -> None:
    assert {"keys", "users"} <= set(cli.commands)
    result = CliRunner().invoke(cli, ["keys", "--help"])
    assert result.exit_code == 0 and "rotate" in result.output


def test_missing_config_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["keys", "list", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "no such gateway configuration file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_default_config_is_gateway_yaml_in_cwd(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(config.parent)
    result = CliRunner().invoke(cli, ["users", "list"])
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(config.parent / "keys")
    assert CliRunner().invoke(cli, ["users", "list"]).exit_code == 2


def test_key_created_once_to_stdout_and_audited(config: Path) -> None:
    result = _invoke(config, "keys", "create", "--principal", "svc-upload", "--role", "end-user")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert KEY_RE.fullmatch(key)
    assert "will not be shown again" in result.stderr and key not in result.stderr
    auth = _keys(config).authenticate(key)
    assert auth.ok and auth.record is not None and auth.record.role is Role.END_USER
    listing = _invoke(config, "keys", "list")
    assert listing.exit_code == 0 and auth.record.prefix in listing.stdout and key not in listing.stdout
    assert auth.record.key_hash not in listing.stdout
    records = _records(config)
    assert [(r.actor, r.action, r.outcome) for r in records] == [
        ("cli:tester", "create-key", "attempt"),
        ("cli:tester", "create-key", "ok"),
        ("cli:tester", "list-keys", "ok"),
    ]
    assert records[0].details == {"principal": "svc-upload", "role": "end-user", "scopes": [], "expires_in_s": None}
    assert records[1].details["prefix"] == auth.record.prefix
    assert key not in json.dumps([r.details for r in records])


def test_key_json_scopes_and_expiry(config: Path) -> None:
    before = time.time()
    result = _invoke(
        config,
        "keys",
        "create",
        "--principal",
        "mod-bot",
        "--role",
        "moderator",
        "--scope",
        "predict",
        "--scope",
        "read-decisions",
        "--expires-in",
        "30d",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert KEY_RE.fullmatch(data["key"])
    assert data["scopes"] == ["predict", "read-decisions"]
    assert data["expires_at"] == pytest.approx(before + 30 * 86400, abs=60)
    listed = json.loads(_invoke(config, "keys", "list", "--format", "json").stdout)
    assert [row["prefix"] for row in listed] == [data["prefix"]] and "key" not in listed[0]


def test_scope_outside_role_is_exit_2(config: Path) -> None:
    result = _invoke(config, "keys", "create", "--principal", "x", "--role", "end-user", "--scope", "manage-keys")
    assert result.exit_code == 2
    assert "may not hold scope" in result.stderr and "Traceback" not in result.output
    assert [(r.action, r.outcome) for r in _records(config)] == [("create-key", "attempt"), ("create-key", "error")]


def test_rotate_and_revoke(config: Path) -> None:
    first = _invoke(config, "keys", "create", "--principal", "svc", "--role", "auditor").stdout.strip()
    prefix = first.split("_")[1]
    rotated = _invoke(config, "keys", "rotate", prefix, "--grace", "0s")
    assert rotated.exit_code == 0, rotated.output
    second = rotated.stdout.strip()
    assert KEY_RE.fullmatch(second) and second != first
    manager = _keys(config)
    assert manager.authenticate(first).reason is AuthReason.EXPIRED
    assert manager.authenticate(second).ok
    revoked = _invoke(config, "keys", "revoke", second.split("_")[1], "--format", "json")
    assert revoked.exit_code == 0
    assert json.loads(revoked.stdout)["status"] == "revoked"
    assert json.loads(revoked.stdout)["prefix"] == second.split("_")[1] and second not in revoked.stdout
    assert manager.authenticate(second).reason is AuthReason.REVOKED
    missing = _invoke(config, "keys", "revoke", "000000000000")
    assert missing.exit_code == 2 and "no API key" in missing.stderr
    actions = [(r.action, r.outcome) for r in _records(config)]
    assert actions == [
        (action, outcome)
        for action, result in (
            ("create-key", "ok"),
            ("rotate-key", "ok"),
            ("revoke-key", "ok"),
            ("revoke-key", "error"),
        )
        for outcome in ("attempt", result)
    ]


def test_bad_duration_is_exit_2(config: Path) -> None:
    result = _invoke(config, "keys", "create", "--principal", "svc", "--role", "admin", "--expires-in", "soon")
    assert result.exit_code == 2 and "duration" in result.output
    assert parse_duration("5m") == 300 and parse_duration("2w") == 14 * 86400 and parse_duration("90") == 90
    with pytest.raises(InputError):
        parse_duration("-5m")


def test_user_lifecycle(config: Path) -> None:
    added = _invoke(config, "users", "add", "alice", "--role", "admin", "--password-stdin", stdin="a long passphrase\n")
    assert added.exit_code == 0, added.output
    secret = re.search(r"^totp secret: ([A-Z2-7]{32})$", added.stdout, re.M)
    uri = re.search(r"^otpauth uri: (otpauth://totp/\S+)$", added.stdout, re.M)
    assert secret is not None and uri is not None
    assert "issuer=modelward" in uri.group(1)
    assert "shown this once" in added.stderr and secret.group(1) not in added.stderr
    users = _users(config)
    assert users.verify_password("alice", "a long passphrase")
    assert users.verify_totp("alice", pyotp.TOTP(secret.group(1)).now())

    assert _invoke(config, "users", "add", "alice", "--role", "admin").exit_code == 2  # duplicate
    assert _invoke(config, "users", "set-role", "alice", "auditor").exit_code == 0
    assert _invoke(config, "users", "set-role", "bob", "auditor").exit_code == 2
    reset = _invoke(config, "users", "reset-totp", "alice", "--format", "json")
    assert reset.exit_code == 0
    new_secret = json.loads(reset.stdout)["totp_secret"]
    assert new_secret != secret.group(1)
    assert _invoke(config, "users", "disable", "alice").exit_code == 0
    listed = json.loads(_invoke(config, "users", "list", "--format", "json").stdout)
    assert listed == [
        {
            "name": "alice",
            "role": "auditor",
            "created_at": listed[0]["created_at"],
            "status": "disabled",
            "totp": True,
            "password": True,
        }
    ]
    text = _invoke(config, "users", "list").stdout
    assert "alice" in text and new_secret not in text
    # a disabled user gets no new key
    refused = _invoke(config, "keys", "create", "--principal", "alice", "--role", "auditor")
    assert refused.exit_code == 2 and "disabled" in refused.stderr
    # enabled again, she may hold keys again; an unknown name is a usage error
    assert _invoke(config, "users", "enable", "alice").exit_code == 0
    enabled = _users(config).get("alice")
    assert enabled is not None and not enabled.disabled
    assert _invoke(config, "users", "enable", "bob").exit_code == 2
    assert _invoke(config, "keys", "create", "--principal", "alice", "--role", "auditor").exit_code == 0

    records = _records(config)
    assert [(r.action, r.outcome) for r in records] == [
        ("add-user", "attempt"),
        ("add-user", "ok"),
        ("add-user", "attempt"),
        ("add-user", "error"),
        ("set-role", "attempt"),
        ("set-role", "ok"),
        ("set-role", "attempt"),
        ("set-role", "error"),
        ("reset-totp", "attempt"),
        ("reset-totp", "ok"),
        ("disable-user", "attempt"),
        ("disable-user", "ok"),
        ("list-users", "ok"),  # reads change nothing: no attempt record
        ("list-users", "ok"),
        ("create-key", "attempt"),
        ("create-key", "error"),
        ("enable-user", "attempt"),
        ("enable-user", "ok"),
        ("enable-user", "attempt"),
        ("enable-user", "error"),
        ("create-key", "attempt"),
        ("create-key", "ok"),
    ]
    assert records[4].details == {"name": "alice", "role": "auditor"}  # what was asked, before anything changed
    assert records[5].details == {"name": "alice", "role": "auditor", "previous_role": "admin"}
    dumped = json.dumps([r.details for r in records])
    assert secret.group(1) not in dumped and new_secret not in dumped and "passphrase" not in dumped


def test_empty_password_stdin_is_exit_2(config: Path) -> None:
    result = _invoke(config, "users", "add", "alice", "--role", "admin", "--password-stdin", stdin="\n")
    assert result.exit_code == 2 and "no password" in result.stderr


def test_key_for_user_warns_when_role_differs(config: Path) -> None:
    assert _invoke(config, "users", "add", "carol", "--role", "moderator").exit_code == 0
    result = _invoke(config, "keys", "create", "--principal", "carol", "--role", "admin")
    assert result.exit_code == 0 and "role moderator" in result.stderr


def test_audit_log_of_the_cli_verifies(config: Path) -> None:
    _invoke(config, "users", "add", "dave", "--role", "ml-engineer")
    _invoke(config, "keys", "create", "--principal", "dave", "--role", "ml-engineer")
    public = load_public_key(config.parent / "keys" / "signing-key.pub.pem")
    result = verify(config.parent / "data" / "audit.db", public)
    assert result.valid and result.records == 4 and result.checkpoints >= 1  # attempt and outcome of each change


def test_totp_secrets_sealed_with_the_configured_key(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    from modelward.gateway.totp_secrets import TotpSecretBox

    config.write_text(
        config.read_text(encoding="utf-8") + "auth: {totp_encryption_key: 'env:MW_TEST_TOTP_KEY'}\n", encoding="utf-8"
    )
    monkeypatch.delenv("MW_TEST_TOTP_KEY", raising=False)
    unset = _invoke(config, "users", "add", "ada", "--role", "admin")
    assert unset.exit_code == 2 and "MW_TEST_TOTP_KEY is not set" in unset.stderr and "Traceback" not in unset.output
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("MW_TEST_TOTP_KEY", key)
    added = _invoke(config, "users", "add", "ada", "--role", "admin", "--format", "json")
    assert added.exit_code == 0, added.output
    secret = json.loads(added.stdout)["totp_secret"]
    stored = SQLiteUserStore(config.parent / "data" / "gateway.db").get("ada")
    assert stored is not None and stored.totp_secret is not None and secret not in stored.totp_secret
    sealed = UserManager(SQLiteUserStore(config.parent / "data" / "gateway.db"), secrets=TotpSecretBox(key))
    assert sealed.verify_totp("ada", pyotp.TOTP(secret).now())


def _log_refuses(after: int) -> Callable[..., Any]:
    """``AuditLog.append`` refusing records from the ``after``-th on, as a full disk or a locked database would."""
    calls = [0]

    def append(log: AuditLog, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] > after:
            raise sqlite3.OperationalError("disk I/O error")
        return _REAL_APPEND(log, *args, **kwargs)

    return append


def test_no_change_is_made_when_the_log_cannot_record_its_attempt(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AuditLog, "append", _log_refuses(after=0))
    result = _invoke(config, "keys", "create", "--principal", "eve", "--role", "admin")
    assert result.exit_code == 2, result.output
    assert "audit log cannot be written (OperationalError); nothing was changed" in result.stderr
    assert not KEY_RE.search(result.stdout) and "Traceback" not in result.output
    assert _keys(config).list() == []  # no key exists that the log did not see


def test_a_change_whose_outcome_cannot_be_recorded_says_so(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AuditLog, "append", _log_refuses(after=1))
    result = _invoke(config, "users", "add", "frank", "--role", "auditor")
    assert result.exit_code == 2 and "the change was made (its attempt is in the log)" in result.stderr
    monkeypatch.undo()
    assert [(r.action, r.outcome) for r in _records(config)] == [("add-user", "attempt")]
    assert _users(config).get("frank") is not None  # made, and the log saw it asked for first
