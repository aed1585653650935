"""Everything ``modelward serve`` needs with no arguments: keys, the signed moderation model and a gateway.yaml.

The scenario's moderation model is the ``digits-cnn`` recipe (trained once, cached). It is saved as a
signed artifact ``models/digits-cnn`` beside owner-only keys (model signing, audit checkpoints, and the
Fernet key sealing TOTP secrets in the user store), and a configuration pointing at them is written. A
second call reuses all of it: nothing is retrained, and the model is re-signed only when its signature no
longer verifies (then the artifact is rebuilt from the recipe first, never signed as found).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from modelward.core.errors import InputError
from modelward.core.files import write_text_atomic
from modelward.supplychain.signing import (
    generate_keypair,
    load_private_key,
    load_public_key,
    sign,
    signature_path_for,
    verify,
)

__all__ = ["DEFAULT_WORK_DIR", "DEMO_ARTIFACT", "DemoSetup", "prepare_demo", "sign_artifact"]

DEFAULT_WORK_DIR = Path(".modelward-gateway")
DEMO_ARTIFACT = "digits-cnn"
CONFIG_NAME = "gateway.yaml"
MODEL_KEY = "model-signing"
AUDIT_KEY = "audit"
TOTP_KEY = "totp.key"


@dataclass(frozen=True)
class DemoSetup:
    """Where the demo's configuration file and working folder are."""

    config_path: Path
    work_dir: Path


def sign_artifact(folder: Path, private_key_path: Path, *, passphrase: bytes | None = None) -> Path:
    """Sign a model artifact folder with an Ed25519 private key; return the ``<folder>.sig.json`` written."""
    return sign(folder, load_private_key(private_key_path, passphrase))


def _keypair(keys: Path, name: str) -> tuple[Path, Path]:
    """``keys/<name>.pem`` (0600) and ``keys/<name>.pub``, made once; a missing public half is derived again."""
    private, public = keys / f"{name}.pem", keys / f"{name}.pub"
    if not private.exists():
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=keys))
        try:
            made_private, made_public, _ = generate_keypair(scratch)
            os.replace(made_public, public)
            os.replace(made_private, private)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    elif not public.exists():
        pem = (
            load_private_key(private)
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        public.write_bytes(pem)
    os.chmod(private, 0o600)
    return private, public


def _totp_key(keys: Path) -> None:
    """``keys/totp.key``: a Fernet key made once, owner-only from its first byte (never rewritten)."""
    from cryptography.fernet import Fernet

    path = keys / TOTP_KEY
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(handle, "wb") as out:
        out.write(Fernet.generate_key() + b"\n")


def _verifies(folder: Path, public: Path) -> bool:
    if not folder.is_dir() or not signature_path_for(folder).is_file():
        return False
    try:
        return verify(folder, [load_public_key(public)]).valid
    except InputError:
        return False


def _build_artifact(cache_base: Path, models: Path, private: Path) -> None:
    """Save the recipe's model as ``models/digits-cnn`` with serving.json and its signature, swapped in whole."""
    from modelward.checks.model_recipes import resolve_model
    from modelward.classifiers.store import save_model

    resolved = resolve_model({"recipe": DEMO_ARTIFACT}, cache_base)
    staging = Path(tempfile.mkdtemp(prefix=f".{DEMO_ARTIFACT}-", dir=models))
    try:
        save_model(resolved.module, staging / "model", dict(resolved.metadata))
        serving = {"input": "image-digits", "classes": [str(d) for d in range(10)]}
        (staging / "serving.json").write_text(json.dumps(serving, indent=2) + "\n", encoding="utf-8")
        signature = sign_artifact(staging, private)  # the manifest holds relative paths, so it survives the rename
        target = models / DEMO_ARTIFACT
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        os.replace(signature, signature_path_for(target))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        signature_path_for(staging).unlink(missing_ok=True)


def _config() -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 8000},
        "storage": {"backend": "sqlite", "sqlite_path": "gateway.db"},
        "audit": {"sqlite_path": "audit.db", "signing_key": f"keys/{AUDIT_KEY}.pem"},
        "rate_limits": {"backend": "memory"},
        "model": {
            "models_dir": "models",
            "artifact": DEMO_ARTIFACT,
            "public_keys": [f"keys/{MODEL_KEY}.pub"],
            "allow_pickle": False,
            "keep_versions": 5,
        },
        "auth": {"api_keys": True, "totp_encryption_key": f"file:keys/{TOTP_KEY}"},
        "metrics": {"public": False},
    }


def prepare_demo(work_dir: Path = DEFAULT_WORK_DIR, *, model_cache: Path | None = None) -> DemoSetup:
    """Create (or reuse) keys, the signed ``digits-cnn`` artifact and ``gateway.yaml`` under ``work_dir``.

    ``model_cache`` is the folder whose ``.modelward-cache/`` holds trained recipes (the scenario's, so the
    audit serves the very model its checks attacked); ``work_dir`` by default.
    """
    work_dir = Path(work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise InputError("the gateway work folder is not a folder", file=str(work_dir))
    work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = work_dir / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    os.chmod(keys, 0o700)
    model_private, model_public = _keypair(keys, MODEL_KEY)
    _keypair(keys, AUDIT_KEY)
    _totp_key(keys)
    models = work_dir / "models"
    models.mkdir(exist_ok=True)
    if not _verifies(models / DEMO_ARTIFACT, model_public):
        _build_artifact(work_dir if model_cache is None else Path(model_cache), models, model_private)
    config_path = work_dir / CONFIG_NAME
    if not config_path.exists():
        header = "# Written by `modelward serve` for the demo; relative paths resolve against this folder.\n"
        write_text_atomic(config_path, header + yaml.safe_dump(_config(), sort_keys=False))
    return DemoSetup(config_path=config_path.resolve(), work_dir=work_dir.resolve())
