"""End-to-end harness: real gateway folders, a real ``modelward serve`` subprocess on loopback, CLI helpers.

- :func:`gateway_template` builds (once per test process) a folder with a trained, signed digits model and the
  model and audit key pairs; the trained weights are cached across runs in pytest's cache folder.
- :func:`make_gateway` copies the template to a fresh folder and writes ``gateway.yaml`` from overrides.
- :class:`GatewayProcess` starts ``python -m modelward.cli serve`` on a free port, waits for ``/ready``, and stops
  it with SIGTERM (or SIGKILL, to test crashes); it creates keys and users through the real CLI.
- PNG helpers make valid digits, a decompression bomb, a truncated file, and text posing as a PNG.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pyotp
import pytest
import yaml

__all__ = [
    "GatewayProcess",
    "Totp",
    "ambiguous_png",
    "audit_records",
    "auth",
    "cli",
    "decompression_bomb_png",
    "digit_png",
    "free_port",
    "gateway_template",
    "last_audit_record",
    "make_gateway",
    "recorded_decision_ids",
    "truncated_png",
]

READY_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 60.0
ARTIFACT = "digits-cnn"
MODEL_PRIVATE_KEY = "keys/model/signing-key.pem"
MODEL_PUBLIC_KEY = "keys/model/signing-key.pub.pem"
AUDIT_PRIVATE_KEY = "keys/audit/signing-key.pem"
AUDIT_PUBLIC_KEY = "keys/audit/signing-key.pub.pem"

BASE_CONFIG: dict[str, Any] = {
    "audit": {"signing_key": AUDIT_PRIVATE_KEY},
    "model": {"artifact": ARTIFACT, "public_keys": [MODEL_PUBLIC_KEY]},
}

_TEMPLATE: dict[str, Path] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m modelward.cli ARGS`` (the real command line); fail the test on a non-zero exit when ``check``."""
    result = subprocess.run(  # nosec B603 - our own interpreter and fixed arguments
        [sys.executable, "-m", "modelward.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"modelward {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def _train_model(cache_base: Path) -> Any:
    """The digits-cnn recipe, trained once per machine (cache under ``cache_base``, guarded by a file lock)."""
    from modelward.checks.model_recipes import resolve_model

    cache_base.mkdir(parents=True, exist_ok=True)
    with (cache_base / "train.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers train one at a time; later ones load the cache
        return resolve_model({"recipe": "digits-cnn"}, cache_base)


def build_template(root: Path, cache_base: Path) -> Path:
    """Write keys, a signed ``models/digits-cnn`` artifact and a default ``gateway.yaml`` into ``root``."""
    from modelward.classifiers.store import save_model
    from modelward.supplychain.signing import generate_keypair, load_private_key, sign

    resolved = _train_model(cache_base)
    root.mkdir(parents=True, exist_ok=True)
    model_private, _, _ = generate_keypair(root / "keys/model")
    generate_keypair(root / "keys/audit")
    artifact = root / "models" / ARTIFACT
    artifact.mkdir(parents=True)
    save_model(resolved.module, artifact / "model", resolved.metadata)
    serving = {"input": "image-digits", "classes": [str(i) for i in range(10)]}
    (artifact / "serving.json").write_text(json.dumps(serving), encoding="utf-8")
    sign(artifact, load_private_key(model_private))
    (root / "gateway.yaml").write_text(yaml.safe_dump(BASE_CONFIG), encoding="utf-8")
    return root


def gateway_template(factory: pytest.TempPathFactory, cache: pytest.Cache) -> Path:
    """The template gateway folder of this test process, built on first use."""
    if "root" not in _TEMPLATE:
        cache_base = cache.mkdir("modelward-gateway-model")
        _TEMPLATE["root"] = build_template(factory.mktemp("gateway-template"), cache_base)
    return _TEMPLATE["root"]


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def make_gateway(template: Path, dest: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Copy ``template`` to ``dest`` and write ``gateway.yaml`` (base config deep-merged with ``overrides``)."""
    shutil.copytree(template, dest)
    config = dest / "gateway.yaml"
    config.write_text(yaml.safe_dump(_merge(BASE_CONFIG, overrides or {})), encoding="utf-8")
    return config


def auth(key: str, **extra: str) -> dict[str, str]:
    """Headers carrying ``key`` as a bearer credential, plus ``extra`` (``X-MFA-Code`` and friends)."""
    headers = {"Authorization": f"Bearer {key}"}
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    return headers


class Totp:
    """Hands out TOTP codes of one user, each for a later 30 s step than the last (the gateway refuses reuse).

    With the gateway's window of one step either side, three codes (steps now-1, now, now+1) are usable at
    once; past that it waits for the next step. Codes about to leave the window are skipped.
    """

    def __init__(self, secret: str) -> None:
        self._totp = pyotp.TOTP(secret)
        self._last = -(10**9)

    def next(self) -> str:
        """A fresh code the gateway accepts now (and has not seen)."""
        while True:
            now = time.time()
            step = int(now // 30)
            earliest = step - 1 if now - step * 30 < 25 else step  # a step-1 code close to expiry is skipped
            candidate = max(self._last + 1, earliest)
            if candidate <= step + 1:
                self._last = candidate
                return str(self._totp.generate_otp(candidate))
            time.sleep((step + 1) * 30 - now + 0.2)

    def wrong(self) -> str:
        """A well-formed code matching none of the steps the gateway accepts now."""
        step = int(time.time() // 30)
        valid = {self._totp.generate_otp(s) for s in range(step - 2, step + 3)}
        return next(c for c in (f"{n:06d}" for n in range(0, 1_000_000, 7919)) if c not in valid)


class GatewayProcess:
    """One ``modelward serve`` subprocess on a loopback port; stdout and stderr go to ``server.log`` beside it."""

    def __init__(self, config: Path, *, port: int | None = None, cert: Path | None = None) -> None:
        self.config = config
        self.folder = config.parent
        self.port = port or free_port()
        self.cert = cert
        self.scheme = "https" if cert is not None else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.log_path = self.folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.audited_requests = 0  # requests sent through :meth:`client` that the gateway must audit

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> GatewayProcess:
        """Start the server and wait until ``/ready`` answers 200 (fail the test with the log otherwise)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # nosec B603 - our own interpreter and fixed arguments
                [
                    sys.executable,
                    "-m",
                    "modelward.cli",
                    "serve",
                    "--config",
                    str(self.config),
                    "--port",
                    str(self.port),
                ],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        verify = self._verify()
        with httpx.Client(base_url=self.url, verify=verify, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"gateway exited with {self.process.returncode} before ready:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/ready").status_code == 200:
                        return
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"gateway not ready within {READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.cert) if self.cert is not None else True

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush or close anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(15.0)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # --- clients -------------------------------------------------------------------------------
    def client(self, *, source: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client for the server (from local address ``source``, e.g. ``127.0.0.2``), counting audited calls."""

        def count(request: httpx.Request) -> None:
            if request.url.path not in {"/health", "/ready", "/openapi.json"}:
                self.audited_requests += 1

        verify = self._verify()
        transport = httpx.HTTPTransport(local_address=source, verify=verify) if source else None
        return httpx.Client(
            base_url=self.url, verify=verify, timeout=timeout, transport=transport, event_hooks={"request": [count]}
        )

    # --- administration through the real CLI ---------------------------------------------------
    def create_key(self, principal: str, role: str, *, expires_in: str | None = None) -> dict[str, Any]:
        """``modelward keys create``: the JSON it prints (``key``, ``prefix``, ...)."""
        args = ["keys", "create", "--config", str(self.config), "--principal", principal, "--role", role, "-f", "json"]
        if expires_in is not None:
            args += ["--expires-in", expires_in]
        created: dict[str, Any] = json.loads(cli(*args).stdout)
        return created

    def quick_key(self, principal: str, role: str) -> dict[str, Any]:
        """A key made in-process through the same stores the CLI uses (fast; for keys whose creation is not tested)."""
        from modelward.gateway.config import load_config, open_stores
        from modelward.gateway.keys import KeyManager, Role

        stores = open_stores(load_config(self.config))
        try:
            issued = KeyManager(stores.keys).create(principal, Role(role))
        finally:
            stores.close()
        return {"key": issued.key, "prefix": issued.record.prefix, "principal": principal, "role": role}

    def add_user(self, name: str, role: str) -> dict[str, Any]:
        """``modelward users add``: the JSON it prints (``totp_secret``, ...)."""
        added: dict[str, Any] = json.loads(
            cli("users", "add", name, "--config", str(self.config), "--role", role, "-f", "json").stdout
        )
        return added

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Any ``modelward`` command given this gateway's ``--config`` at the end."""
        return cli(*args, "--config", str(self.config))

    @property
    def audit_db(self) -> Path:
        """The audit log's SQLite file (the default path of the configuration)."""
        return self.folder / "audit.db"

    def verify_audit_log(self) -> dict[str, Any]:
        """``modelward audit-log verify -f json`` on this gateway's audit log, checkpoints against its audit key."""
        result = cli(
            "audit-log",
            "verify",
            str(self.audit_db),
            "--public-key",
            str(self.folder / AUDIT_PUBLIC_KEY),
            "-f",
            "json",
            check=False,
        )
        assert result.returncode in (0, 1), result.stderr
        verified: dict[str, Any] = json.loads(result.stdout)
        return verified


# --- the audit log, read-only -------------------------------------------------------------------
@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield connection
    finally:
        connection.close()


def audit_records(path: Path) -> list[dict[str, Any]]:
    """Every audit record as ``{"actor", "action", "outcome", "details"}`` (SQLite opened read-only)."""
    with _read_only(path) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(audit_records)")}
        assert {"actor", "action", "outcome", "details"} <= columns, f"unexpected audit schema: {sorted(columns)}"
        rows = connection.execute("SELECT actor, action, outcome, details FROM audit_records ORDER BY seq").fetchall()
    return [{"actor": a, "action": b, "outcome": c, "details": json.loads(d)} for a, b, c, d in rows]


def last_audit_record(path: Path) -> dict[str, Any]:
    """The newest audit record (SQLite opened read-only)."""
    with _read_only(path) as connection:
        row = connection.execute(
            "SELECT actor, action, outcome, details FROM audit_records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    assert row is not None, "the audit log is empty"
    return {"actor": row[0], "action": row[1], "outcome": row[2], "details": json.loads(row[3])}


def recorded_decision_ids(path: Path) -> set[str]:
    """The decision ids that the audit log's prediction records carry."""
    found: set[str] = set()
    for record in audit_records(path):
        for decision in record["details"].get("decisions", []):
            found.add(str(decision.get("decision_id")))
    return found


# --- uploads --------------------------------------------------------------------------------------
def digit_png(index: int = 0, side: int = 32) -> bytes:
    """Digit ``index`` of scikit-learn's digits as a grey ``side`` x ``side`` PNG."""
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] / 16 * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def ambiguous_png(first: int = 5, second: int = 6, side: int = 32) -> bytes:
    """Two digits blended into one grey PNG: the model hesitates, so several classes get visible scores."""
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images
    pixels = ((images[first] + images[second]) / 32 * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit ``side`` x ``side`` PNG of zeros: a few tens of KB that would inflate to ~50 MB."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def truncated_png() -> bytes:
    """A real digit PNG cut in half (no IDAT end, no IEND)."""
    data = digit_png()
    return data[: len(data) // 2]
