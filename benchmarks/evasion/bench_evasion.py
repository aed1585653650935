"""Benchmark: modelward's evasion attacks and randomized smoothing beside a bare torch loop, torchattacks and ART.

Everything runs in one process on the same models, data and parameters, single-threaded
(``torch.set_num_threads(1)``) so timings are stable and comparable:

1. PGD-L∞ (ε=0.1, step 0.01, 40 steps, no random start) on 1,000 test digits: a hand-written
   PGD loop in plain torch (the floor any implementation pays), modelward ``PGD``, torchattacks
   ``PGD`` and ART ``ProjectedGradientDescentPyTorch``; median wall time of ``--repeat`` runs,
   ratio to the bare loop, robust accuracy. Once on SmallCNN over 8×8 digits, once on a larger
   SmallCNN over the same digits upsampled to 28×28.
2. Square L∞ (ε=0.1) at ≤ 1,000 queries per sample on 200 test digits: modelward ``Square`` vs
   ART ``SquareAttack``: success rate and wall time.
3. Randomized smoothing (σ=0.25, n0=100, n=1000, α=0.001) on 200 test digits with a
   Gaussian-augmented SmallCNN: certified accuracy at radii 0, 0.25, 0.5 and seconds per input,
   modelward beside ART's ``PyTorchRandomizedSmoothing``.

Results go to benchmarks/results/evasion.{json,md} with the machine. Run it with

    make bench-evasion
    # or: python benchmarks/evasion/bench_evasion.py [--repeat 5] [--skip-art] [--skip-torchattacks]

(ART and torchattacks come from the ``bench`` extra: ``pip install -e '.[ml,bench]'``.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modelward.attacks.evasion.pgd import PGD  # noqa: E402
from modelward.attacks.evasion.square import Square  # noqa: E402
from modelward.classifiers.models import SmallCNN  # noqa: E402
from modelward.classifiers.torch_adapter import TorchClassifier  # noqa: E402
from modelward.classifiers.training import accuracy, train_classifier  # noqa: E402
from modelward.datasets.builtin import load_digits_images  # noqa: E402
from modelward.defenses.smoothing import SmoothedClassifier, train_gaussian_augmentation  # noqa: E402

EPSILON = 0.1
STEP = 0.01
STEPS = 40
N_PGD = 1000
N_SQUARE = 200
SQUARE_QUERIES = 1000
N_SMOOTH = 200
SIGMA = 0.25
N0, N_CERT, ALPHA = 100, 1000, 0.001
RADII = (0.0, 0.25, 0.5)
WARMUP = 100  # images in the untimed warm-up call of each tool
LARGE_WIDTH = 16  # the 28×28 model's first-layer width (32 makes one PGD run take ~70 s on one core)
LARGE_REPEAT = 3  # at most this many timed runs on the 28×28 model


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown"
    memory = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    versions: dict[str, str | None] = {"torch": torch.__version__, "numpy": np.__version__}
    for name, module in (("torchattacks", "torchattacks"), ("adversarial-robustness-toolbox", "art")):
        try:
            versions[name] = __import__(module).__version__
        except ImportError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def timed(
    fn: Callable[[], torch.Tensor], repeat: int, warmup: Callable[[], object]
) -> tuple[float, list[float], torch.Tensor]:
    """Median wall time of ``repeat`` calls of ``fn`` after one untimed ``warmup`` call, all times, the last output."""
    warmup()
    times = []
    out = torch.empty(0)
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, out


def robust_accuracy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of adversarial inputs the model still classifies correctly."""
    with torch.no_grad():
        return float((model(x_adv).argmax(dim=1) == y).float().mean())


def linf(x_adv: torch.Tensor, x: torch.Tensor) -> float:
    """Largest L∞ perturbation in a batch (a sanity check that every tool stays in the ball)."""
    return float((x_adv - x).abs().flatten(1).amax(dim=1).max())


