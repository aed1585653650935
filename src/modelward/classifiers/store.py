"""Saving and loading models as safetensors plus a JSON metadata file: weights only, never pickle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from modelward.classifiers.base import ClassifierError
from modelward.classifiers.models import ARCHITECTURES
from modelward.core.files import write_text_atomic

FORMAT = "modelward.model/1"


def save_model(module: nn.Module, path: Path, metadata: dict[str, Any]) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json`` (architecture, config, metadata, weight digest)."""
    from safetensors.torch import save_file

    architecture = type(module).__name__
    if architecture not in ARCHITECTURES:
        raise ClassifierError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = path.with_suffix(".safetensors")
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in module.state_dict().items()}
    save_file(state, str(weights))
    document = {
        "format": FORMAT,
        "architecture": architecture,
        "config": getattr(module, "config", {}),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "metadata": metadata,
    }
    write_text_atomic(path.with_suffix(".json"), json.dumps(document, indent=2, sort_keys=True) + "\n")
    return weights


def load_model(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved model: the JSON names the architecture, safetensors holds the weights.

    The weights' SHA-256 must match the one recorded at save time, so a swapped file is refused.
    """
    from safetensors.torch import load_file

    meta_path, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not meta_path.is_file() or not weights.is_file():
        raise ClassifierError(f"no saved model at {path} (expected {meta_path.name} and {weights.name})")
    try:
        document = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ClassifierError(f"{meta_path}: not JSON ({exc.msg})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ClassifierError(f"{meta_path}: not a {FORMAT} metadata file")
    architecture = ARCHITECTURES.get(str(document.get("architecture")))
    if architecture is None:
        raise ClassifierError(f"{meta_path}: unknown architecture {document.get('architecture')!r}")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != document.get("sha256"):
        raise ClassifierError(f"{weights}: weights do not match the digest recorded in {meta_path.name}")
    module = architecture(**document.get("config", {}))
    try:
        module.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:
        raise ClassifierError(f"{weights}: weights do not fit {architecture.__name__}: {exc}") from None
    metadata: dict[str, Any] = document.get("metadata", {})
    return module.eval(), metadata
