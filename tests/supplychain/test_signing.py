"""Model signing: a verified artifact is exactly the signed one, and every way it can differ is named."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modelward.core.errors import InputError
from modelward.supplychain.signing import (
    build_manifest,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign,
    signature_path_for,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path]:
    private, public, _ = generate_keypair(tmp_path / "keys")
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.safetensors").write_bytes(b"\x00" * 64)
    (model / "config.json").write_text('{"layers": 2}')
    (model / "sub" / "tokenizer.json").write_text("{}")
    sign(model, load_private_key(private))
    return model, private, public


def problems(model: Path, public: Path, **kwargs: object) -> list[str]:
    return verify(model, [load_public_key(public)], **kwargs).problems  # type: ignore[arg-type]


def test_a_signed_artifact_verifies_and_the_key_file_is_private(signed: tuple[Path, Path, Path]) -> None:
    model, private, public = signed
    result = verify(model, [load_public_key(public)])
    assert result.valid and result.problems == [] and result.key_id
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    manifest = json.loads(signature_path_for(model).read_text())["manifest"]
    assert [e["path"] for e in manifest["files"]] == ["config.json", "sub/tokenizer.json", "weights.safetensors"]


def test_every_change_to_the_files_is_named(signed: tuple[Path, Path, Path]) -> None:
    model, _, public = signed
    (model / "weights.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    (model / "sub" / "tokenizer.json").unlink()
    (model / "extra.py").write_text("import os")
    (model / "config.json").rename(model / "config2.json")
    assert problems(model, public) == [
        "missing file: config.json",
        "missing file: sub/tokenizer.json",
        "added file: config2.json",
        "added file: extra.py",
        "modified file: weights.safetensors",
    ]


def test_a_doctored_signature_file_or_an_untrusted_key_fails(signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, _, public = signed
    path = signature_path_for(model)
    document = json.loads(path.read_text())
    document["manifest"]["files"][0]["sha256"] = "0" * 64  # an attacker "re-blesses" a changed file
    path.write_text(json.dumps(document))
    assert "the signature does not match the manifest (the signature file was altered)" in problems(model, public)
    _, other_public, _ = generate_keypair(tmp_path / "other")
    result = verify(model, [load_public_key(other_public)])
    assert not result.valid and result.problems[0].startswith("signed by an untrusted key")


def test_a_signature_swapped_from_another_artifact_fails(signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, private, public = signed
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "weights.safetensors").write_bytes(b"\x07" * 64)
    sign(other, load_private_key(private))
    wrong = problems(model, public, signature=signature_path_for(other))
    assert wrong == ["added file: config.json", "added file: sub/tokenizer.json", "modified file: weights.safetensors"]


def test_pickles_are_refused_by_content_whatever_their_name(tmp_path: Path) -> None:
    private, _, _ = generate_keypair(tmp_path / "keys")
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.")
    with pytest.raises(InputError, match="pickle-family artifact refused"):
        sign(disguised, load_private_key(private))
    torch_zip = tmp_path / "weights.safetensors2"
    with zipfile.ZipFile(torch_zip, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02.")
    with pytest.raises(InputError, match="pickle-family"):
        build_manifest(torch_zip)
    named = tmp_path / "model.joblib"
    named.write_bytes(b"plain bytes")
    with pytest.raises(InputError, match="pickle-family"):
        build_manifest(named)
    assert build_manifest(named, allow_pickle=True)["files"][0]["path"] == "model.joblib"


def test_symlinks_and_missing_artifacts_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "link").symlink_to("/etc/hostname")
    with pytest.raises(InputError, match="symbolic links"):
        build_manifest(folder)
    with pytest.raises(InputError, match="no such artifact"):
        build_manifest(tmp_path / "nothing")


def test_an_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    private, _, _ = generate_keypair(tmp_path / "keys", passphrase=b"correct horse")
    assert load_private_key(private, b"correct horse")
    with pytest.raises(InputError, match="wrong passphrase"):
        load_private_key(private, b"wrong")
    with pytest.raises(InputError, match="refusing to overwrite"):
        generate_keypair(tmp_path / "keys")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "modelward.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def test_command_line_exit_codes(tmp_path: Path) -> None:
    assert run("signing-key", "-o", "keys", cwd=tmp_path).returncode == 0
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert run("sign", "model.safetensors", "--key", "keys/signing-key.pem", cwd=tmp_path).returncode == 0
    ok = run("verify", "model.safetensors", "--public-key", "keys/signing-key.pub.pem", "-f", "json", cwd=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    bad = run("verify", "model.safetensors", "--public-key", "keys/signing-key.pub.pem", cwd=tmp_path)
    assert bad.returncode == 1 and "modified file: model.safetensors" in bad.stdout
    missing = run("verify", "nothing.bin", "--public-key", "keys/signing-key.pub.pem", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "BEGIN" not in run("signing-key", "-o", "k2", cwd=tmp_path).stdout  # the private key is never printed


def test_only_the_signature_in_use_is_left_out_of_the_manifest(signed: tuple[Path, Path, Path]) -> None:
    model, private, public = signed
    (model / "payload.sig.json").write_text("{}")  # a file named like a signature is still content
    assert problems(model, public) == ["added file: payload.sig.json"]
    inside = model / "model.sig.json"
    sign(model, load_private_key(private), out=inside)
    assert verify(model, [load_public_key(public)], signature=inside).valid


def test_each_command_has_help() -> None:
    import click
    from click.testing import CliRunner

    from modelward.cli.signing import register

    group = click.Group("modelward")
    register(group)
    for name in ("signing-key", "sign", "verify"):
        result = CliRunner().invoke(group, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output