# --------------------------------------------------------------------------------------------
# 1. PGD
# --------------------------------------------------------------------------------------------
def bare_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The floor: 40 signed-gradient steps, projected on the ε-ball and [0, 1], in plain torch."""
    x_adv = x.clone()
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + STEP * grad.sign(), x - EPSILON), x + EPSILON).clamp(0.0, 1.0)
    return x_adv


def bench_pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeat: int, skip_art: bool, skip_ta: bool
) -> dict[str, Any]:
    """Time PGD-L∞ in each tool on the same model and inputs; robust accuracy from each tool's output."""
    shape = tuple(x.shape[1:])
    rows: dict[str, dict[str, Any]] = {}

    def record(name: str, fn: Callable[[], torch.Tensor], warmup: Callable[[], object]) -> None:
        median, times, adv = timed(fn, repeat, warmup)
        rows[name] = {
            "median_seconds": round(median, 4),
            "times": [round(t, 4) for t in times],
            "robust_accuracy": round(robust_accuracy(model, adv, y), 4),
            "max_linf": round(linf(adv, x), 6),
        }
        print(f"  {name:<14} {median:8.3f} s  robust acc {rows[name]['robust_accuracy']:.3f}", flush=True)

    # Each tool is warmed up (untimed) on the first WARMUP images, so lazy initialisation isn't timed.
    xw, yw = x[:WARMUP], y[:WARMUP]
    record("bare torch", lambda: bare_pgd(model, x, y), lambda: bare_pgd(model, xw, yw))

    classifier = TorchClassifier(model, input_shape=shape, bounds=(0.0, 1.0))
    attack = PGD(classifier, norm="linf", steps=STEPS, step_size=STEP, random_start=False)
    last: dict[str, Any] = {}

    def run_modelward() -> torch.Tensor:
        last["result"] = attack.perturb(x, y, EPSILON, batch_size=N_PGD)
        return last["result"].adversarial

    record("modelward", run_modelward, lambda: attack.perturb(xw, yw, EPSILON, batch_size=N_PGD))
    rows["modelward"]["robust_accuracy_reported"] = round(last["result"].robust_accuracy, 4)
    rows["modelward"]["queries_per_sample"] = round(last["result"].mean_queries, 2)

    if not skip_ta:
        import torchattacks

        ta = torchattacks.PGD(model, eps=EPSILON, alpha=STEP, steps=STEPS, random_start=False)
        record("torchattacks", lambda: ta(x, y), lambda: ta(xw, yw))

    if not skip_art:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier

        art_clf = PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            input_shape=shape,
            nb_classes=10,
            clip_values=(0.0, 1.0),
        )
        art_pgd = ProjectedGradientDescentPyTorch(
            art_clf,
            norm=np.inf,
            eps=EPSILON,
            eps_step=STEP,
            max_iter=STEPS,
            num_random_init=0,
            batch_size=N_PGD,
            verbose=False,
        )
        x_np, y_np = x.numpy(), y.numpy()
        record(
            "ART",
            lambda: torch.from_numpy(art_pgd.generate(x_np, y=y_np)),
            lambda: art_pgd.generate(x_np[:WARMUP], y=y_np[:WARMUP]),
        )

    floor = rows["bare torch"]["median_seconds"]
    for row in rows.values():
        row["ratio_to_bare"] = round(row["median_seconds"] / floor, 3)
    return rows


