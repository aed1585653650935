"""Reach a modelward gateway the way an outsider does: over HTTP, by URL or by launching one.

A gateway check names its target in its parameters: ``url`` (a running gateway; credentials come
from environment variables named in ``keys``) or ``launch`` (``demo``, or a gateway.yaml relative to
the system file). A launched gateway runs as a subprocess of ``modelward serve`` on a free loopback
port, with one fresh key per purpose created through the CLI, and is shared by every gateway check of
the process (one per configuration) until the interpreter exits. Subprocesses are always this
interpreter's own CLI with argument lists, never a shell. This module never imports the
gateway itself: checks sit below it in the layers and see only what a client sees.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import socket
import sqlite3
import subprocess  # nosec B404
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelward.checks.base import CheckContext, number_param
from modelward.core.errors import InputError, ModelwardError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CACHE_SUBDIR",
    "PURPOSES",
    "GatewayTarget",
    "GatewayUnavailable",
    "Observed",
    "audit_actor_count",
    "cli",
    "gateway_target",
    "key_prefix",
    "launched_gateway",
    "send",
    "stop_all",
]

PURPOSES: dict[str, str] = {
    "end-user": "end-user",
    "moderator": "moderator",
    "ml-engineer": "ml-engineer",
    "admin": "admin",
    "revoked": "end-user",  # created, then revoked before it is ever used
    "rate-limit": "end-user",  # its own principal, so its bucket is drained by nobody else
}
"""Every credential a launched gateway is given, by purpose, with the role it carries (each CLI call costs
about a second, so only what the checks use; url mode may name an ``auditor`` key too)."""

CLI_MODULE = "modelward.cli"
PROBE_KEY_LIFETIME = "2h"
"""Probe keys expire on their own (admin among them): an audit never leaves live credentials behind."""
_PROBE_KEY_REUSE_S = 3600.0  # a process reuses a store's probe keys for an hour, well inside their lifetime
READY_TIMEOUT_S = 60.0
CACHE_SUBDIR = Path(".modelward-cache") / "gateway"
_LOG_TAIL_CHARS = 2000


class GatewayUnavailable(ModelwardError):
    """The gateway could not be prepared, launched or reached; the message carries the server log's tail."""


@dataclass
class Observed:
    """One probe's answer: HTTP status (None when the connection failed), the refusal reason, the body."""

    status: int | None
    reason: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """A 4xx answer that names its reason (what a deliberate refusal looks like)."""
        return self.status is not None and 400 <= self.status < 500 and bool(self.reason)

    def describe(self) -> str:
        """``403 forbidden`` or ``connection failed: ...`` for evidence tables."""
        if self.status is None:
            return self.reason
        return f"{self.status} {self.reason}".strip()


@dataclass
class GatewayTarget:
    """Where the gateway answers and what a prober holds: keys by purpose and, when launched, its files."""

    url: str
    keys: dict[str, str]
    launched: bool
    config_path: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    audit_log: Path | None = None
    audit_public_key: Path | None = None
    model_public_keys: list[Path] = field(default_factory=list)
    models_dir: Path | None = None
    log_path: Path | None = None

    def key(self, purpose: str) -> str:
        """The credential for ``purpose``; url mode falls back to the role's key, else a located InputError."""
        if purpose in self.keys:
            return self.keys[purpose]
        role = PURPOSES.get(purpose, purpose)
        if purpose != role and role in self.keys:
            return self.keys[role]
        raise InputError(
            f"no credential for {purpose!r}: name an environment variable for it under keys", field="params.keys"
        )

    def has_key(self, purpose: str) -> bool:
        """Whether :meth:`key` would answer without falling back to another principal's key."""
        return purpose in self.keys

    def client(self, timeout_s: float = 30.0) -> httpx.Client:
        """A fresh HTTP client on the gateway (loopback or the configured URL)."""
        client: httpx.Client = _httpx().Client(base_url=self.url, timeout=timeout_s)
        return client

    def setting(self, *path: str) -> Any:
        """A value of the launched gateway's configuration (``setting('rate_limits', 'per_principal')``)."""
        node: Any = self.settings
        for name in path:
            if not isinstance(node, dict):
                return None
            node = node.get(name)
        return node


