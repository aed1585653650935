"""The model registry serves only signed, untampered, pickle-free artifacts, loaded from a private verified copy."""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

pytest.importorskip("skops", reason="skops comes with the serve extra")

import skops.io

from modelward.classifiers.models import SmallCNN
from modelward.classifiers.store import save_model
from modelward.core.errors import InputError
from modelward.gateway import model_registry
from modelward.gateway.model_registry import ModelRefused, ModelRegistry, ServedModel
from modelward.supplychain.signing import sign, signature_path_for

DIGITS = [str(d) for d in range(10)]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Staging folders go to a private temp root, so the tests can see that none is left behind.
    stage_root = tmp_path / "tmp"
    stage_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(stage_root))
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def _module(seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN().eval()


def torch_artifact(models: Path, name: str, key: Ed25519PrivateKey | None, *, seed: int = 0) -> Path:
    """A SmallCNN saved as safetensors + JSON with serving.json, signed by ``key`` (unsigned when None)."""
    folder = models / name
    folder.mkdir(exist_ok=True)
    save_model(_module(seed), folder / "model", {"seed": seed})
    (folder / "serving.json").write_text(json.dumps({"input": "image-digits", "classes": DIGITS}), encoding="utf-8")
    if key is not None:
        sign(folder, key)
    return folder


def registry(models: Path, key: Ed25519PrivateKey, **options: Any) -> ModelRegistry:
    return ModelRegistry(models, [key.public_key()], **options)


def probe() -> torch.Tensor:
    return torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(7))


def expected_scores(seed: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(_module(seed)(probe()), dim=1)


def test_signed_torch_artifact_loads_and_predicts(models: Path, key: Ed25519PrivateKey) -> None:
    torch_artifact(models, "cnn", key, seed=3)
    reg = registry(models, key)
    before = reg.current
    assert before is None
    model = reg.deploy("cnn")
    assert reg.current is model
    assert len(model.version) == 12 and model.manifest_sha256.startswith(model.version)
    assert model.input_kind == "image-digits" and model.classes == tuple(DIGITS)
    assert torch.allclose(model.classifier.probabilities(probe()), expected_scores(3), atol=1e-6)
    described = model.describe()
    json.dumps(described, allow_nan=False)
    assert described["artifact"] == "cnn" and described["version"] == model.version
    assert not any((models.parent / "tmp").iterdir()), "the staging copy must be removed after loading"


def test_version_follows_content(models: Path, key: Ed25519PrivateKey) -> None:
    torch_artifact(models, "a", key, seed=1)
    torch_artifact(models, "b", key, seed=1)
    torch_artifact(models, "c", key, seed=2)
    reg = registry(models, key)
    assert reg.load("a").version == reg.load("b").version != reg.load("c").version


def _unsigned(models: Path, key: Ed25519PrivateKey) -> None:
    torch_artifact(models, "bad", None)


def _tampered(models: Path, key: Ed25519PrivateKey) -> None:
    weights = torch_artifact(models, "bad", key) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))


def _wrong_key(models: Path, key: Ed25519PrivateKey) -> None:
    torch_artifact(models, "bad", Ed25519PrivateKey.generate())


def _added_file(models: Path, key: Ed25519PrivateKey) -> None:
    (torch_artifact(models, "bad", key) / "notes.txt").write_text("slipped in later", encoding="utf-8")


def _pickle(models: Path, key: Ed25519PrivateKey) -> None:
    folder = torch_artifact(models, "bad", None)
    (folder / "extra.data").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))  # a pickle by content, not by name
    sign(folder, key, allow_pickle=True)


def _altered_signature(models: Path, key: Ed25519PrivateKey) -> None:
    folder = torch_artifact(models, "bad", key)
    path = signature_path_for(folder)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["manifest"]["files"][0]["size"] += 1
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_unsigned, "unsigned"),
        (_tampered, "modified file: model.safetensors"),
        (_wrong_key, "untrusted key"),
        (_added_file, "added file: notes.txt"),
        (_pickle, "pickle"),
        (_altered_signature, "signature does not match"),
    ],
    ids=["unsigned", "tampered", "wrong-key", "added-file", "pickle", "altered-signature"],
)
def test_refused_artifacts_leave_the_current_model_serving(
    models: Path, key: Ed25519PrivateKey, make: Any, problem: str
) -> None:
    torch_artifact(models, "good", key)
    reg = registry(models, key)
    good = reg.deploy("good")
    make(models, key)
    with pytest.raises(ModelRefused, match=problem) as caught:
        reg.deploy("bad")
    assert caught.value.artifact == "bad" and caught.value.problems
    assert reg.current is good and reg.history() == []
    assert not any((models.parent / "tmp").iterdir()), "a refused load must not leave its staging copy"