# --------------------------------------------------------------------------------------------
# 2. Square
# --------------------------------------------------------------------------------------------
def bench_square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, skip_art: bool) -> dict[str, Any]:
    """Square L∞ at ≤ 1,000 queries per sample: success rate (misclassified after the attack) and time."""
    shape = tuple(x.shape[1:])
    rows: dict[str, dict[str, Any]] = {}
    classifier = TorchClassifier(model, input_shape=shape, bounds=(0.0, 1.0))
    attack = Square(classifier, norm="linf", max_queries=SQUARE_QUERIES, seed=0)
    started = time.perf_counter()
    result = attack.perturb(x, y, EPSILON, batch_size=N_SQUARE)
    seconds = time.perf_counter() - started
    rows["modelward"] = {
        "success_rate": round(result.success_rate, 4),
        "robust_accuracy": round(robust_accuracy(model, result.adversarial, y), 4),
        "mean_queries": round(result.mean_queries, 1),
        "max_queries": int(result.queries.max()),
        "seconds": round(seconds, 3),
        "max_linf": round(linf(result.adversarial, x), 6),
    }
    print(f"  modelward Square: {rows['modelward']}", flush=True)
    if not skip_art:
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import PyTorchClassifier

        art_clf = PyTorchClassifier(
            model=model, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=10, clip_values=(0.0, 1.0)
        )
        # ART queries each sample once for the clean prediction, once for the initial stripes and
        # once per iteration: max_iter = 998 keeps it at ≤ 1,000 queries per sample.
        max_iter = SQUARE_QUERIES - 2
        art_sq = SquareAttack(
            art_clf, norm=np.inf, eps=EPSILON, max_iter=max_iter, nb_restarts=1, p_init=0.8, batch_size=N_SQUARE
        )
        art_sq.set_params(verbose=False)
        np.random.seed(0)
        started = time.perf_counter()
        adv = torch.from_numpy(art_sq.generate(x.numpy(), y=y.numpy()))
        seconds = time.perf_counter() - started
        with torch.no_grad():
            fooled = model(adv).argmax(dim=1) != y
        rows["ART"] = {
            "success_rate": round(float(fooled.float().mean()), 4),
            "robust_accuracy": round(robust_accuracy(model, adv, y), 4),
            "max_iter": max_iter,
            "max_queries": SQUARE_QUERIES,
            "seconds": round(seconds, 3),
            "max_linf": round(linf(adv, x), 6),
        }
        print(f"  ART Square:       {rows['ART']}", flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# 3. Randomized smoothing
# --------------------------------------------------------------------------------------------
def bench_smoothing(model: nn.Module, x: torch.Tensor, y: torch.Tensor, skip_art: bool) -> dict[str, Any]:
    """CERTIFY (Cohen et al.) with σ=0.25, n0=100, n=1000, α=0.001: certified accuracy and seconds per input."""
    rows: dict[str, dict[str, Any]] = {}
    base = TorchClassifier(model, input_shape=tuple(x.shape[1:]), bounds=(0.0, 1.0))
    smoothed = SmoothedClassifier(base, SIGMA, n=N_CERT, alpha=ALPHA, batch_size=1000, seed=0)
    result = smoothed.certify(x, n0=N0, n=N_CERT, alpha=ALPHA)
    rows["modelward"] = {
        "certified_accuracy": {str(r): round(result.certified_accuracy(y, r), 4) for r in RADII},
        "abstain_rate": round(result.abstain_rate, 4),
        "seconds_per_input": round(result.seconds_per_input, 5),
        "seconds": round(result.seconds_per_input * x.shape[0], 3),
    }
    print(f"  modelward smoothing: {rows['modelward']}", flush=True)
    try:
        import statsmodels  # noqa: F401  (ART's certify needs it for the Clopper-Pearson bound)
    except ImportError:
        skip_art = True
        rows["ART"] = {"skipped": "ART's PyTorchRandomizedSmoothing.certify needs statsmodels (not installed)"}
    if not skip_art:
        from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

        art_rs = PyTorchRandomizedSmoothing(
            model=model,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=10,
            clip_values=(0.0, 1.0),
            sample_size=N0,
            scale=SIGMA,
            alpha=ALPHA,
        )
        np.random.seed(0)
        torch.manual_seed(0)
        started = time.perf_counter()
        prediction, radius = art_rs.certify(x.numpy(), n=N_CERT, batch_size=1000)
        seconds = time.perf_counter() - started
        pred = torch.from_numpy(np.asarray(prediction)).long()
        rad = torch.from_numpy(np.asarray(radius, dtype=np.float64))
        certified = {str(r): round(float(((pred == y) & (rad >= r)).float().mean()), 4) for r in RADII}
        rows["ART"] = {
            "certified_accuracy": certified,
            "abstain_rate": round(float((pred < 0).float().mean()), 4),
            "seconds_per_input": round(seconds / x.shape[0], 5),
            "seconds": round(seconds, 3),
            "note": "ART selects with sample_size=n0 samples and estimates with n; same σ, α",
        }
        print(f"  ART smoothing:       {rows['ART']}", flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    """A readable summary of the JSON results."""
    m = results["machine"]
    lines = [
        "# Evasion benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch thread), {m['memory']}, "
        f"Python {m['python']}, torch {m['versions']['torch']}, torchattacks {m['versions']['torchattacks']}, "
        f"ART {m['versions']['adversarial-robustness-toolbox']}; {m['date']}.",
        "",
        "Regenerate with `make bench-evasion` (`python benchmarks/evasion/bench_evasion.py`).",
        "",
    ]
    for key, model in results["pgd"].items():
        lines += [
            f"## PGD-L∞ on {model['model']} ({model['images']} test digits, ε={EPSILON}, step {STEP}, "
            f"{STEPS} steps, no random start; clean accuracy {model['clean_accuracy']:.3f})",
            "",
            f"Median of {model['repeat']} timed runs after one untimed warm-up on {WARMUP} images ({key}).",
            "",
            "| implementation | median seconds | × bare loop | robust accuracy | max L∞ |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in model["tools"].items():
            lines.append(
                f"| {name} | {row['median_seconds']:.3f} | {row['ratio_to_bare']:.2f} | "
                f"{100 * row['robust_accuracy']:.1f}% | {row['max_linf']:.4f} |"
            )
        lines.append("")
    sq = results["square"]
    lines += [
        f"## Square L∞ (ε={EPSILON}, ≤ {SQUARE_QUERIES} queries per sample, {N_SQUARE} test digits, 8×8 model)",
        "",
        "| implementation | success rate | robust accuracy | seconds |",
        "|---|---:|---:|---:|",
    ]
    for name, row in sq.items():
        lines.append(
            f"| {name} | {100 * row['success_rate']:.1f}% | {100 * row['robust_accuracy']:.1f}% "
            f"| {row['seconds']:.2f} |"
        )
    sm = results["smoothing"]
    lines += [
        "",
        f"## Randomized smoothing (σ={SIGMA}, n0={N0}, n={N_CERT}, α={ALPHA}, {N_SMOOTH} test digits, "
        "Gaussian-augmented 8×8 model, base accuracy on noisy inputs "
        f"{results['smoothing_model']['noisy_accuracy']:.3f})",
        "",
        "| implementation | " + " | ".join(f"certified acc. r={r}" for r in RADII) + " | abstain | s / input |",
        "|---|" + "---:|" * (len(RADII) + 2),
    ]
    for name, row in sm.items():
        if "skipped" in row:
            lines.append(f"| {name} | skipped: {row['skipped']} |" + " |" * (len(RADII) + 1))
            continue
        cells = " | ".join(f"{100 * row['certified_accuracy'][str(r)]:.1f}%" for r in RADII)
        lines.append(f"| {name} | {cells} | {100 * row['abstain_rate']:.1f}% | {row['seconds_per_input']:.4f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Train the models, run the three benchmarks, write benchmarks/results/evasion.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="PGD runs per tool (median reported)")
    parser.add_argument("--skip-art", action="store_true")
    parser.add_argument("--skip-torchattacks", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    torch.set_num_threads(1)
    split = load_digits_images(seed=0, test_fraction=0.56)
    x_train, y_train = split.x_train, split.y_train
    x_test, y_test = split.x_test[:N_PGD], split.y_test[:N_PGD]
    if x_test.shape[0] < N_PGD:
        raise SystemExit(f"test split has only {x_test.shape[0]} images")

    results: dict[str, Any] = {
        "machine": machine(),
        "parameters": {
            "epsilon": EPSILON,
            "step_size": STEP,
            "steps": STEPS,
            "pgd_images": N_PGD,
            "square_images": N_SQUARE,
            "square_queries": SQUARE_QUERIES,
            "smoothing_images": N_SMOOTH,
            "sigma": SIGMA,
            "n0": N0,
            "n": N_CERT,
            "alpha": ALPHA,
            "repeat": args.repeat,
            "train_images": int(x_train.shape[0]),
        },
        "pgd": {},
    }

    torch.manual_seed(0)  # the models' initial weights come from the global generator
    small = train_classifier(SmallCNN(side=8), x_train, y_train, epochs=15, seed=0)
    up_train = F.interpolate(x_train, size=28, mode="bilinear").clamp(0.0, 1.0)
    up_test = F.interpolate(x_test, size=28, mode="bilinear").clamp(0.0, 1.0)
    torch.manual_seed(0)
    large = train_classifier(SmallCNN(side=28, width=LARGE_WIDTH), up_train, y_train, epochs=8, seed=0)

    for key, model, xs, label, repeat in (
        ("8x8", small, x_test, "SmallCNN, 8×8 digits, 15 epochs", args.repeat),
        (
            "28x28",
            large,
            up_test,
            f"SmallCNN(side=28, width={LARGE_WIDTH}), 28×28 upsampled digits, 8 epochs",
            min(args.repeat, LARGE_REPEAT),
        ),
    ):
        clean = accuracy(model, xs, y_test)
        print(f"PGD on {label}: clean accuracy {clean:.3f}", flush=True)
        results["pgd"][key] = {
            "model": label,
            "images": int(xs.shape[0]),
            "clean_accuracy": round(clean, 4),
            "repeat": repeat,
            "tools": bench_pgd(model, xs, y_test, repeat, args.skip_art, args.skip_torchattacks),
        }

    print("Square", flush=True)
    results["square"] = bench_square(small, x_test[:N_SQUARE], y_test[:N_SQUARE], args.skip_art)

    print("Randomized smoothing", flush=True)
    torch.manual_seed(0)
    noisy, _history = train_gaussian_augmentation(SmallCNN(side=8), x_train, y_train, sigma=SIGMA, epochs=30, seed=0)
    gen = torch.Generator().manual_seed(1)
    xs = x_test[:N_SMOOTH]
    noisy_x = (xs + SIGMA * torch.randn(xs.shape, generator=gen)).clamp(0.0, 1.0)
    results["smoothing_model"] = {
        "epochs": 30,
        "clean_accuracy": round(accuracy(noisy, xs, y_test[:N_SMOOTH]), 4),
        "noisy_accuracy": round(accuracy(noisy, noisy_x, y_test[:N_SMOOTH]), 4),
    }
    results["smoothing"] = bench_smoothing(noisy, xs, y_test[:N_SMOOTH], args.skip_art)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evasion.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "evasion.md").write_text(markdown(results))
    print(f"wrote {args.out / 'evasion.json'} and {args.out / 'evasion.md'}")


if __name__ == "__main__":
    main()