def key_prefix(key: str) -> str:
    """The public prefix of an ``mw_<prefix>_<secret>`` key (what audit records name as the actor)."""
    parts = key.split("_")
    return parts[1] if len(parts) >= 3 and parts[0] == "mw" else ""


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - the serve extra brings it
        raise InputError("gateway checks need the serve extra: pip install 'modelward[serve]'") from exc
    return httpx


# --- requests ----------------------------------------------------------------------------------


def send(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    retry_429: bool = True,
    **kwargs: Any,
) -> Observed:
    """One request; refusals are read from ``{"detail": {"reason": ...}}``. A 429 is waited out unless told not."""
    httpx = _httpx()
    for attempt in range(4):
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            return Observed(None, f"connection failed: {type(exc).__name__}")
        if response.status_code == 429 and retry_429 and attempt < 3:
            time.sleep(_retry_after(response.headers.get("retry-after")))
            continue
        return _observe(response)
    raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 1), 0.05), 5.0)
    except ValueError:
        return 1.0


def _observe(response: httpx.Response) -> Observed:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:500]
    reason = ""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, dict):
            reason = str(detail.get("reason", ""))
        elif isinstance(detail, str):
            reason = detail[:80]
    return Observed(response.status_code, reason, body, dict(response.headers))


# --- the CLI -----------------------------------------------------------------------------------