def test_a_symbolic_link_inside_the_artifact_is_refused(models: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    folder = torch_artifact(models, "linked", key)
    outside = tmp_path / "outside.txt"
    outside.write_text("x", encoding="utf-8")
    (folder / "link.txt").symlink_to(outside)
    with pytest.raises(ModelRefused, match="symbolic link"):
        registry(models, key).load("linked")


@pytest.mark.parametrize("name", ["../models/good", "..", ".", "", "a/b", "/etc", "good/", ".hidden", "x\\y", "a\x00b"])
def test_names_that_are_not_a_plain_folder_are_refused(models: Path, key: Ed25519PrivateKey, name: str) -> None:
    torch_artifact(models, "good", key)
    with pytest.raises(InputError, match="plain folder name"):
        registry(models, key).load(name)


def test_links_out_of_models_dir_and_missing_folders_are_refused(
    models: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    torch_artifact(elsewhere, "evil", key)
    (models / "evil").symlink_to(elsewhere / "evil", target_is_directory=True)
    reg = registry(models, key)
    with pytest.raises(InputError, match="symbolic link"):
        reg.load("evil")
    with pytest.raises(InputError, match="no artifact folder"):
        reg.load("absent")


def test_deploy_and_rollback_keep_order_and_bound(models: Path, key: Ed25519PrivateKey) -> None:
    for seed, name in enumerate("abcd"):
        torch_artifact(models, name, key, seed=seed)
    reg = registry(models, key, keep_versions=2)
    with pytest.raises(InputError, match="no previous model"):
        reg.rollback()
    for name in "abcd":
        reg.deploy(name)
    assert reg.current is not None and reg.current.artifact == "d"
    assert [m.artifact for m in reg.history()] == ["c", "b"]
    assert reg.rollback().artifact == "c"
    assert [m.artifact for m in reg.history()] == ["b"]
    assert reg.rollback().artifact == "b"
    assert reg.current.artifact == "b" and reg.history() == []
    with pytest.raises(InputError, match="no previous model"):
        reg.rollback()
    assert reg.current.artifact == "b"


def test_concurrent_deploys_keep_a_consistent_state(models: Path, key: Ed25519PrivateKey) -> None:
    torch_artifact(models, "a", key, seed=0)
    torch_artifact(models, "b", key, seed=1)
    reg = registry(models, key, keep_versions=3)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            for _ in range(4):
                reg.deploy(name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in "abab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert reg.current is not None and reg.current.artifact in {"a", "b"}
    assert len(reg.history()) == 3


def test_files_swapped_after_load_do_not_change_the_model(models: Path, key: Ed25519PrivateKey) -> None:
    torch_artifact(models, "cnn", key, seed=0)
    reg = registry(models, key)
    model = reg.deploy("cnn")
    torch_artifact(models, "cnn", key, seed=5)  # replaced and even re-signed on disk
    assert torch.allclose(model.classifier.probabilities(probe()), expected_scores(0), atol=1e-6)
    assert reg.current is model


def test_a_swap_between_verification_and_load_is_not_seen(
    models: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch_artifact(models, "cnn", key, seed=0)
    real_verify = model_registry.verify

    def verify_then_swap(*args: Any, **kwargs: Any) -> Any:
        result = real_verify(*args, **kwargs)
        torch_artifact(models, "cnn", None, seed=9)  # an attacker replaces the weights right after the check
        return result

    monkeypatch.setattr(model_registry, "verify", verify_then_swap)
    model = registry(models, key).load("cnn")
    assert torch.allclose(model.classifier.probabilities(probe()), expected_scores(0), atol=1e-6)


def test_serving_file_must_match_the_model(models: Path, key: Ed25519PrivateKey) -> None:
    folder = torch_artifact(models, "cnn", None)
    (folder / "serving.json").write_text(json.dumps({"input": "image-digits", "classes": ["a", "b"]}), encoding="utf-8")
    sign(folder, key)
    with pytest.raises(ModelRefused, match="names 2"):
        registry(models, key).load("cnn")


# --- scikit-learn through skops ----------------------------------------------------------------------


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data, target = load_breast_cancer(return_X_y=True)
    standard = (data - data.mean(axis=0)) / data.std(axis=0)
    return standard.astype(np.float32), target


def skops_artifact(models: Path, name: str, estimator: Any, key: Ed25519PrivateKey, schema: dict[str, Any]) -> Path:
    folder = models / name
    folder.mkdir()
    skops.io.dump(estimator, folder / "model.skops")
    serving = {"input": "tabular", "classes": ["malignant", "benign"], "tabular_schema": schema}
    (folder / "serving.json").write_text(json.dumps(serving), encoding="utf-8")
    sign(folder, key)
    return folder


def test_signed_sklearn_model_loads_through_skops(models: Path, key: Ed25519PrivateKey) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _breast_cancer()
    estimator = LogisticRegression(max_iter=2000).fit(x, y)
    skops_artifact(models, "lr", estimator, key, {"n_features": 30, "lower": -20, "upper": 20, "max_rows": 64})
    model = registry(models, key).deploy("lr")
    assert model.input_kind == "tabular" and model.classes == ("malignant", "benign")
    assert model.tabular_schema is not None and model.tabular_schema.n_features == 30
    rows = torch.from_numpy(x[:16])
    scores = model.classifier.probabilities(rows)
    assert np.allclose(scores.numpy(), estimator.predict_proba(x[:16]), atol=1e-6)
    assert model.describe()["tabular_schema"] == {"n_features": 30, "lower": -20.0, "upper": 20.0, "max_rows": 64}


def test_allow_listed_sklearn_types_load(models: Path, key: Ed25519PrivateKey) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _breast_cancer()
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    assert skops.io.get_untrusted_types(data=skops.io.dumps(forest))  # the Tree needs our allow-list
    skops_artifact(models, "forest", forest, key, {"n_features": 30})
    model = registry(models, key).load("forest")
    assert model.tabular_schema is not None and math.isinf(model.tabular_schema.upper)
    assert model.describe()["tabular_schema"]["upper"] is None
    assert model.classifier.predict(torch.from_numpy(x[:8])).tolist() == forest.predict(x[:8]).tolist()


def test_skops_file_with_an_untrusted_type_is_refused(
    models: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _breast_cancer()
    estimator = LogisticRegression(max_iter=2000).fit(x, y)
    estimator.hook = os.system  # rebuilding this would hand the file a way to run commands
    skops_artifact(models, "evil", estimator, key, {"n_features": 30})
    loads: list[Any] = []
    monkeypatch.setattr(skops.io, "load", lambda *a, **k: loads.append(a))
    with pytest.raises(ModelRefused, match=r"untrusted types: \w+\.system"):
        registry(models, key).load("evil")
    assert loads == [], "an untrusted skops file must never reach skops.io.load"


def test_served_model_is_frozen(models: Path, key: Ed25519PrivateKey) -> None:
    torch_artifact(models, "cnn", key)
    model = registry(models, key).load("cnn")
    assert isinstance(model, ServedModel)
    with pytest.raises(AttributeError):
        setattr(model, "version", "x")  # noqa: B010 - a frozen dataclass refuses this


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_special_file_inside_the_artifact_is_refused_without_blocking(models: Path, key: Ed25519PrivateKey) -> None:
    folder = torch_artifact(models, "piped", key)
    os.mkfifo(folder / "pipe")
    with pytest.raises(ModelRefused, match="not a regular file: pipe"):
        registry(models, key).load("piped")


def test_allow_pickle_verifies_but_never_unpickles(models: Path, key: Ed25519PrivateKey) -> None:
    folder = models / "pickled"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps({"weights": [1]}))
    (folder / "serving.json").write_text(json.dumps({"input": "tabular", "classes": ["a", "b"]}), encoding="utf-8")
    sign(folder, key, allow_pickle=True)
    with pytest.raises(ModelRefused, match="no model file"):
        registry(models, key, allow_pickle=True).load("pickled")


def test_a_signed_but_inconsistent_model_is_refused_clearly(models: Path, key: Ed25519PrivateKey) -> None:
    folder = torch_artifact(models, "odd", None)
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    meta["sha256"] = "0" * 64
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    sign(folder, key)
    with pytest.raises(ModelRefused, match=r"could not be loaded.*do not match"):
        registry(models, key).load("odd")
