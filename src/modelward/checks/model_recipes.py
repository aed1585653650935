"""Models a requirement can name: a saved model, or a recipe trained once on built-in data and cached.

A requirement's ``model`` parameter is either ``{path: models/foo}`` (a safetensors + JSON pair,
relative to the system file) or ``{recipe: digits-cnn}``. Recipes train on data that ships with
scikit-learn, seeded, and are cached as safetensors + JSON under ``.modelward-cache/`` beside the
system file, so an audit trains each model once and reuses it (the weights' digest is checked on
every load).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.core.errors import InputError

CACHE_DIR = ".modelward-cache"
#: The epsilon (L∞, on [0, 1] pixels) the robust recipes train for.
TRAIN_EPSILON = 0.1


@dataclass
class ResolvedModel:
    """A model ready to wrap: the torch module, its data, where it came from and how it was made."""

    module: Any
    data: Any  # datasets.builtin.Split
    source: str
    metadata: dict[str, Any]

    def classifier(self) -> Any:
        """The module as a white-box classifier over its data's input shape and bounds."""
        from modelward.classifiers.torch_adapter import TorchClassifier

        return TorchClassifier(self.module, self.data.input_shape, bounds=(self.data.lower, self.data.upper))


def _digits() -> Any:
    from modelward.datasets.builtin import load_digits_images

    return load_digits_images(seed=0)


def _standard(split: Any) -> tuple[Any, dict[str, Any]]:
    import torch

    from modelward.classifiers.models import SmallCNN

    torch.manual_seed(0)  # the initial weights come from the global generator
    from modelward.classifiers.training import train_classifier

    module = train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=15, seed=0)
    return module, {"training": "standard", "epochs": 15}


def _pgd_at(split: Any) -> tuple[Any, dict[str, Any]]:
    import torch

    from modelward.classifiers.models import SmallCNN

    torch.manual_seed(0)
    from modelward.defenses.adversarial_training import adversarial_training

    module, _ = adversarial_training(
        SmallCNN(),
        split.x_train,
        split.y_train,
        epsilon=TRAIN_EPSILON,
        steps=7,
        epochs=30,
        warmup_epochs=3,
        ramp_epochs=5,
        seed=0,
    )
    return module, {"training": "pgd-adversarial", "epsilon": TRAIN_EPSILON, "steps": 7, "epochs": 30}


def _gaussian(split: Any) -> tuple[Any, dict[str, Any]]:
    import torch

    from modelward.classifiers.models import SmallCNN
    from modelward.defenses.smoothing import train_gaussian_augmentation

    torch.manual_seed(0)
    module, _ = train_gaussian_augmentation(SmallCNN(), split.x_train, split.y_train, sigma=0.25, epochs=30, seed=0)
    return module, {"training": "gaussian-augmentation", "sigma": 0.25, "epochs": 30}


#: The ε (at δ = 1/(10·n), PRV accountant) the differentially private recipe spends.
DP_EPSILON = 3.0


def _dp(split: Any) -> tuple[Any, dict[str, Any]]:
    import torch

    from modelward.classifiers.models import SmallCNN
    from modelward.defenses.dp import train_dp

    torch.manual_seed(0)
    result = train_dp(
        SmallCNN(), split.x_train, split.y_train, target_epsilon=DP_EPSILON, epochs=15, batch_size=256, lr=1e-2, seed=0
    )
    return result.module, {
        "training": "dp-sgd",
        "epochs": result.epochs,
        "dp": result.record(lr=1e-2),
    }


Recipe = Callable[[Any], tuple[Any, dict[str, Any]]]
RECIPES: dict[str, tuple[Callable[[], Any], Recipe, str]] = {
    "digits-cnn": (_digits, _standard, "SmallCNN on 8×8 digits, standard training"),
    "digits-cnn-pgd-at": (_digits, _pgd_at, "SmallCNN on 8×8 digits, PGD adversarial training at ε=0.1 (L∞)"),
    "digits-cnn-gaussian": (_digits, _gaussian, "SmallCNN on 8×8 digits, trained with Gaussian noise σ=0.25"),
    "digits-cnn-dp": (_digits, _dp, f"SmallCNN on 8×8 digits, DP-SGD (Opacus) at ε={DP_EPSILON:g}"),
}
DATASETS: dict[str, Callable[[], Any]] = {"digits": _digits}


def resolve_model(spec: Any, base_dir: Path, data: str = "digits") -> ResolvedModel:
    """Load or train (and cache) the model a requirement names."""
    from modelward.classifiers.store import load_model, save_model

    if not isinstance(spec, dict) or len(spec) != 1 or not ({"recipe", "path"} & set(spec)):
        raise InputError("model must be {recipe: NAME} or {path: FILE}", field="params.model")
    if "path" in spec:
        loader = DATASETS.get(data)
        if loader is None:
            raise InputError(f"unknown data {data!r} (known: {', '.join(DATASETS)})", field="params.data")
        path = (base_dir / str(spec["path"])).resolve()
        module, metadata = load_model(path)
        return ResolvedModel(module, loader(), str(path), metadata)
    name = str(spec["recipe"])
    if name not in RECIPES:
        raise InputError(f"unknown model recipe {name!r} (known: {', '.join(RECIPES)})", field="params.model")
    load_data, train, description = RECIPES[name]
    split = load_data()
    cached = base_dir / CACHE_DIR / "models" / name
    if cached.with_suffix(".json").is_file():
        module, metadata = load_model(cached)
        return ResolvedModel(module, split, f"recipe {name} (cached)", metadata)
    started = time.perf_counter()
    module, metadata = train(split)
    from modelward.classifiers.training import accuracy

    metadata.update(
        recipe=name,
        description=description,
        test_accuracy=accuracy(module, split.x_test, split.y_test),
        train_seconds=round(time.perf_counter() - started, 2),
    )
    save_model(module, cached, metadata)
    return ResolvedModel(module, split, f"recipe {name} (trained now)", metadata)