def cli(*args: str, timeout_s: float = 120.0, json_output: bool = True) -> Any:
    """Run ``modelward ARGS`` with this interpreter; its JSON output (or text). A failure is GatewayUnavailable."""
    command = [sys.executable, "-m", CLI_MODULE, *args]
    try:
        done = subprocess.run(  # noqa: S603  # nosec B603
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise GatewayUnavailable(f"`modelward {' '.join(args[:2])}` did not finish in {timeout_s:g} s") from exc
    if done.returncode not in (0, 1):
        tail = (done.stderr or done.stdout).strip()[-_LOG_TAIL_CHARS:]
        raise GatewayUnavailable(f"`modelward {' '.join(args[:2])}` exited {done.returncode}: {tail}")
    if not json_output:
        return done.stdout
    try:
        return json.loads(done.stdout)
    except ValueError as exc:
        raise GatewayUnavailable(f"`modelward {' '.join(args[:2])}` printed no JSON: {done.stdout[:200]!r}") from exc


# --- the target --------------------------------------------------------------------------------

_PREPARED: dict[Path, dict[str, Any]] = {}
_KEYS: dict[str, tuple[float, dict[str, str]]] = {}  # by key store (shared by its gateways): (made at, keys)
_LAUNCHED: dict[Path, GatewayTarget | GatewayUnavailable] = {}
_PROCESSES: list[subprocess.Popen[bytes]] = []
_LOCK = threading.Lock()


def gateway_target(context: CheckContext) -> GatewayTarget:
    """The gateway the check's parameters name: ``url`` (+ ``keys``) or ``launch`` (``demo`` or a config path)."""
    params = context.params
    url, launch = params.get("url"), params.get("launch")
    if (url is None) == (launch is None):
        raise InputError("name the gateway with exactly one of url or launch (demo, or a gateway.yaml)", field="params")
    if url is not None:
        return _remote(str(url), params.get("keys", {}))
    if not isinstance(launch, str) or not launch:
        raise InputError("launch must be 'demo' or the path of a gateway.yaml", field="params.launch")
    timeout_s = number_param(params, "ready_timeout_s", READY_TIMEOUT_S, low=1.0, high=600.0)
    return launched_gateway(launch, Path(context.base_dir), Path(context.artifacts_dir), ready_timeout_s=timeout_s)


def _remote(url: str, names: Any) -> GatewayTarget:
    if not url.startswith(("http://", "https://")):
        raise InputError(f"url must be an http(s) URL, got {url!r}", field="params.url")
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise InputError("keys must map a role to an environment variable name", field="params.keys")
    keys: dict[str, str] = {}
    for purpose, variable in names.items():
        value = os.environ.get(variable)
        if not value:
            raise InputError(f"environment variable {variable} (the {purpose} key) is not set", field="params.keys")
        keys[str(purpose)] = value
    return GatewayTarget(url=url.rstrip("/"), keys=keys, launched=False)


def launched_gateway(
    launch: str, base_dir: Path, artifacts_dir: Path, *, ready_timeout_s: float = READY_TIMEOUT_S
) -> GatewayTarget:
    """The gateway launched for ``launch`` in this process, starting it on first use (a failure is remembered)."""
    with _LOCK:
        config, extra = _resolve_config(launch, base_dir)
        known = _LAUNCHED.get(config)
        if isinstance(known, GatewayUnavailable):
            raise known
        if known is not None:
            return known
        try:
            target = _launch(config, extra, artifacts_dir, ready_timeout_s)
        except GatewayUnavailable as exc:
            _LAUNCHED[config] = exc
            raise
        _LAUNCHED[config] = target
        return target


def _resolve_config(launch: str, base_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The configuration file to launch and what ``--prepare-only`` said about it (demo only)."""
    if launch == "demo":
        work = (base_dir / CACHE_SUBDIR).resolve()
        prepared = _PREPARED.get(work)
        if prepared is None:  # once per process: preparing again would also repair what a later probe found
            prepared = cli(
                "serve",
                "--prepare-only",
                "--work-dir",
                str(work),
                "--model-cache",  # the scenario's own trained model: serve what the other checks attacked
                str(base_dir),
                "--format",
                "json",
                timeout_s=600,
            )
            if not isinstance(prepared, dict) or "config" not in prepared:
                raise GatewayUnavailable(f"`modelward serve --prepare-only` printed {prepared!r}")
            _PREPARED[work] = prepared
        return Path(prepared["config"]).resolve(), prepared
    path = (base_dir / launch).resolve()
    if not path.is_file():
        raise InputError(f"no gateway configuration at {path}", field="params.launch")
    return path, {}


def _read_settings(config: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read the gateway configuration: {exc}", file=str(config)) from exc
    return data if isinstance(data, dict) else {}


def _section(settings: dict[str, Any], name: str) -> dict[str, Any]:
    value = settings.get(name)
    return value if isinstance(value, dict) else {}


def _launch(config: Path, prepared: dict[str, Any], artifacts_dir: Path, ready_timeout_s: float) -> GatewayTarget:
    settings = _read_settings(config)
    folder = config.parent

    def resolve(value: Any, default: str | None = None) -> Path | None:
        raw = value if isinstance(value, str) else default
        if raw is None:
            return None
        path = Path(raw)
        return path if path.is_absolute() else (folder / path).resolve()

    audit = _section(settings, "audit")
    model = _section(settings, "model")
    audit_log = (
        Path(prepared["audit_log"]) if "audit_log" in prepared else resolve(audit.get("sqlite_path"), "audit.db")
    )
    audit_key = _audit_public_key(prepared.get("audit_public_key"), resolve(audit.get("signing_key")))
    model_keys = [p for p in (resolve(k) for k in model.get("public_keys", []) or []) if p is not None]
    if "model_public_key" in prepared:
        model_keys = [Path(prepared["model_public_key"])]
    port = _free_port()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_path = artifacts_dir / f"gateway-{port}.log"
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", CLI_MODULE, "serve", "--config", str(config), "--host", "127.0.0.1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603  # nosec B603
            [*command, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    _PROCESSES.append(process)
    # The gateway reads keys from its store on every request, so they are made while it starts up.
    store = _key_store(settings, folder)
    pool = ThreadPoolExecutor(max_workers=1)
    made = pool.submit(_probe_keys, store, config)
    try:
        _wait_ready(url, process, log_path, ready_timeout_s)
        keys = made.result()
    except GatewayUnavailable:
        _stop(process)
        raise
    finally:
        pool.shutdown(wait=False)
    return GatewayTarget(
        url=url,
        keys=keys,
        launched=True,
        config_path=config,
        settings=settings,
        audit_log=audit_log,
        audit_public_key=audit_key,
        model_public_keys=model_keys,
        models_dir=resolve(model.get("models_dir"), "models"),
        log_path=log_path,
    )


def _key_store(settings: dict[str, Any], folder: Path) -> str:
    """What identifies the gateway's key store: its SQLite file, or its PostgreSQL URL (as written)."""
    storage = _section(settings, "storage")
    if storage.get("backend") == "postgres":
        return f"postgres:{storage.get('postgres_url')}"
    path = Path(str(storage.get("sqlite_path", "gateway.db")))
    return f"sqlite:{path if path.is_absolute() else (folder / path).resolve()}"


def _audit_public_key(reported: Any, signing_key: Path | None) -> Path | None:
    """The audit log's public key: the one ``--prepare-only`` named, else beside the signing key (``.pub``)."""
    candidates = [Path(reported)] if isinstance(reported, str) else []
    if signing_key is not None:
        stem = signing_key.name.removesuffix(".pem")
        candidates += [signing_key.with_name(stem + ".pub"), signing_key.with_name(stem + ".pub.pem")]
    return next((path for path in candidates if path.is_file()), None)


def _probe_keys(store: str, config: Path) -> dict[str, str]:
    """This process's probe keys for ``store``: made once, and again when the earlier ones near expiry."""
    known = _KEYS.get(store)
    if known is not None and time.monotonic() - known[0] < _PROBE_KEY_REUSE_S:
        return known[1]
    made_at = time.monotonic()
    keys = _create_keys(config)
    _KEYS[store] = (made_at, keys)
    return keys


def _create_keys(config: Path) -> dict[str, str]:
    """One fresh principal per purpose (names unique to this run), the ``revoked`` one revoked at once.

    Each key expires after :data:`PROBE_KEY_LIFETIME`, so the admin and ML-engineer keys an audit made
    do not stay valid in the gateway's store after it.

    The CLI calls run a few at a time: each is a second of interpreter start-up, and the stores take
    their own write locks (the audit log's chain stays one chain across processes).
    """
    run = secrets.token_hex(3)

    def create(purpose: str) -> str:
        made = cli(
            "keys", "create", "--config", str(config), "--principal", f"probe-{run}-{purpose}",
            "--role", PURPOSES[purpose], "--expires-in", PROBE_KEY_LIFETIME, "--format", "json",
        )  # fmt: skip
        if not isinstance(made, dict) or not isinstance(made.get("key"), str):
            raise GatewayUnavailable(f"`modelward keys create` printed no key for {purpose}")
        return str(made["key"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        keys = dict(zip(PURPOSES, pool.map(create, PURPOSES), strict=True))
    cli("keys", "revoke", key_prefix(keys["revoked"]), "--config", str(config), json_output=False)
    return keys


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:].strip()
    except OSError:
        return "(no log)"


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    httpx = _httpx()
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise GatewayUnavailable(
                    f"the gateway exited with status {process.returncode} before it was ready; "
                    f"log {log_path}:\n{_log_tail(log_path)}"
                )
            try:
                if client.get("/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    _stop(process)
    raise GatewayUnavailable(
        f"the gateway was not ready within {timeout_s:g} s; log {log_path}:\n{_log_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@atexit.register
def stop_all() -> None:
    """Stop every gateway this process launched (terminate, then kill) and forget them."""
    with _LOCK:
        for process in _PROCESSES:
            _stop(process)
        _PROCESSES.clear()
        _LAUNCHED.clear()
        _PREPARED.clear()
        _KEYS.clear()


# --- the audit log, read as a file -------------------------------------------------------------


def audit_actor_count(path: Path, actor: str) -> int:
    """How many records of the SQLite audit log at ``path`` name key ``actor`` (as ``PREFIX`` or ``key:PREFIX``).

    Read-only; the chain itself is verified by ``modelward audit-log verify``.
    """
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            query = "SELECT COUNT(*) FROM audit_records WHERE actor IN (?, ?)"
            row = db.execute(query, (actor, f"key:{actor}")).fetchone()
    except sqlite3.Error as exc:
        raise InputError(f"cannot read the audit log: {exc}", file=str(path)) from exc
    return int(row[0]) if row else 0
