"""`modelward serve` with no arguments: keys, a signed moderation model and a config, made once and reused."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from modelward.checks import model_recipes
from modelward.classifiers.models import SmallCNN
from modelward.core.errors import InputError
from modelward.gateway.bootstrap import DEMO_ARTIFACT, prepare_demo, sign_artifact
from modelward.gateway.model_registry import ModelRegistry
from modelward.supplychain.signing import load_public_key, signature_path_for, verify


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Swap the digits-cnn recipe's training for an instant seeded one (the real one is tested with the recipes)."""
    calls: list[int] = []
    load_data, _, description = model_recipes.RECIPES["digits-cnn"]

    def instant(split: Any) -> tuple[Any, dict[str, Any]]:
        calls.append(1)
        torch.manual_seed(0)
        return SmallCNN().eval(), {"training": "instant (test)"}

    monkeypatch.setitem(model_recipes.RECIPES, "digits-cnn", (load_data, instant, description))
    return calls


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_prepare_demo_creates_keys_signed_model_and_config(tmp_path: Path, trainings: list[int]) -> None:
    setup = prepare_demo(tmp_path / "gw")
    work = setup.work_dir
    assert setup.config_path == work / "gateway.yaml"
    for name in ("model-signing.pem", "model-signing.pub", "audit.pem"):
        assert (work / "keys" / name).is_file()
    assert _mode(work / "keys" / "model-signing.pem") == 0o600 and _mode(work / "keys" / "audit.pem") == 0o600
    artifact = work / "models" / DEMO_ARTIFACT
    assert {p.name for p in artifact.iterdir()} == {"model.safetensors", "model.json", "serving.json"}
    serving = json.loads((artifact / "serving.json").read_text(encoding="utf-8"))
    assert serving == {"input": "image-digits", "classes": [str(d) for d in range(10)]}
    result = verify(artifact, [load_public_key(work / "keys" / "model-signing.pub")])
    assert result.valid, result.problems
    assert not list((work / "models").glob(".*")), "no staging leftovers"

    config = yaml.safe_load(setup.config_path.read_text(encoding="utf-8"))
    assert config["storage"]["backend"] == "sqlite" and config["rate_limits"]["backend"] == "memory"
    assert config["model"]["artifact"] == DEMO_ARTIFACT
    assert (work / config["model"]["public_keys"][0]).is_file() and (work / config["audit"]["signing_key"]).is_file()
    assert trainings == [1]


def test_the_config_loads_and_its_model_deploys(tmp_path: Path, trainings: list[int]) -> None:
    config_module = pytest.importorskip("modelward.gateway.config")
    config = config_module.load_config(prepare_demo(tmp_path / "gw").config_path)
    keys = [load_public_key(config.path(p)) for p in config.model.public_keys]
    registry = ModelRegistry(config.path(config.model.models_dir), keys)
    model = registry.deploy(config.model.artifact)
    assert model.classes == tuple(str(d) for d in range(10))
    assert model.classifier.predict(torch.zeros(1, 1, 8, 8)).shape == (1,)


def test_totp_secrets_of_the_demo_are_sealed_with_an_owner_only_key(tmp_path: Path, trainings: list[int]) -> None:
    from modelward.gateway.config import load_config, totp_secret_box
    from modelward.gateway.identity import SQLiteUserStore, UserManager
    from modelward.gateway.keys import Role

    setup = prepare_demo(tmp_path / "gw")
    key_file = setup.work_dir / "keys" / "totp.key"
    assert _mode(key_file) == 0o600
    config = load_config(setup.config_path)
    assert config.auth.totp_encryption_key == "file:keys/totp.key"
    store = SQLiteUserStore()
    secret = UserManager(store, secrets=totp_secret_box(config)).add("ada", Role.ADMIN).totp_secret
    stored = store.get("ada")
    assert secret and stored is not None and stored.totp_secret is not None
    assert stored.totp_secret.startswith("fernet:") and secret not in stored.totp_secret
    key_file.chmod(0o644)  # a key others can read is refused, not used
    with pytest.raises(InputError, match="readable by others"):
        totp_secret_box(load_config(setup.config_path))


def test_second_call_reuses_everything(tmp_path: Path, trainings: list[int]) -> None:
    first = prepare_demo(tmp_path / "gw")
    work = first.work_dir
    watched = [
        work / "keys" / "model-signing.pem",
        work / "keys" / "audit.pem",
        work / "keys" / "totp.key",
        work / "models" / DEMO_ARTIFACT / "model.safetensors",
        signature_path_for(work / "models" / DEMO_ARTIFACT),
        first.config_path,
    ]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    second = prepare_demo(tmp_path / "gw")
    assert second == first
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before
    assert trainings == [1], "the recipe must not be trained again"


def test_a_tampered_demo_model_is_rebuilt_not_re_signed_as_found(tmp_path: Path, trainings: list[int]) -> None:
    work = prepare_demo(tmp_path / "gw").work_dir
    artifact = work / "models" / DEMO_ARTIFACT
    original = (artifact / "model.safetensors").read_bytes()
    (artifact / "model.safetensors").write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    (artifact / "planted.txt").write_text("x", encoding="utf-8")
    prepare_demo(work)
    assert (artifact / "model.safetensors").read_bytes() == original
    assert not (artifact / "planted.txt").exists()
    assert verify(artifact, [load_public_key(work / "keys" / "model-signing.pub")]).valid
    assert trainings == [1], "rebuilt from the cached recipe, not retrained"


def test_sign_artifact_writes_a_verifying_signature(tmp_path: Path, trainings: list[int]) -> None:
    work = prepare_demo(tmp_path / "gw").work_dir
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"\x00" * 64)
    signature = sign_artifact(folder, work / "keys" / "model-signing.pem")
    assert signature == signature_path_for(folder)
    assert verify(folder, [load_public_key(work / "keys" / "model-signing.pub")]).valid
