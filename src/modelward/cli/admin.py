"""``modelward keys …`` and ``modelward users …``: administer the gateway's API keys and users from a shell.

Stores come from the gateway configuration file, so the CLI and a running gateway see the same keys and
users. Every command, reads included, appends a record to the gateway's audit log (actor ``cli:<OS user>``),
so what an operator does at the console is as accountable as what a caller does over HTTP; a command that
changes something writes its ``attempt`` first and changes nothing when the log cannot take it.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelward.core.errors import EXIT_USAGE, InputError, ModelwardError
from modelward.gateway.keys import Action, Role, describe_key

if TYPE_CHECKING:
    from modelward.gateway.audit_log import AuditLog
    from modelward.gateway.identity import EnrolledUser, UserManager, UserRecord
    from modelward.gateway.keys import KeyManager

ROLES = [r.value for r in Role]
ACTIONS = [a.value for a in Action]
_DURATION_RE = re.compile(r"^([0-9]{1,9})([smhdw]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The name of the environment variable holding the audit key's passphrase (not a secret itself).
PASSPHRASE_ENV = "MODELWARD_SIGNING_PASSPHRASE"  # noqa: S105  # nosec B105


def parse_duration(value: str) -> float:
    """Seconds in ``30d``, ``5m``, ``12h``, ``90s``, ``2w`` or plain ``300``; an :class:`InputError` otherwise."""
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None:
        raise InputError(f"{value!r} is not a duration such as 90s, 5m, 12h, 30d or 2w")
    return float(int(match.group(1)) * _UNIT_S[match.group(2)])


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except InputError as exc:
        raise click.BadParameter(exc.message) from None


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):
        user = "unknown"
    return f"cli:{user or 'unknown'}"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Session:
    """Open stores, managers and the audit log for one command."""

    keys: KeyManager
    users: UserManager
    audit: AuditLog
    actor: str


@contextmanager
def _session(config_path: Path) -> Iterator[_Session]:
    from modelward.gateway.audit_log import AuditLog
    from modelward.gateway.config import load_config, open_stores, totp_secret_box
    from modelward.gateway.identity import UserManager
    from modelward.gateway.keys import KeyManager
    from modelward.supplychain.signing import load_private_key

    config = load_config(config_path)
    signing_key = None
    if config.audit.signing_key is not None:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        signing_key = load_private_key(
            config.path(config.audit.signing_key), passphrase.encode() if passphrase else None
        )
    stores = open_stores(config)
    try:
        audit = AuditLog(store=stores.audit, signing_key=signing_key, checkpoint_every=config.audit.checkpoint_every)
        users = UserManager(stores.users, valid_window=config.auth.totp_valid_window, secrets=totp_secret_box(config))
        try:
            yield _Session(KeyManager(stores.keys), users, audit, _actor())
        finally:
            _checkpoint(audit)
    finally:
        stores.close()


def _checkpoint(audit: AuditLog) -> None:
    """Anchor this command's records under a signature now, success or not; say so when that fails."""
    try:
        audit.checkpoint()
    except Exception as exc:  # the log's storage refused it: the records stay chained, only not yet anchored
        click.echo(f"warning: no audit checkpoint written ({type(exc).__name__})", err=True)


def _append(session: _Session, action: str, outcome: str, details: Mapping[str, Any], consequence: str) -> None:
    """One audit record, or a one-line error saying what became of the command when the log refuses it."""
    try:
        session.audit.append(session.actor, action, outcome, dict(details))
    except ModelwardError:
        raise
    except Exception as exc:  # sqlite3 or psycopg: the store could not take the record
        raise InputError(f"the audit log cannot be written ({type(exc).__name__}); {consequence}") from None


def _run(
    config_path: Path,
    action: str,
    body: Callable[[_Session], Mapping[str, Any]],
    *,
    change: Mapping[str, Any] | None = None,
) -> None:
    """Run ``body`` with open stores and audit it; user errors become one line on stderr and exit 2.

    A command that changes something passes ``change`` (what it was asked to do): an ``attempt`` record of
    it is written first, and when the log cannot take it nothing is changed, so no change is ever made that
    the log did not see. The outcome (``ok`` or ``error``) follows, as for the gateway's HTTP admin actions.
    """
    try:
        with _session(config_path) as session:
            if change is not None:
                _append(session, action, "attempt", change, "nothing was changed")
            try:
                details = body(session)
            except ModelwardError as exc:
                _append(session, action, "error", {"error": exc.message[:200]}, "the command failed as well")
                raise
            done = "the change was made (its attempt is in the log)" if change is not None else "the command ran"
            _append(session, action, "ok", details, done)
    except ModelwardError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None


