"""The gateway configuration: defaults, located errors, secrets from the environment, the documented example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelward.core.errors import InputError
from modelward.gateway.config import load_config, resolve_secret
from modelward.gateway.keys import Role

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = "model: {artifact: digits-cnn, public_keys: [keys/model.pub.pem]}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_file_gets_safe_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.server.host == "127.0.0.1"
    assert config.storage.backend == "sqlite"
    assert config.rate_limits.backend == "memory"
    assert config.policy_for(Role.END_USER) == [{"kind": "label_only"}]
    # roles the policy does not name see labels only: deny scores by default
    assert config.policy_for(Role.ADMIN) == [{"kind": "label_only"}]
    assert config.path(config.model.public_keys[0]) == (tmp_path / "keys/model.pub.pem").resolve()


def test_unknown_field_is_located_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "server:\n  hots: 0.0.0.0\n")
    with pytest.raises(InputError) as caught:
        load_config(path)
    assert caught.value.line == 3
    assert "did you mean 'host'" in caught.value.message


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("server: {tls_certfile: cert.pem}\n", "tls_certfile and tls_keyfile go together"),
        ("storage: {backend: postgres}\n", "postgres_url"),
        ("rate_limits: {backend: redis}\n", "redis_url"),
        ("output_policy: {root: [{kind: label_only}]}\n", "root"),
        ("rate_limits: {per_principal: {rate_per_s: 0, burst: 1}}\n", "greater than 0"),
    ],
)
def test_inconsistent_settings_are_refused(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(InputError, match=re.escape(needle)):
        load_config(write(tmp_path, MINIMAL + extra))


def test_missing_file_and_non_mapping_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such gateway configuration file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(InputError, match="expected a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_TEST_URL", "postgresql://u:p@db/x")
    assert resolve_secret("env:MW_TEST_URL", "storage.postgres_url") == "postgresql://u:p@db/x"
    assert resolve_secret("redis://localhost", "rate_limits.redis_url") == "redis://localhost"
    monkeypatch.delenv("MW_TEST_URL")
    with pytest.raises(InputError, match="MW_TEST_URL is not set") as caught:
        resolve_secret("env:MW_TEST_URL", "storage.postgres_url")
    assert "u:p" not in str(caught.value)


def test_secrets_come_from_owner_only_files(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    secret = tmp_path / "keys" / "redis.url"
    secret.write_text("redis://:s3cret@cache:6379/0\n", encoding="utf-8")
    secret.chmod(0o600)
    assert resolve_secret("file:keys/redis.url", "rate_limits.redis_url", tmp_path) == "redis://:s3cret@cache:6379/0"
    assert resolve_secret(f"file:{secret}", "rate_limits.redis_url") == "redis://:s3cret@cache:6379/0"  # absolute
    secret.chmod(0o640)
    with pytest.raises(InputError, match=r"readable by others .*chmod 600") as shared:
        resolve_secret("file:keys/redis.url", "rate_limits.redis_url", tmp_path)
    secret.write_text("  \n", encoding="utf-8")
    secret.chmod(0o600)
    with pytest.raises(InputError, match="is empty"):
        resolve_secret("file:keys/redis.url", "rate_limits.redis_url", tmp_path)
    with pytest.raises(InputError, match="cannot be read") as missing:
        resolve_secret("file:keys/absent", "auth.totp_encryption_key", tmp_path)
    assert "auth.totp_encryption_key" in str(missing.value) and "s3cret" not in str(shared.value)


def test_a_file_secret_resolves_against_the_configuration_folder(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from modelward.gateway.config import totp_secret_box

    (tmp_path / "totp.key").write_bytes(Fernet.generate_key())
    (tmp_path / "totp.key").chmod(0o600)
    config = load_config(write(tmp_path, MINIMAL + "auth: {totp_encryption_key: 'file:totp.key'}\n"))
    sealed = totp_secret_box(config).seal("JBSWY3DPEHPK3PXP")
    assert sealed.startswith("fernet:") and "JBSWY3DPEHPK3PXP" not in sealed


def test_the_documented_reference_configuration_loads(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL) if b.startswith("server:")]
    assert blocks, "docs/gateway.md lost its configuration reference"
    config = load_config(write(tmp_path, blocks[0]))
    assert config.audit.checkpoint_every == 100
    assert config.policy_for(Role.MODERATOR)[0] == {"kind": "top_k", "k": 3}
