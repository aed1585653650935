"""The gateway's model registry: a model is served only after its signature verifies, then deployed or rolled back.

An artifact is a folder under ``models_dir`` holding a torch model (``model.safetensors`` + ``model.json``,
see :mod:`modelward.classifiers.store`) or a scikit-learn model saved with skops (``model.skops``), plus
``serving.json`` (``{"input": "image-digits" | "tabular", "classes": [...], "tabular_schema": {...}}``).
Its detached signature ``<folder>.sig.json`` lies beside it. Loading first copies the folder and its
signature into a private staging folder, verifies the *copy*, and loads from that copy, so nobody can
swap a file between the check and the load. Nothing is ever unpickled; skops files load only when every
type they would build is one we name as safe.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from modelward.classifiers.base import Classifier
from modelward.core.errors import InputError, ModelwardError
from modelward.gateway.uploads import TabularSchema
from modelward.supplychain.signing import canonical, signature_path_for, verify

__all__ = [
    "DIGITS_INPUT_SHAPE",
    "INPUT_KINDS",
    "SKOPS_ALLOWED_TYPES",
    "ModelRefused",
    "ModelRegistry",
    "ServedModel",
]

INPUT_KINDS = ("image-digits", "tabular")
DIGITS_INPUT_SHAPE = (1, 8, 8)
SERVING_FILE = "serving.json"
MAX_ARTIFACT_BYTES = 2 * 1024**3
MAX_SMALL_FILE_BYTES = 16 * 1024**2
_CHUNK = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Types a skops file may ask us to trust beyond skops' own defaults: plain data holders of
#: scikit-learn, NumPy and SciPy that run no code of the file's choosing when rebuilt.
SKOPS_ALLOWED_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.bool_",
        "numpy.int32",
        "numpy.int64",
        "numpy.float32",
        "numpy.float64",
        "numpy.random.mtrand.RandomState",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random._generator.Generator",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
    }
)


class ModelRefused(InputError):
    """An artifact that may not be served; ``problems`` names every reason (unsigned, tampered, untrusted...)."""

    def __init__(self, artifact: str, problems: Sequence[str]) -> None:
        super().__init__(f"model {artifact!r} refused: " + "; ".join(problems))
        self.artifact = artifact
        self.problems = list(problems)


@dataclass(frozen=True)
class ServedModel:
    """One verified, loaded model version, ready to classify."""

    version: str
    artifact: str
    key_id: str
    manifest_sha256: str
    loaded_at: str
    input_kind: str
    classes: tuple[str, ...]
    classifier: Classifier
    tabular_schema: TabularSchema | None = None

    def describe(self) -> dict[str, Any]:
        """What the model is, as JSON-safe data (infinite bounds become null); the classifier is left out."""
        return {
            "version": self.version,
            "artifact": self.artifact,
            "key_id": self.key_id,
            "manifest_sha256": self.manifest_sha256,
            "loaded_at": self.loaded_at,
            "input": self.input_kind,
            "classes": list(self.classes),
            "tabular_schema": _schema_dict(self.tabular_schema),
        }


def _json_bound(value: float | Sequence[float]) -> float | list[float | None] | None:
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return [float(v) if math.isfinite(v) else None for v in value]


def _schema_dict(schema: TabularSchema | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    return {
        "n_features": schema.n_features,
        "lower": _json_bound(schema.lower),
        "upper": _json_bound(schema.upper),
        "max_rows": schema.max_rows,
    }


# --- staging ---------------------------------------------------------------------------------------


def _copy_file(source: Path, target: Path, budget: int, artifact: str) -> int:
    """Copy one regular file without following links or blocking on special files; return the bytes copied."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(source, flags)
    except OSError:
        raise ModelRefused(artifact, [f"cannot open {source.name} (a link, or not a file)"]) from None
    with os.fdopen(descriptor, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise ModelRefused(artifact, [f"not a regular file: {source.name}"])
        copied = 0
        with target.open("xb") as writer:
            for chunk in iter(lambda: reader.read(_CHUNK), b""):
                copied += len(chunk)
                if copied > budget:
                    raise ModelRefused(artifact, [f"the artifact exceeds {MAX_ARTIFACT_BYTES} bytes"])
                writer.write(chunk)
    return copied


def _copy_tree(source: Path, target: Path, artifact: str) -> None:
    """Copy regular files and folders only; links and special files are refused, the total size is bounded."""
    total = 0
    for root, dirs, files in os.walk(source, followlinks=False):
        relative = Path(root).relative_to(source)
        (target / relative).mkdir(mode=0o700, exist_ok=True)
        for name in sorted(dirs + files):
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ModelRefused(artifact, [f"symbolic link in the artifact: {(relative / name).as_posix()}"])
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise ModelRefused(artifact, [f"not a regular file: {(relative / name).as_posix()}"])
            total += _copy_file(path, target / relative / name, MAX_ARTIFACT_BYTES - total, artifact)


def _read_small(path: Path, what: str, artifact: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SMALL_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ModelRefused(artifact, [f"no {what}"]) from None
    if len(data) > MAX_SMALL_FILE_BYTES:
        raise ModelRefused(artifact, [f"the {what} is larger than {MAX_SMALL_FILE_BYTES} bytes"])
    return data


# --- loading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Serving:
    input_kind: str
    classes: tuple[str, ...]
    schema: TabularSchema | None


def _bound(value: Any, name: str, artifact: str) -> float | tuple[float, ...]:
    if value is None:
        return -math.inf if name == "lower" else math.inf
    if isinstance(value, bool) or not isinstance(value, int | float | list):
        raise ModelRefused(artifact, [f"{SERVING_FILE}: tabular_schema.{name} must be a number or a list"])
    if isinstance(value, list):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise ModelRefused(artifact, [f"{SERVING_FILE}: tabular_schema.{name} must hold numbers"])
        return tuple(float(v) for v in value)
    return float(value)


def _read_serving(folder: Path, artifact: str) -> _Serving:
    try:
        document = json.loads(_read_small(folder / SERVING_FILE, SERVING_FILE, artifact).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelRefused(artifact, [f"{SERVING_FILE} is not JSON"]) from None
    if not isinstance(document, dict):
        raise ModelRefused(artifact, [f"{SERVING_FILE} must be an object"])
    kind = document.get("input")
    if kind not in INPUT_KINDS:
        raise ModelRefused(artifact, [f"{SERVING_FILE}: input must be one of {', '.join(INPUT_KINDS)}"])
    classes = document.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise ModelRefused(artifact, [f"{SERVING_FILE}: classes must be a list of at least two names"])
    schema: TabularSchema | None = None
    raw = document.get("tabular_schema")
    if raw is not None:
        if kind != "tabular" or not isinstance(raw, dict):
            raise ModelRefused(artifact, [f"{SERVING_FILE}: tabular_schema is an object, for tabular input only"])
        unknown = set(raw) - {"n_features", "lower", "upper", "max_rows"}
        n_features, max_rows = raw.get("n_features"), raw.get("max_rows", 1024)
        if unknown or not isinstance(n_features, int) or not isinstance(max_rows, int):
            raise ModelRefused(
                artifact, [f"{SERVING_FILE}: tabular_schema needs integer n_features (and max_rows), nothing else"]
            )
        try:
            schema = TabularSchema(
                n_features,
                _bound(raw.get("lower"), "lower", artifact),
                _bound(raw.get("upper"), "upper", artifact),
                max_rows,
            )
        except InputError as exc:
            raise ModelRefused(artifact, [f"{SERVING_FILE}: tabular_schema: {exc.message}"]) from None
    return _Serving(str(kind), tuple(classes), schema)


def _span(schema: TabularSchema | None) -> tuple[float, float]:
    """One closed interval holding every feature's bounds (the classifier's input spec is a single interval)."""
    if schema is None:
        return -math.inf, math.inf
    low, high = schema.bounds()
    return float(low.min()), float(high.max())


def _load_torch(folder: Path, serving: _Serving, artifact: str) -> tuple[Classifier, TabularSchema | None]:
    import torch

    from modelward.classifiers.store import load_model
    from modelward.classifiers.torch_adapter import TorchClassifier

    module, _ = load_model(folder / "model")
    if serving.input_kind == "image-digits":
        shape: tuple[int, ...] = DIGITS_INPUT_SHAPE
        bounds, schema = (0.0, 1.0), None
    else:
        if serving.schema is None:
            raise ModelRefused(artifact, [f"{SERVING_FILE}: a torch tabular model needs tabular_schema"])
        shape, bounds, schema = (serving.schema.n_features,), _span(serving.schema), serving.schema
    classifier = TorchClassifier(module, shape, bounds=bounds, num_classes=len(serving.classes))
    probe = torch.zeros((1, *shape)).clamp(bounds[0], bounds[1])
    with torch.no_grad():
        out = module(probe)
    if out.dim() != 2 or int(out.shape[1]) != len(serving.classes):
        raise ModelRefused(
            artifact, [f"the model gives {tuple(out.shape)} outputs but {SERVING_FILE} names {len(serving.classes)}"]
        )
    return classifier, schema


def _load_skops(path: Path, artifact: str) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises many kinds on a malformed file
        raise ModelRefused(artifact, [f"model.skops is not a readable skops file ({type(exc).__name__})"]) from None
    refused = sorted(set(untrusted) - SKOPS_ALLOWED_TYPES)
    if refused:
        raise ModelRefused(artifact, [f"model.skops holds untrusted types: {', '.join(refused)}"])
    try:
        return skops.io.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise ModelRefused(artifact, [f"model.skops could not be loaded ({type(exc).__name__}: {exc})"]) from None


def _load_sklearn(folder: Path, serving: _Serving, artifact: str) -> tuple[Classifier, TabularSchema | None]:
    from modelward.classifiers.sklearn_adapter import SklearnClassifier

    if serving.input_kind != "tabular":
        raise ModelRefused(artifact, ["a scikit-learn model serves tabular input only"])
    estimator = _load_skops(folder / "model.skops", artifact)
    if not hasattr(estimator, "predict"):
        raise ModelRefused(artifact, ["model.skops does not hold an estimator with predict"])
    n_features = getattr(estimator, "n_features_in_", None)
    schema = serving.schema or (TabularSchema(int(n_features)) if isinstance(n_features, int) else None)
    if schema is None or n_features != schema.n_features:
        raise ModelRefused(
            artifact,
            [f"the estimator takes {n_features} features but tabular_schema says {schema and schema.n_features}"],
        )
    classifier = SklearnClassifier(estimator, bounds=_span(schema))
    if classifier.num_classes != len(serving.classes):
        raise ModelRefused(
            artifact,
            [f"the estimator has {classifier.num_classes} classes but {SERVING_FILE} names {len(serving.classes)}"],
        )
    return classifier, schema


def _load_artifact(folder: Path, artifact: str) -> tuple[_Serving, Classifier, TabularSchema | None]:
    serving = _read_serving(folder, artifact)
    torch_files = (folder / "model.safetensors").is_file() or (folder / "model.json").is_file()
    skops_file = (folder / "model.skops").is_file()
    if torch_files and skops_file:
        raise ModelRefused(artifact, ["the artifact holds both a torch and a skops model; keep one"])
    try:
        if torch_files:
            classifier, schema = _load_torch(folder, serving, artifact)
        elif skops_file:
            classifier, schema = _load_sklearn(folder, serving, artifact)
        else:
            raise ModelRefused(artifact, ["no model file (model.safetensors + model.json, or model.skops)"])
    except ModelRefused:
        raise
    except (ModelwardError, RuntimeError, ValueError, TypeError, KeyError, OSError) as exc:
        raise ModelRefused(artifact, [f"the model could not be loaded ({type(exc).__name__}: {exc})"]) from None
    return serving, classifier, schema


# --- the registry ----------------------------------------------------------------------------------


class ModelRegistry:
    """Loads signed artifacts from ``models_dir``, serves one as ``current`` and keeps earlier ones to roll back to."""

    def __init__(
        self,
        models_dir: Path,
        public_keys: Sequence[Ed25519PublicKey],
        *,
        allow_pickle: bool = False,
        keep_versions: int = 5,
    ) -> None:
        if not public_keys:
            raise InputError("the model registry needs at least one trusted public key")
        if keep_versions < 1:
            raise InputError("keep_versions must be at least 1")
        self.models_dir = Path(models_dir)
        self._keys = list(public_keys)
        self._allow_pickle = allow_pickle
        self._keep = keep_versions
        self._lock = threading.Lock()  # guards current and history
        self._deploying = threading.Lock()  # one deploy or rollback at a time
        self._current: ServedModel | None = None
        self._history: deque[ServedModel] = deque(maxlen=keep_versions)

    def _locate(self, artifact: str) -> Path:
        if not isinstance(artifact, str) or not _NAME.match(artifact) or artifact in {".", ".."}:
            raise InputError(f"artifact must be a plain folder name (letters, digits, '.', '_', '-'), got {artifact!r}")
        root = self.models_dir.resolve()
        folder = self.models_dir / artifact
        if folder.is_symlink():
            raise InputError(f"artifact {artifact!r} is a symbolic link; copy the model in")
        resolved = folder.resolve()
        if resolved.parent != root:
            raise InputError(f"artifact {artifact!r} lies outside models_dir")
        if not resolved.is_dir():
            raise InputError(f"no artifact folder {artifact!r} in {self.models_dir}")
        return resolved

    def load(self, artifact: str) -> ServedModel:
        """Copy, verify and load ``artifact``; :class:`ModelRefused` names every problem when it may not be served."""
        folder = self._locate(artifact)
        staging = Path(tempfile.mkdtemp(prefix="modelward-stage-"))  # created 0700
        try:
            staged = staging / artifact
            signature = signature_path_for(staged)
            source_signature = signature_path_for(folder)
            if not source_signature.is_file():
                raise ModelRefused(artifact, [f"unsigned: no signature file {source_signature.name} beside it"])
            signature_bytes = _read_small(source_signature, "signature file", artifact)
            _copy_tree(folder, staged, artifact)
            signature.write_bytes(signature_bytes)
            try:
                result = verify(staged, self._keys, signature=signature, allow_pickle=self._allow_pickle)
            except InputError as exc:
                raise ModelRefused(artifact, [exc.message]) from None
            if not result.valid or result.key_id is None:
                raise ModelRefused(artifact, result.problems or ["the signature does not verify"])
            manifest = json.loads(signature_bytes.decode("utf-8"))["manifest"]
            digest = hashlib.sha256(canonical(manifest)).hexdigest()
            serving, classifier, schema = _load_artifact(staged, artifact)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ServedModel(
            version=digest[:12],
            artifact=artifact,
            key_id=result.key_id,
            manifest_sha256=digest,
            loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            input_kind=serving.input_kind,
            classes=serving.classes,
            classifier=classifier,
            tabular_schema=schema,
        )

    def deploy(self, artifact: str) -> ServedModel:
        """Load ``artifact`` and make it current, the previous one going onto the history; a failure changes nothing."""
        with self._deploying:
            model = self.load(artifact)
            with self._lock:
                if self._current is not None:
                    self._history.appendleft(self._current)
                self._current = model
            return model

    def rollback(self) -> ServedModel:
        """Serve the most recent previous model again (the current one is dropped)."""
        with self._deploying, self._lock:
            if not self._history:
                raise InputError("no previous model to roll back to")
            self._current = self._history.popleft()
            return self._current

    @property
    def current(self) -> ServedModel | None:
        """The model being served, or None before the first deploy."""
        with self._lock:
            return self._current

    def history(self) -> list[ServedModel]:
        """Earlier models, most recent first (at most ``keep_versions``)."""
        with self._lock:
            return list(self._history)
