"""Detached Ed25519 signatures over a manifest of a model artifact's file digests.

A model may be served only once its signature verifies. The manifest lists every file of the
artifact (one file or a folder) with its size and SHA-256, in sorted relative POSIX paths, and is
signed as canonical JSON; verification recomputes the manifest and names what differs (a file
changed, missing or added; an unknown key; a bad signature). Pickle-family artifacts are refused
by default, recognised by their content as well as their name, and are never unpickled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelward.core.errors import InputError

MANIFEST_FORMAT = "modelward.manifest/1"
SIGNATURE_FORMAT = "modelward.signature/1"
SIGNATURE_SUFFIX = ".sig.json"
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".dill", ".pt", ".pth", ".bin", ".ckpt"})
_CHUNK = 1024 * 1024


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def looks_like_pickle(path: Path) -> bool:
    """Whether a file holds a pickle by its content: a pickle protocol header, or a zip with a ``.pkl`` member."""
    with path.open("rb") as handle:
        head = handle.read(2)
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head == b"PK" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith((".pkl", ".pickle")) for name in archive.namelist())
    return False


def _files(artifact: Path, exclude: Path | None) -> list[Path]:
    if artifact.is_symlink():
        raise InputError("a signed artifact may not be a symbolic link", file=str(artifact))
    if artifact.is_file():
        return [artifact]
    if not artifact.is_dir():
        raise InputError("no such artifact (a model file or folder)", file=str(artifact))
    skip = exclude.resolve() if exclude is not None else None
    found = []
    for path in sorted(artifact.rglob("*")):
        if path.is_symlink():
            raise InputError("symbolic links are not signed; copy the file in", file=str(path))
        # Only the signature file in use is left out: any other ``*.sig.json`` is content like the rest.
        if path.is_file() and path.resolve() != skip:
            found.append(path)
    if not found:
        raise InputError("the artifact folder holds no files", file=str(artifact))
    return found


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def build_manifest(artifact: Path, *, allow_pickle: bool = False, exclude: Path | None = None) -> dict[str, Any]:
    """Size and SHA-256 of every file of ``artifact`` but ``exclude`` (the signature file when it lies inside).

    Pickle-family files are refused unless ``allow_pickle``.
    """
    files = _files(artifact, exclude)
    base = artifact if artifact.is_dir() else artifact.parent
    entries = []
    for path in files:
        if not allow_pickle and (path.suffix.lower() in PICKLE_SUFFIXES or looks_like_pickle(path)):
            raise InputError(
                "pickle-family artifact refused (loading it can run code); convert it to safetensors, "
                "or pass allow_pickle (--allow-pickle) if you accept that risk",
                file=str(path),
            )
        entries.append(
            {"path": path.relative_to(base).as_posix(), "size": path.stat().st_size, "sha256": _digest(path)}
        )
    return {"format": MANIFEST_FORMAT, "files": entries}


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short public fingerprint: the first 16 hex digits of SHA-256 over the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(folder: Path, *, passphrase: bytes | None = None) -> tuple[Path, Path, str]:
    """Write ``signing-key.pem`` (owner-only, encrypted when a passphrase is given) and ``signing-key.pub.pem``."""
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / "signing-key.pem", folder / "signing-key.pub.pem"
    if private_path.exists():
        raise InputError("a signing key already exists here; refusing to overwrite it", file=str(private_path))
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public = key.public_key()
    public_path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path, key_id(public)


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; a wrong passphrase or another key type is a clear error."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except FileNotFoundError:
        raise InputError("no such private key file", file=str(path)) from None
    except (ValueError, TypeError):
        raise InputError("not a readable PEM private key (or a wrong passphrase)", file=str(path)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError("the signing key must be an Ed25519 key", file=str(path))
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise InputError("no such public key file", file=str(path)) from None
    except ValueError:
        raise InputError("not a readable PEM public key", file=str(path)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError("the verification key must be an Ed25519 key", file=str(path))
    return key


def signature_path_for(artifact: Path) -> Path:
    """Where the detached signature of ``artifact`` lives by default: beside it, ``<name>.sig.json``."""
    return artifact.with_name(artifact.name + SIGNATURE_SUFFIX)


def sign(artifact: Path, key: Ed25519PrivateKey, *, allow_pickle: bool = False, out: Path | None = None) -> Path:
    """Sign ``artifact``'s manifest; write and return the detached signature file."""
    target = out if out is not None else signature_path_for(artifact)
    manifest = build_manifest(artifact, allow_pickle=allow_pickle, exclude=target)
    document = {
        "format": SIGNATURE_FORMAT,
        "key_id": key_id(key.public_key()),
        "manifest": manifest,
        "signature": base64.b64encode(key.sign(canonical(manifest))).decode("ascii"),
    }
    target.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


@dataclass
class Verification:
    """Whether an artifact matches a trusted signature, and if not, every reason why."""

    valid: bool
    key_id: str | None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "key_id": self.key_id, "problems": list(self.problems)}


def _read_signature(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no signature file (sign the artifact first)", file=str(path)) from None
    except (ValueError, UnicodeDecodeError):
        raise InputError("the signature file is not JSON", file=str(path)) from None
    if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
        raise InputError(f"not a {SIGNATURE_FORMAT} file", file=str(path))
    manifest = document.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise InputError("the signature file holds no manifest", file=str(path))
    return document


def _compare(signed: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    before = {str(e.get("path")): e for e in signed if isinstance(e, dict)}
    now = {e["path"]: e for e in actual}
    problems = [f"missing file: {p}" for p in sorted(before.keys() - now.keys())]
    problems += [f"added file: {p}" for p in sorted(now.keys() - before.keys())]
    for name in sorted(before.keys() & now.keys()):
        if before[name].get("sha256") != now[name]["sha256"] or before[name].get("size") != now[name]["size"]:
            problems.append(f"modified file: {name}")
    return problems


def verify(
    artifact: Path,
    trusted: Iterable[Ed25519PublicKey],
    *,
    signature: Path | None = None,
    allow_pickle: bool = False,
) -> Verification:
    """Check ``artifact`` against its detached signature and the ``trusted`` keys; name every problem."""
    signature_file = signature if signature is not None else signature_path_for(artifact)
    document = _read_signature(signature_file)
    manifest = document["manifest"]
    keys = {key_id(k): k for k in trusted}
    claimed = str(document.get("key_id"))
    problems: list[str] = []
    key = keys.get(claimed)
    if key is None:
        problems.append(f"signed by an untrusted key ({claimed})")
    else:
        try:
            key.verify(base64.b64decode(str(document.get("signature", "")), validate=True), canonical(manifest))
        except (InvalidSignature, ValueError):
            problems.append("the signature does not match the manifest (the signature file was altered)")
    actual = build_manifest(artifact, allow_pickle=allow_pickle, exclude=signature_file)
    problems += _compare(manifest["files"], actual["files"])
    return Verification(valid=not problems, key_id=claimed if key is not None else None, problems=problems)
