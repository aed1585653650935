"""``modelward serve``: run the protective gateway (uvicorn) from one configuration file."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Any

import click

DEFAULT_WORK_DIR = Path(".modelward-gateway")


def register(cli: click.Group) -> None:
    """Add the ``serve`` command to the main command."""

    @cli.command("serve")
    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        help="Gateway configuration (YAML). Without it: the scenario's moderation model on the embedded default.",
    )
    @click.option("--host", help="Listen address (overrides server.host).")
    @click.option("--port", type=click.IntRange(0, 65535), help="Listen port (overrides server.port).")
    @click.option(
        "--work-dir",
        type=click.Path(path_type=Path),
        default=DEFAULT_WORK_DIR,
        show_default=True,
        help="Where the default gateway keeps its signed model, keys and databases (no --config only).",
    )
    @click.option(
        "--model-cache",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder whose .modelward-cache/ holds the trained scenario model to reuse (no --config only).",
    )
    @click.option("--prepare-only", is_flag=True, help="Create the default gateway's files, print their paths, exit.")
    @click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def serve(
        config_path: Path | None,
        host: str | None,
        port: int | None,
        work_dir: Path,
        model_cache: Path | None,
        prepare_only: bool,
        fmt: str,
    ) -> None:
        """Serve a signed model behind authentication, rate limits, validation, hardening and an audit log."""
        from modelward.core.errors import InputError
        from modelward.gateway.config import load_config

        if config_path is None:
            config_path = _prepare_default(work_dir, model_cache)
        config = load_config(config_path)
        if prepare_only:
            paths = _paths(config, config_path)
            if fmt == "json":
                click.echo(json.dumps(paths, indent=2))
            else:
                for name, value in paths.items():
                    click.echo(f"{name}: {value}")
            return
        updates: dict[str, Any] = {}
        if host is not None:
            updates["host"] = host
        if port is not None:
            updates["port"] = port
        if updates:
            config = config.model_copy(update={"server": config.server.model_copy(update=updates)})
        if config.server.tls_certfile is not None:
            for path in (config.server.tls_certfile, config.server.tls_keyfile):
                if path is not None and not config.path(path).is_file():
                    raise InputError(f"TLS file not found: {config.path(path)}")
        _run(config, config_path)


def _prepare_default(work_dir: Path, model_cache: Path | None) -> Path:
    from modelward.gateway.bootstrap import prepare_demo

    setup = prepare_demo(work_dir, model_cache=model_cache)
    return Path(setup.config_path)


def _paths(config: Any, config_path: Path) -> dict[str, str]:
    paths = {
        "config": str(config_path.resolve()),
        "models_dir": str(config.path(config.model.models_dir)),
        "model_public_key": str(config.path(config.model.public_keys[0])),
        "audit_log": str(config.path(config.audit.sqlite_path)),
        "database": str(config.path(config.storage.sqlite_path)),
    }
    if config.audit.signing_key is not None:
        private = config.path(config.audit.signing_key)
        stem = private.name.removesuffix(".pem")
        for candidate in (private.with_name(f"{stem}.pub"), private.with_name(f"{stem}.pub.pem")):
            if candidate.is_file():
                paths["audit_public_key"] = str(candidate)
    return paths


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(config: Any, config_path: Path) -> None:
    import torch
    import uvicorn

    from modelward.gateway.app import create_app
    from modelward.gateway.service import GatewayService

    torch.set_num_threads(1)  # many small requests in parallel threads: one intra-op thread each is fastest
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    service = GatewayService(config)
    try:
        app = create_app(service)
        tls = config.server.tls_certfile is not None
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=config.server.host,
                port=config.server.port,
                ssl_certfile=str(config.path(config.server.tls_certfile)) if tls else None,
                ssl_keyfile=str(config.path(config.server.tls_keyfile)) if tls and config.server.tls_keyfile else None,
                log_level="warning",
                access_log=False,
                timeout_keep_alive=5,
                server_header=False,
            )
        )
        scheme = "https" if tls else "http"
        model = service.registry.current
        version = model.version if model is not None else "none"
        click.echo(
            f"modelward gateway: {scheme}://{config.server.host}:{config.server.port} serving model {version} "
            f"(config {config_path})",
            err=True,
        )
        # uvicorn re-raises the signal that stopped it; exiting through SystemExit lets the audit log close cleanly.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        server.run()
    finally:
        service.close()
