"""Training the shadow and reference models membership attacks compare a target against, locally or on Ray.

A reference model is described by a :class:`ModelSpec`: plain, picklable data naming a model
factory from a registry (``"mlp"``, ``"small-cnn"``), its hyper-parameters, the population indices
it trains on and its seed. Engines turn specs into weights:

* :class:`LocalEngine` trains in this process (``workers=1``) or in a pool of ``spawn``-started
  processes, each pinned to one torch thread;
* :class:`RayEngine` sends the same work to Ray (``ray.init`` locally, no dashboard), imported lazily.

Every engine trains with exactly the same code on one torch thread, so a spec yields bit-identical
weights whichever engine runs it. Weights travel between processes as safetensors bytes (never
pickled tensors). With a cache folder, trained weights and the signals computed from them
(log-probabilities on a data set) are stored as safetensors keyed by a SHA-256 of the spec and
the data, so a second run trains and queries nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import multiprocessing
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from modelward.attacks.inference.signals import log_probabilities
from modelward.classifiers.models import MLP, SmallCNN
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import train_classifier
from modelward.core.errors import InputError
from modelward.core.progress import Progress, report
from modelward.datasets.synthetic import Population, tensor_fingerprint

SPEC_VERSION = "modelward.reference/1"
"""Part of every cache key: bump it when training changes, so old weights are never reused."""

ParamValue = int | float | str | bool

FACTORIES: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "small-cnn": SmallCNN}
"""Named model factories a spec may use. Worker processes import this module afresh, so a factory
added with :func:`register_factory` must be registered when its own module is imported."""


def register_factory(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``factory`` (keyword hyper-parameters → module) available to specs as ``name``."""
    if not name or not isinstance(name, str):
        raise InputError("a factory needs a non-empty name")
    FACTORIES[name] = factory


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines one trained model: factory, parameters, training indices, seed, schedule."""

    factory: str
    params: Mapping[str, ParamValue]
    indices: tuple[int, ...]
    seed: int
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.factory not in FACTORIES:
            raise InputError(f"unknown model factory {self.factory!r}; known: {', '.join(sorted(FACTORIES))}")
        for name, value in self.params.items():
            if not isinstance(name, str) or not isinstance(value, (int, float, str, bool)):
                raise InputError(f"model parameter {name!r} must be a plain number, string or boolean")
        if not self.indices:
            raise InputError("a model spec needs at least one training index")
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError("epochs and batch_size must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0) or not (
            math.isfinite(self.weight_decay) and self.weight_decay >= 0
        ):
            raise InputError("lr must be > 0 and weight_decay >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data (the cache key hashes exactly this)."""
        return {
            "factory": self.factory,
            "params": {k: self.params[k] for k in sorted(self.params)},
            "indices": list(self.indices),
            "seed": self.seed,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
        }

    def key(self, data_fingerprint: str) -> str:
        """SHA-256 of the spec, the training data's fingerprint and :data:`SPEC_VERSION`."""
        text = json.dumps(
            {"version": SPEC_VERSION, "data": data_fingerprint, "spec": self.to_dict()},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def build(self) -> nn.Module:
        """A freshly initialised module (the initialisation is seeded by :meth:`train` callers)."""
        factory = FACTORIES.get(self.factory)
        if factory is None:
            raise InputError(f"unknown model factory {self.factory!r}; known: {', '.join(sorted(FACTORIES))}")
        try:
            return factory(**dict(self.params))
        except TypeError as exc:
            raise InputError(f"model factory {self.factory!r} rejected its parameters: {exc}") from None

    def check_population(self, size: int) -> None:
        """Refuse indices outside a population of ``size`` records, or repeated ones."""
        if min(self.indices) < 0 or max(self.indices) >= size:
            raise InputError(f"model spec indices must lie in [0, {size - 1}]")
        if len(set(self.indices)) != len(self.indices):
            raise InputError("model spec indices must not repeat")


@dataclass(frozen=True)
class TrainedModel:
    """A spec and its trained weights (``cached``: loaded from the cache rather than trained now)."""

    spec: ModelSpec
    state: dict[str, torch.Tensor]
    key: str
    seconds: float = 0.0
    cached: bool = False

    def module(self) -> nn.Module:
        """The trained module, in evaluation mode."""
        module = self.spec.build()
        module.load_state_dict(self.state)
        return module.eval()


# --------------------------------------------------------------------------------------------
# training (the one code path every engine runs)
# --------------------------------------------------------------------------------------------
@contextmanager
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_spec(spec: ModelSpec, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Train one spec on its rows of ``(x, y)``, on one torch thread; returns the state dict (copies)."""
    spec.check_population(int(x.shape[0]))
    index = torch.tensor(spec.indices, dtype=torch.long)
    with _one_thread():
        torch.manual_seed(spec.seed)
        module = spec.build()
        train_classifier(
            module,
            x[index],
            y[index],
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            lr=spec.lr,
            weight_decay=spec.weight_decay,
            seed=spec.seed,
        )
    return {name: tensor.detach().clone().contiguous() for name, tensor in module.state_dict().items()}


def _train_to_bytes(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> tuple[bytes, float]:
    from safetensors.torch import save

    started = time.perf_counter()
    state = train_spec(spec, torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)))
    return save(state), time.perf_counter() - started


_WORKER_DATA: tuple[np.ndarray, np.ndarray] | None = None


def _init_worker(x: np.ndarray, y: np.ndarray) -> None:
    """Pool initializer: one torch thread per worker, the population received once."""
    global _WORKER_DATA
    torch.set_num_threads(1)
    _WORKER_DATA = (x, y)


def _train_in_worker(spec: ModelSpec) -> tuple[bytes, float]:
    if _WORKER_DATA is None:  # pragma: no cover - the initializer always runs first
        raise InputError("worker was started without its population")
    return _train_to_bytes(spec, *_WORKER_DATA)


def _train_remote(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> tuple[bytes, float]:
    """What a Ray task runs (Ray hands the population in from its object store)."""
    return _train_to_bytes(spec, x, y)


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------
class ArtifactCache:
    """A folder of safetensors files: ``models/<key>.safetensors`` and ``signals/<key>.safetensors``.

    Files are written atomically; an unreadable or mismatching file is a miss (recomputed and
    overwritten), never an error. Loading safetensors runs no code.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def _path(self, kind: str, key: str) -> Path:
        return self.folder / kind / f"{key}.safetensors"

    def load(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors stored under ``key``, or None (missing, unreadable, or stored under another key)."""
        from safetensors import safe_open

        path = self._path(kind, key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                if (handle.metadata() or {}).get("key") != key:
                    return None
                return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except Exception:  # a truncated or foreign file is just a miss
            return None

    def save(self, kind: str, key: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
        """Store ``tensors`` under ``key`` (atomically)."""
        from safetensors.torch import save

        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = save({k: v.contiguous() for k, v in tensors.items()}, metadata={**metadata, "key": key})
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return path


# --------------------------------------------------------------------------------------------
# engines
# --------------------------------------------------------------------------------------------
class ReferenceEngine(ABC):
    """Turns specs into trained models, reusing the cache where it can; subclasses run the training."""

    name = "engine"

    def __init__(self, *, cache_dir: Path | str | None = None) -> None:
        self.cache = ArtifactCache(cache_dir) if cache_dir is not None else None

    def train(
        self, specs: Sequence[ModelSpec], x: torch.Tensor, y: torch.Tensor, *, progress: Progress | None = None
    ) -> list[TrainedModel]:
        """Trained models for ``specs`` (in order) on the population ``(x, y)``; cached ones are loaded.

        ``progress`` hears ``(models ready, models)`` as cached models load and trained ones finish.
        """
        from safetensors.torch import load

        if x.shape[0] != y.shape[0]:
            raise InputError(f"population has {x.shape[0]} inputs but {y.shape[0]} labels")
        for spec in specs:
            spec.check_population(int(x.shape[0]))
        fingerprint = tensor_fingerprint(x, y)
        keys = [spec.key(fingerprint) for spec in specs]
        found: dict[str, TrainedModel] = {}
        if self.cache is not None:
            for spec, key in zip(specs, keys, strict=True):
                state = self.cache.load("models", key)
                if state is not None:
                    found[key] = TrainedModel(spec, state, key, cached=True)
        todo: dict[str, ModelSpec] = {}
        for spec, key in zip(specs, keys, strict=True):
            if key not in found:
                todo.setdefault(key, spec)
        ready = len(specs) - len(todo)
        report(progress, ready, len(specs))
        if todo:
            x_np = np.ascontiguousarray(x.detach().cpu().numpy())
            y_np = np.ascontiguousarray(y.detach().cpu().numpy())
            outputs = self._train_many(
                list(todo.values()), x_np, y_np, lambda finished: report(progress, ready + finished, len(specs))
            )
            for (key, spec), (blob, seconds) in zip(todo.items(), outputs, strict=True):
                state = load(blob)
                if self.cache is not None:
                    self.cache.save("models", key, state, {"spec": json.dumps(spec.to_dict(), sort_keys=True)})
                found[key] = TrainedModel(spec, state, key, seconds=seconds)
        return [found[key] for key in keys]

    @abstractmethod
    def _train_many(
        self, specs: list[ModelSpec], x: np.ndarray, y: np.ndarray, finished: Callable[[int], None]
    ) -> list[tuple[bytes, float]]:
        """Train every spec; return safetensors bytes and training seconds per spec, in order.

        ``finished(n)`` is called whenever the number of specs done so far rises to ``n``.
        """

    def close(self) -> None:  # noqa: B027 - most engines hold nothing to release
        """Release workers or clusters this engine started (idempotent)."""

    def __enter__(self) -> ReferenceEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class LocalEngine(ReferenceEngine):
    """Sequential training in this process (``workers=1``) or a ``spawn`` process pool of ``workers``.

    ``spawn`` starts clean interpreters (no inherited threads or locks), which re-import the calling
    script's main module: a script using ``workers > 1`` needs the ``if __name__ == "__main__":`` guard.
    """

    name = "local"

    def __init__(self, workers: int = 1, *, cache_dir: Path | str | None = None) -> None:
        if workers < 1:
            raise InputError(f"workers must be >= 1, got {workers}")
        super().__init__(cache_dir=cache_dir)
        self.workers = int(workers)

    def _train_many(
        self, specs: list[ModelSpec], x: np.ndarray, y: np.ndarray, finished: Callable[[int], None]
    ) -> list[tuple[bytes, float]]:
        if self.workers == 1 or len(specs) == 1:
            outputs = []
            for spec in specs:
                outputs.append(_train_to_bytes(spec, x, y))
                finished(len(outputs))
            return outputs
        context = multiprocessing.get_context("spawn")
        workers = min(self.workers, len(specs))
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(x, y)) as pool:
            futures = [pool.submit(_train_in_worker, spec) for spec in specs]
            for count, _ in enumerate(as_completed(futures), start=1):
                finished(count)
            return [future.result() for future in futures]


def _import_ray() -> ModuleType:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise InputError(
            "the Ray engine needs ray: pip install 'modelward[distributed]' (or use LocalEngine)"
        ) from None


def ray_available() -> bool:
    """True when ``ray`` can be imported."""
    return importlib.util.find_spec("ray") is not None


class RayEngine(ReferenceEngine):
    """Training as Ray tasks (one CPU each). Starts a local Ray runtime unless one is already running.

    ``num_cpus`` bounds the local runtime; ``address`` joins an existing cluster instead. The
    runtime this engine started is shut down by :meth:`close` (or leaving a ``with`` block).
    """

    name = "ray"

    def __init__(
        self,
        num_cpus: int = 2,
        *,
        address: str | None = None,
        cache_dir: Path | str | None = None,
        object_store_memory: int = 256 * 1024 * 1024,
    ) -> None:
        if num_cpus < 1:
            raise InputError(f"num_cpus must be >= 1, got {num_cpus}")
        super().__init__(cache_dir=cache_dir)
        self._ray = _import_ray()
        self.num_cpus = int(num_cpus)
        self.address = address
        self.object_store_memory = int(object_store_memory)
        self._started = False
        self._task: Any = None

    def start(self) -> None:
        """Start (or join) the Ray runtime now rather than on the first training call."""
        self._ensure_running()

    def _ensure_running(self) -> Any:
        ray = self._ray
        if not ray.is_initialized():
            # Ray's workers are fresh interpreters: give them the folder modelward is imported from.
            source = str(Path(__file__).resolve().parents[3])
            path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": "ERROR",
                "runtime_env": {"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
            }
            if self.address is None:
                options.update(num_cpus=self.num_cpus, object_store_memory=self.object_store_memory)
            else:
                options["address"] = self.address
            ray.init(**options)
            self._started = True
        if self._task is None:
            self._task = ray.remote(num_cpus=1)(_train_remote)
        return self._task

    def _train_many(
        self, specs: list[ModelSpec], x: np.ndarray, y: np.ndarray, finished: Callable[[int], None]
    ) -> list[tuple[bytes, float]]:
        task = self._ensure_running()
        x_ref, y_ref = self._ray.put(x), self._ray.put(y)
        futures = [task.remote(spec, x_ref, y_ref) for spec in specs]
        pending = list(futures)
        while pending:
            _done, pending = self._ray.wait(pending, num_returns=1)
            finished(len(futures) - len(pending))
        return [(bytes(blob), float(seconds)) for blob, seconds in self._ray.get(futures)]

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False
        self._task = None


def default_engine(workers: int = 1, *, cache_dir: Path | str | None = None) -> ReferenceEngine:
    """:class:`LocalEngine` (sequential or a process pool); pick :class:`RayEngine` explicitly for Ray."""
    return LocalEngine(workers, cache_dir=cache_dir)


# --------------------------------------------------------------------------------------------
# reference sets
# --------------------------------------------------------------------------------------------
def balanced_memberships(population_size: int, count: int, seed: int) -> torch.Tensor:
    """A ``(count, N)`` boolean matrix: each record is inside exactly ``count // 2`` of the ``count`` models.

    Each column is an independent random half of the models (Carlini et al.'s scheme), so every
    record has as many IN as OUT reference models (``count`` even) and each model trains on about
    half of the population.
    """
    if count < 2 or count % 2:
        raise InputError(f"reference models come in an even number >= 2, got {count}")
    if population_size < 2:
        raise InputError("a population needs at least 2 records")
    generator = torch.Generator().manual_seed(int(seed))
    ranks = torch.rand((count, population_size), generator=generator).argsort(dim=0).argsort(dim=0)
    return ranks < count // 2


def reference_specs(
    population_size: int,
    count: int,
    factory: str,
    params: Mapping[str, ParamValue],
    *,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
) -> list[ModelSpec]:
    """``count`` specs over random halves of the population (see :func:`balanced_memberships`), seeded per model."""
    masks = balanced_memberships(population_size, count, seed)
    return [
        ModelSpec(
            factory=factory,
            params=dict(params),
            indices=tuple(int(i) for i in mask.nonzero().squeeze(1).tolist()),
            seed=int(seed) * 100_003 + k,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
        )
        for k, mask in enumerate(masks)
    ]


@dataclass
class ReferenceModels:
    """Trained reference (or shadow) models and the population their indices refer to."""

    models: list[TrainedModel]
    population: Population
    cache: ArtifactCache | None = None
    _modules: list[nn.Module] = field(default_factory=list, repr=False)
    _memo: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.models:
            raise InputError("a reference set needs at least one model")
        for model in self.models:
            model.spec.check_population(len(self.population))

    def __len__(self) -> int:
        return len(self.models)

    @property
    def membership(self) -> torch.Tensor:
        """``(K, N)`` boolean: whether population record ``n`` trained reference model ``k``."""
        mask = torch.zeros((len(self.models), len(self.population)), dtype=torch.bool)
        for k, model in enumerate(self.models):
            mask[k, torch.tensor(model.spec.indices, dtype=torch.long)] = True
        return mask

    def modules(self) -> list[nn.Module]:
        """The trained modules (built once)."""
        if not self._modules:
            self._modules = [model.module() for model in self.models]
        return self._modules

    def classifiers(self) -> list[TorchClassifier]:
        """Each reference model as a white-box classifier over the population's bounds."""
        return [
            TorchClassifier(module, self.population.input_shape, bounds=self.population.bounds)
            for module in self.modules()
        ]

    def log_probabilities(self, x: torch.Tensor | None = None, *, batch_size: int = 2048) -> torch.Tensor:
        """``(K, N, C)`` float64 log-probabilities of every reference model on ``x`` (default: the population).

        Computed through the classifier protocol, kept in memory for the data last asked about, and
        cached on disk per model and data when a cache is set.
        """
        data = self.population.x if x is None else x
        fingerprint = tensor_fingerprint(data)
        if fingerprint in self._memo:
            return self._memo[fingerprint]
        outputs: list[torch.Tensor] = []
        classifiers: list[TorchClassifier] | None = None
        for k, model in enumerate(self.models):
            key = hashlib.sha256(f"{model.key}:{fingerprint}:log_probabilities".encode()).hexdigest()
            stored = self.cache.load("signals", key) if self.cache is not None else None
            if stored is not None and "log_probabilities" in stored:
                outputs.append(stored["log_probabilities"])
                continue
            if classifiers is None:
                classifiers = self.classifiers()
            values = log_probabilities(classifiers[k], data, batch_size=batch_size)
            if self.cache is not None:
                self.cache.save("signals", key, {"log_probabilities": values}, {"model": model.key})
            outputs.append(values)
        stacked = torch.stack(outputs)
        if x is None or len(self._memo) < 4:  # the population, and a few other query sets
            self._memo[fingerprint] = stacked
        return stacked


def train_reference_models(
    population: Population,
    specs: Sequence[ModelSpec],
    *,
    engine: ReferenceEngine | None = None,
    progress: Progress | None = None,
) -> ReferenceModels:
    """Train (or load from the engine's cache) every spec on ``population``; the engine defaults to sequential."""
    if not specs:
        raise InputError("no reference model specs given")
    runner = engine if engine is not None else LocalEngine(1)
    models = runner.train(specs, population.x, population.y, progress=progress)
    return ReferenceModels(models, population, runner.cache)
