"""``modelward audit-log verify``: check that a gateway audit log was not tampered with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from modelward.core.errors import EXIT_FINDINGS, EXIT_USAGE, InputError, ModelwardError


def register(cli: click.Group) -> None:
    """Add the ``audit-log`` command group to the main command."""

    @cli.group("audit-log")
    def audit_log() -> None:
        """Inspect the gateway's tamper-evident audit log."""

    @audit_log.command("verify")
    @click.argument("path", type=click.Path(path_type=Path), required=False)
    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        help="Verify the log of this gateway configuration instead of PATH (SQLite or PostgreSQL).",
    )
    @click.option("--public-key", type=click.Path(path_type=Path), help="Ed25519 public key (PEM) of the checkpoints.")
    @click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def verify_command(path: Path | None, config_path: Path | None, public_key: Path | None, fmt: str) -> None:
        """Check the hash chain and signed checkpoints. Exit 0 valid, 1 tampered, 2 bad input."""
        from modelward.gateway.audit_log import load_public_key, verify

        try:
            if (path is None) == (config_path is None):
                raise InputError("give the audit log's PATH or --config GATEWAY.yaml (one of them)")
            key = load_public_key(public_key) if public_key is not None else None
            if config_path is not None:
                result = _verify_configured(config_path, key)
                path = config_path
            elif path is not None:
                result = verify(path, key)
        except ModelwardError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_USAGE) from exc
        if fmt == "json":
            click.echo(json.dumps(result.to_dict(), indent=2))
        elif result.valid:
            click.echo(f"valid: {path}: {result.records} records, {result.checkpoints} checkpoints")
        else:
            click.echo(f"TAMPERED: {path}: first bad record {result.first_bad_seq}: {result.reason}")
        if fmt != "json":
            for warning in result.warnings:
                click.echo(f"warning: {warning}")
        if not result.valid:
            raise SystemExit(EXIT_FINDINGS)


def _verify_configured(config_path: Path, key: Any) -> Any:
    """Verify the audit store a gateway configuration names (opened read-only for SQLite)."""
    from modelward.gateway.audit_log import verify, verify_store
    from modelward.gateway.config import load_config, resolve_secret

    config = load_config(config_path)
    if config.storage.backend == "sqlite":
        return verify(config.path(config.audit.sqlite_path), key)
    from modelward.gateway.postgres import PostgresAuditStore

    store = PostgresAuditStore(
        resolve_secret(config.storage.postgres_url or "", "storage.postgres_url", config.base_dir)
    )
    try:
        return verify_store(store, key)
    finally:
        store.close()
