"""``modelward signing-key``, ``modelward sign`` and ``modelward verify``: model artifacts signed before serving."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

# The name of the environment variable that holds the passphrase (not a secret itself).
PASSPHRASE_ENV = "MODELWARD_SIGNING_PASSPHRASE"  # noqa: S105  # nosec B105


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def register(cli: click.Group) -> None:
    """Add the signing commands to the main command."""

    @cli.command("signing-key")
    @click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Folder for the key pair.")
    def signing_key(out: Path) -> None:
        """Create an Ed25519 key pair: signing-key.pem (owner-only; encrypted when $MODELWARD_SIGNING_PASSPHRASE
        is set) and signing-key.pub.pem to give to whoever verifies."""
        from modelward.supplychain.signing import generate_keypair

        private_path, public_path, ident = generate_keypair(out, passphrase=_passphrase())
        click.echo(f"key {ident}: private {private_path} (keep it secret), public {public_path}")

    @cli.command("sign")
    @click.argument("artifact", type=click.Path(path_type=Path))
    @click.option("--key", "key_path", type=click.Path(path_type=Path), required=True, help="Private key (PEM).")
    @click.option("--out", "-o", type=click.Path(path_type=Path), help="Signature file (default ARTIFACT.sig.json).")
    @click.option("--allow-pickle", is_flag=True, help="Sign pickle-family files too (loading them can run code).")
    def sign_command(artifact: Path, key_path: Path, out: Path | None, allow_pickle: bool) -> None:
        """Sign a model artifact (a file or a folder): a detached Ed25519 signature over its file digests."""
        from modelward.supplychain.signing import load_private_key, sign

        written = sign(artifact, load_private_key(key_path, _passphrase()), allow_pickle=allow_pickle, out=out)
        click.echo(f"signed {artifact} -> {written}")

    @cli.command("verify")
    @click.argument("artifact", type=click.Path(path_type=Path))
    @click.option(
        "--public-key",
        "public_keys",
        type=click.Path(path_type=Path),
        multiple=True,
        required=True,
        help="A trusted public key (PEM); repeat for several.",
    )
    @click.option("--signature", type=click.Path(path_type=Path), help="Signature file (default ARTIFACT.sig.json).")
    @click.option("--allow-pickle", is_flag=True, help="Accept pickle-family files (loading them can run code).")
    @click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def verify_command(
        artifact: Path, public_keys: tuple[Path, ...], signature: Path | None, allow_pickle: bool, fmt: str
    ) -> None:
        """Check a model artifact against its signature and trusted keys. Exit 0 valid, 1 invalid, 2 bad input."""
        from modelward.supplychain.signing import load_public_key, verify

        trusted = [load_public_key(path) for path in public_keys]
        result = verify(artifact, trusted, signature=signature, allow_pickle=allow_pickle)
        if fmt == "json":
            click.echo(json.dumps(result.to_dict(), indent=2))
        elif result.valid:
            click.echo(f"valid: {artifact} is signed by key {result.key_id}")
        else:
            click.echo(f"INVALID: {artifact}")
            for problem in result.problems:
                click.echo(f"  - {problem}")
        if not result.valid:
            raise SystemExit(1)