def _user_dict(user: UserRecord) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role.value,
        "created_at": user.created_at,
        "status": "disabled" if user.disabled else "active",
        "totp": user.totp_secret is not None,
        "password": user.password_hash is not None,
    }


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    def cell(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(value) or "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return _when(value)
        return "-" if value is None else str(value)

    table = [columns] + [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        click.echo("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())


def _print_enrolment(enrolled: EnrolledUser, fmt: str) -> None:
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "name": enrolled.user.name,
                    "role": enrolled.user.role.value,
                    "totp_secret": enrolled.totp_secret,
                    "provisioning_uri": enrolled.provisioning_uri,
                },
                indent=2,
            )
        )
    else:
        click.echo(f"totp secret: {enrolled.totp_secret}")
        click.echo(f"otpauth uri: {enrolled.provisioning_uri}")
    click.echo(
        f"warning: the TOTP secret of {enrolled.user.name} is shown this once; add it to an authenticator app now",
        err=True,
    )


_config_opt = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("gateway.yaml"),
    show_default=True,
    help="Gateway configuration file (its stores are the ones changed).",
)
_format_opt = click.option(
    "--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)


def register(cli: click.Group) -> None:
    """Add the ``keys`` and ``users`` command groups to the main command."""
    _register_keys(cli)
    _register_users(cli)


def _register_keys(cli: click.Group) -> None:
    @cli.group("keys")
    def keys() -> None:
        """Create, list, rotate and revoke the gateway's API keys."""

    @keys.command("create")
    @_config_opt
    @click.option("--principal", required=True, help="Who the key is for (a user name or a service name).")
    @click.option("--role", required=True, type=click.Choice(ROLES))
    @click.option(
        "--scope",
        "scopes",
        multiple=True,
        type=click.Choice(ACTIONS),
        help="Narrow the key to these actions (repeatable; default: all of the role's).",
    )
    @click.option("--expires-in", callback=_duration, help="Lifetime such as 30d, 12h or 90m (default: none).")
    @_format_opt
    def keys_create(
        config_path: Path, principal: str, role: str, scopes: tuple[str, ...], expires_in: float | None, fmt: str
    ) -> None:
        """Create an API key; the key is printed once, to standard output."""

        def body(session: _Session) -> Mapping[str, Any]:
            user = session.users.get(principal)
            if user is not None and user.disabled:
                raise InputError(f"user {principal!r} is disabled; enable or re-create the user first")
            if user is not None and user.role.value != role:
                click.echo(
                    f"warning: {principal} is a user with role {user.role.value}; that role, not {role}, applies",
                    err=True,
                )
            issued = session.keys.create(
                principal, Role(role), scopes=[Action(s) for s in scopes] or None, ttl_s=expires_in
            )
            info = describe_key(issued.record, time.time())
            if fmt == "json":
                click.echo(json.dumps({"key": issued.key, **info}, indent=2))
            else:
                click.echo(issued.key)
            click.echo(
                f"created key {issued.record.prefix} for {principal} ({role}); "
                "warning: the key will not be shown again, store it now",
                err=True,
            )
            return {k: info[k] for k in ("prefix", "principal", "role", "scopes", "expires_at")}

        _run(
            config_path,
            "create-key",
            body,
            change={"principal": principal, "role": role, "scopes": list(scopes), "expires_in_s": expires_in},
        )

    @keys.command("list")
    @_config_opt
    @_format_opt
    def keys_list(config_path: Path, fmt: str) -> None:
        """List every key's metadata (no key can be shown: only hashes are stored)."""

        def body(session: _Session) -> Mapping[str, Any]:
            now = time.time()
            rows = [describe_key(r, now) for r in session.keys.list()]
            if fmt == "json":
                click.echo(json.dumps(rows, indent=2))
            else:
                columns = ["prefix", "principal", "role", "scopes", "status", "created_at", "expires_at", "last_used"]
                _print_table(rows, columns)
            return {"count": len(rows)}

        _run(config_path, "list-keys", body)

    @keys.command("rotate")
    @_config_opt
    @click.argument("prefix")
    @click.option(
        "--grace", callback=_duration, default="5m", show_default=True, help="How long the old key still works."
    )
    @_format_opt
    def keys_rotate(config_path: Path, prefix: str, grace: float, fmt: str) -> None:
        """Issue a successor of key PREFIX (printed once); the old key expires after the grace period."""

        def body(session: _Session) -> Mapping[str, Any]:
            issued = session.keys.rotate(prefix, grace_s=grace)
            info = describe_key(issued.record, time.time())
            if fmt == "json":
                click.echo(json.dumps({"key": issued.key, "replaces": prefix, **info}, indent=2))
            else:
                click.echo(issued.key)
            click.echo(
                f"key {prefix} rotated to {issued.record.prefix}; the old key works for {grace:.0f} s more; "
                "warning: the new key will not be shown again",
                err=True,
            )
            return {"prefix": prefix, "new_prefix": issued.record.prefix, "grace_s": grace}

        _run(config_path, "rotate-key", body, change={"prefix": prefix, "grace_s": grace})

    @keys.command("revoke")
    @_config_opt
    @click.argument("prefix")
    @_format_opt
    def keys_revoke(config_path: Path, prefix: str, fmt: str) -> None:
        """Refuse key PREFIX from now on."""

        def body(session: _Session) -> Mapping[str, Any]:
            record = session.keys.revoke(prefix)
            if fmt == "json":
                click.echo(json.dumps(describe_key(record, time.time()), indent=2))
            else:
                click.echo(f"revoked key {prefix}")
            return {"prefix": prefix}

        _run(config_path, "revoke-key", body, change={"prefix": prefix})


def _register_users(cli: click.Group) -> None:
    @cli.group("users")
    def users() -> None:
        """Add users, change their roles, disable and enable them, and reset their TOTP second factor."""

    @users.command("add")
    @_config_opt
    @click.argument("name")
    @click.option("--role", required=True, type=click.Choice(ROLES))
    @click.option("--password-stdin", is_flag=True, help="Read a password (first line) from standard input.")
    @_format_opt
    def users_add(config_path: Path, name: str, role: str, password_stdin: bool, fmt: str) -> None:
        """Add user NAME with a new TOTP secret, printed once with its otpauth:// URI."""
        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                click.echo("error: --password-stdin given but standard input held no password", err=True)
                raise SystemExit(EXIT_USAGE)

        def body(session: _Session) -> Mapping[str, Any]:
            enrolled = session.users.add(name, role, password=password)
            _print_enrolment(enrolled, fmt)
            return {"name": name, "role": role, "password": password is not None}

        _run(config_path, "add-user", body, change={"name": name, "role": role, "password": password is not None})

    @users.command("list")
    @_config_opt
    @_format_opt
    def users_list(config_path: Path, fmt: str) -> None:
        """List users with their role and status (no secrets)."""

        def body(session: _Session) -> Mapping[str, Any]:
            rows = [_user_dict(u) for u in session.users.list()]
            if fmt == "json":
                click.echo(json.dumps(rows, indent=2))
            else:
                _print_table(rows, ["name", "role", "status", "totp", "password", "created_at"])
            return {"count": len(rows)}

        _run(config_path, "list-users", body)

    @users.command("set-role")
    @_config_opt
    @click.argument("name")
    @click.argument("role", type=click.Choice(ROLES))
    def users_set_role(config_path: Path, name: str, role: str) -> None:
        """Give user NAME a new ROLE; keys they hold follow at once."""

        def body(session: _Session) -> Mapping[str, Any]:
            before = session.users.get(name)
            user = session.users.set_role(name, role)
            click.echo(f"user {name}: role {user.role.value}")
            return {"name": name, "role": role, "previous_role": before.role.value if before else None}

        _run(config_path, "set-role", body, change={"name": name, "role": role})

    @users.command("disable")
    @_config_opt
    @click.argument("name")
    def users_disable(config_path: Path, name: str) -> None:
        """Refuse user NAME from now on, with any key, token or code."""

        def body(session: _Session) -> Mapping[str, Any]:
            session.users.disable(name)
            click.echo(f"user {name}: disabled")
            return {"name": name}

        _run(config_path, "disable-user", body, change={"name": name})

    @users.command("enable")
    @_config_opt
    @click.argument("name")
    def users_enable(config_path: Path, name: str) -> None:
        """Accept user NAME again after `users disable`; their unrevoked, unexpired keys work again."""

        def body(session: _Session) -> Mapping[str, Any]:
            session.users.enable(name)
            click.echo(f"user {name}: enabled")
            return {"name": name}

        _run(config_path, "enable-user", body, change={"name": name})

    @users.command("reset-totp")
    @_config_opt
    @click.argument("name")
    @_format_opt
    def users_reset_totp(config_path: Path, name: str, fmt: str) -> None:
        """Give user NAME a new TOTP secret (printed once); the old one stops working."""

        def body(session: _Session) -> Mapping[str, Any]:
            _print_enrolment(session.users.reset_totp(name), fmt)
            return {"name": name}

        _run(config_path, "reset-totp", body, change={"name": name})
