"""Benchmark: modelward's DP-SGD wrapper (``train_dp``) beside plain Opacus, and what privacy costs in accuracy.

Everything runs in one process, single-threaded (``torch.set_num_threads(1)``), seeded:

1. **Overhead.** The same model from the same initial weights, the same data, batch size,
   noise multiplier, clipping norm, optimiser and number of steps, trained by a hand-written
   plain-Opacus loop (``PrivacyEngine.make_private`` with Poisson sampling, the loop of the
   Opacus tutorials) and by ``train_dp``. Seconds per optimiser step (the training loop only)
   and end to end (setup + loop + ε), median of ``--repeat`` runs, alternating the two so
   machine load hits both alike. SmallCNN on 8×8 digits and an MLP on the breast-cancer table.
2. **ε agreement.** For the PRV and RDP accountants and several noise multipliers, the ε that
   ``train_dp`` reports beside ``PrivacyEngine.get_epsilon`` of the plain-Opacus run with the
   same parameters, and beside ``epsilon_for`` (no training).
3. **Accuracy at target ε.** SmallCNN on digits trained with ``train_dp`` at target ε ∈ {1, 3, 8}
   (δ = 1/(10·n)), with clipping only (σ = 0, ε = ∞) and without DP at all (``train_classifier``):
   test accuracy.

Results go to benchmarks/results/privacy-dp-sgd.{json,md} with the machine. Run it with

    python benchmarks/privacy/dp_sgd.py [--repeat 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modelward.classifiers.models import MLP, SmallCNN  # noqa: E402
from modelward.classifiers.training import accuracy, train_classifier  # noqa: E402
from modelward.datasets.builtin import Split, load_breast_cancer_table, load_digits_images  # noqa: E402
from modelward.defenses.dp import epsilon_for, train_dp  # noqa: E402

CLIP = 1.0
OVERHEAD_SIGMA = 1.0
OVERHEAD_BATCH = 64
OVERHEAD_LR = 1e-3
EPSILON_SIGMAS = (0.7, 1.0, 1.5, 2.0)
EPSILON_EPOCHS = 5
TARGETS = (1.0, 3.0, 8.0)
ACCURACY_EPOCHS = 15
ACCURACY_BATCH = 256
ACCURACY_LR = 1e-2


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import opacus  # type: ignore[import-untyped]

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {"torch": torch.__version__, "opacus": opacus.__version__},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# the plain-Opacus reference
# --------------------------------------------------------------------------------------------
def plain_opacus(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    noise_multiplier: float,
    epochs: int,
    batch_size: int,
    lr: float,
    delta: float,
    accountant: str = "prv",
    seed: int = 0,
) -> dict[str, float]:
    """The Opacus-tutorial loop: DataLoader → make_private (Poisson) → Adam steps → get_epsilon."""
    from opacus import PrivacyEngine

    started = time.perf_counter()
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    optimiser = torch.optim.Adam(module.parameters(), lr=lr)
    engine = PrivacyEngine(accountant=accountant, secure_mode=False)
    model, optimiser, loader = engine.make_private(
        module=module,
        optimizer=optimiser,
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=CLIP,
        poisson_sampling=True,
        noise_generator=torch.Generator().manual_seed(seed + 1),
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    steps = 0
    loop_start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            optimiser.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            optimiser.step()
            steps += 1
    loop = time.perf_counter() - loop_start
    epsilon = float(engine.get_epsilon(delta))
    return {
        "epsilon": epsilon,
        "steps": steps,
        "sample_rate": 1 / len(loader),
        "loop_seconds": loop,
        "total_seconds": time.perf_counter() - started,
    }


def ours(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    noise_multiplier: float,
    epochs: int,
    batch_size: int,
    lr: float,
    delta: float,
    accountant: str = "prv",
    seed: int = 0,
) -> dict[str, float]:
    """``train_dp`` with the same parameters; its own loop timing and the end-to-end wall time."""
    started = time.perf_counter()
    result = train_dp(
        module,
        x,
        y,
        noise_multiplier=noise_multiplier,
        delta=delta,
        max_grad_norm=CLIP,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer="adam",
        accountant=accountant,  # type: ignore[arg-type]
        seed=seed,
    )
    return {
        "epsilon": result.epsilon,
        "steps": result.steps,
        "sample_rate": result.sample_rate,
        "loop_seconds": result.seconds,
        "total_seconds": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------------------------
# 1. overhead
# --------------------------------------------------------------------------------------------
def bench_overhead(name: str, factory: Any, split: Split, epochs: int, repeat: int) -> dict[str, Any]:
    """Alternate plain Opacus and train_dp ``repeat`` times (after one untimed pair); medians per step."""
    torch.manual_seed(0)
    initial = factory()
    n = split.x_train.shape[0]
    kwargs: dict[str, Any] = {
        "noise_multiplier": OVERHEAD_SIGMA,
        "epochs": epochs,
        "batch_size": OVERHEAD_BATCH,
        "lr": OVERHEAD_LR,
        "delta": 1 / (10 * n),
    }
    runs: dict[str, list[dict[str, float]]] = {"opacus": [], "modelward": []}
    for index in range(repeat + 1):
        order = [("opacus", plain_opacus), ("modelward", ours)]
        for tool, fn in order if index % 2 else order[::-1]:
            out = fn(copy.deepcopy(initial), split.x_train, split.y_train, **kwargs)
            if index:  # the first pair warms caches and allocators
                runs[tool].append(out)
    summary: dict[str, Any] = {"model": name, "train_records": n, "epochs": epochs, **kwargs, "repeat": repeat}
    for tool, outs in runs.items():
        steps = int(outs[0]["steps"])
        summary[tool] = {
            "steps": steps,
            "median_seconds_per_step": statistics.median(o["loop_seconds"] / o["steps"] for o in outs),
            "median_total_seconds": statistics.median(o["total_seconds"] for o in outs),
            "epsilon": outs[0]["epsilon"],
        }
    ratio = summary["modelward"]["median_seconds_per_step"] / summary["opacus"]["median_seconds_per_step"]
    total_ratio = summary["modelward"]["median_total_seconds"] / summary["opacus"]["median_total_seconds"]
    summary["overhead_per_step"] = ratio - 1
    summary["overhead_total"] = total_ratio - 1
    summary["same_steps"] = summary["modelward"]["steps"] == summary["opacus"]["steps"]
    print(
        f"  {name}: {summary['opacus']['steps']} steps, opacus "
        f"{1000 * summary['opacus']['median_seconds_per_step']:.2f} ms/step, modelward "
        f"{1000 * summary['modelward']['median_seconds_per_step']:.2f} ms/step ({100 * (ratio - 1):+.1f}%)",
        flush=True,
    )
    return summary


# --------------------------------------------------------------------------------------------
# 2. epsilon agreement
# --------------------------------------------------------------------------------------------
def bench_epsilon(split: Split) -> list[dict[str, Any]]:
    """ε reported by train_dp vs plain Opacus' get_epsilon vs epsilon_for, same parameters."""
    rows = []
    n = split.x_train.shape[0]
    delta = 1 / (10 * n)
    for accountant in ("prv", "rdp"):
        for sigma in EPSILON_SIGMAS:
            torch.manual_seed(0)
            initial = MLP(split.x_train.shape[1], 2, hidden=32)
            kwargs: dict[str, Any] = {
                "noise_multiplier": sigma,
                "epochs": EPSILON_EPOCHS,
                "batch_size": OVERHEAD_BATCH,
                "lr": OVERHEAD_LR,
                "delta": delta,
                "accountant": accountant,
            }
            reference = plain_opacus(copy.deepcopy(initial), split.x_train, split.y_train, **kwargs)
            mine = ours(copy.deepcopy(initial), split.x_train, split.y_train, **kwargs)
            direct = epsilon_for(sigma, mine["sample_rate"], int(mine["steps"]), delta, accountant)
            rows.append(
                {
                    "accountant": accountant,
                    "noise_multiplier": sigma,
                    "sample_rate": mine["sample_rate"],
                    "steps": int(mine["steps"]),
                    "delta": delta,
                    "opacus_epsilon": reference["epsilon"],
                    "modelward_epsilon": mine["epsilon"],
                    "epsilon_for": direct,
                    "equal": reference["epsilon"] == mine["epsilon"] == direct,
                }
            )
            print(f"  {accountant} σ={sigma}: opacus {reference['epsilon']:.6f}, modelward {mine['epsilon']:.6f}")
    return rows


# --------------------------------------------------------------------------------------------
# 3. accuracy at target epsilon
# --------------------------------------------------------------------------------------------
def bench_accuracy(split: Split) -> list[dict[str, Any]]:
    """Test accuracy of SmallCNN on digits at each target ε, clip-only, and non-private."""
    rows = []
    settings: list[tuple[str, dict[str, float]]] = [(f"{t:g}", {"target_epsilon": t}) for t in TARGETS]
    settings.append(("∞ (σ=0, clipping only)", {"noise_multiplier": 0.0}))
    for label, privacy in settings:
        torch.manual_seed(0)
        result = train_dp(
            SmallCNN(),
            split.x_train,
            split.y_train,
            epochs=ACCURACY_EPOCHS,
            batch_size=ACCURACY_BATCH,
            lr=ACCURACY_LR,
            max_grad_norm=CLIP,
            seed=0,
            **privacy,  # type: ignore[arg-type]
        )
        acc = accuracy(result.module, split.x_test, split.y_test)
        rows.append(
            {
                "target_epsilon": label,
                "epsilon": result.epsilon if math.isfinite(result.epsilon) else None,
                "delta": result.delta,
                "noise_multiplier": result.noise_multiplier,
                "steps": result.steps,
                "seconds": result.seconds,
                "test_accuracy": acc,
            }
        )
        print(f"  target ε {label}: ε={result.epsilon:.3f} σ={result.noise_multiplier:.3f} accuracy {acc:.3f}")
    torch.manual_seed(0)
    started = time.perf_counter()
    plain = train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=ACCURACY_EPOCHS, batch_size=64, seed=0)
    rows.append(
        {
            "target_epsilon": "no DP (train_classifier, Adam 1e-3, batch 64)",
            "epsilon": None,
            "delta": None,
            "noise_multiplier": None,
            "steps": ACCURACY_EPOCHS * math.ceil(split.x_train.shape[0] / 64),
            "seconds": time.perf_counter() - started,
            "test_accuracy": accuracy(plain, split.x_test, split.y_test),
        }
    )
    print(f"  no DP: accuracy {rows[-1]['test_accuracy']:.3f}")
    return rows


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# DP-SGD benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch thread), Python {m['python']}, "
        f"torch {m['versions']['torch']}, Opacus {m['versions']['opacus']}; {m['date']}.",
        "",
        f"Regenerate with `python benchmarks/privacy/dp_sgd.py`. Runtime: {results['seconds']:.0f} s.",
        "",
        "## Overhead of `train_dp` over plain Opacus",
        "",
        f"Same model and initial weights, same data, batch {OVERHEAD_BATCH} (Poisson), σ={OVERHEAD_SIGMA}, "
        f"clip {CLIP}, Adam lr {OVERHEAD_LR}, same number of steps; median of {results['repeat']} alternating runs "
        "after one untimed pair. Per step: the training loop only; end to end: setup, loop and ε (PRV).",
        "",
        "| model | steps | Opacus ms/step | modelward ms/step | overhead/step | Opacus end-to-end s | "
        "modelward end-to-end s | overhead end-to-end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["overhead"]:
        o, w = row["opacus"], row["modelward"]
        lines.append(
            f"| {row['model']} | {o['steps']} | {1000 * o['median_seconds_per_step']:.2f} | "
            f"{1000 * w['median_seconds_per_step']:.2f} | {100 * row['overhead_per_step']:+.1f}% | "
            f"{o['median_total_seconds']:.2f} | {w['median_total_seconds']:.2f} | {100 * row['overhead_total']:+.1f}% |"
        )
    lines += [
        "",
        "## ε reported vs Opacus' accountant",
        "",
        f"MLP on the breast-cancer table, batch {OVERHEAD_BATCH}, {EPSILON_EPOCHS} epochs, δ = 1/(10·n). "
        "`opacus`: `PrivacyEngine.get_epsilon(δ)` after the plain-Opacus run; `train_dp`: the ε it reports "
        "for its own run; `epsilon_for`: the accountant asked directly, no training.",
        "",
        "| accountant | σ | sample rate | steps | δ | Opacus ε | train_dp ε | epsilon_for ε | identical |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for row in results["epsilon"]:
        lines.append(
            f"| {row['accountant']} | {row['noise_multiplier']} | {row['sample_rate']:.4f} | {row['steps']} | "
            f"{row['delta']:.2e} | {row['opacus_epsilon']:.6f} | {row['modelward_epsilon']:.6f} | "
            f"{row['epsilon_for']:.6f} | {'yes' if row['equal'] else 'NO'} |"
        )
    lines += [
        "",
        "## Test accuracy of SmallCNN on 8×8 digits at target ε",
        "",
        f"`train_dp`, {ACCURACY_EPOCHS} epochs, expected batch {ACCURACY_BATCH} (Poisson), clip {CLIP}, Adam lr "
        f"{ACCURACY_LR}, PRV accountant, δ = 1/(10·n), one seed; "
        f"{results['digits']['train']} training and {results['digits']['test']} test images.",
        "",
        "| target ε | ε spent | σ | steps | train seconds | test accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["accuracy"]:
        eps = "∞" if row["epsilon"] is None else f"{row['epsilon']:.3f}"
        if row["noise_multiplier"] is None:
            eps = "—"
        sigma = "—" if row["noise_multiplier"] is None else f"{row['noise_multiplier']:.3f}"
        lines.append(
            f"| {row['target_epsilon']} | {eps} | {sigma} | {row['steps']} | {row['seconds']:.1f} | "
            f"{100 * row['test_accuracy']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the three parts and write benchmarks/results/privacy-dp-sgd.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per tool (median reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Secure RNG turned off")  # the plain loop's deliberate choice
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")

    started = time.perf_counter()
    digits = load_digits_images(seed=0)
    table = load_breast_cancer_table(seed=0)
    results: dict[str, Any] = {
        "machine": machine(),
        "repeat": args.repeat,
        "digits": {"train": int(digits.x_train.shape[0]), "test": int(digits.x_test.shape[0])},
    }
    print("1. overhead", flush=True)
    results["overhead"] = [
        bench_overhead("SmallCNN, 8×8 digits", SmallCNN, digits, 2, args.repeat),
        bench_overhead("MLP(30→64→2), breast cancer", lambda: MLP(30, 2, hidden=64), table, 10, args.repeat),
    ]
    print("2. epsilon agreement", flush=True)
    results["epsilon"] = bench_epsilon(table)
    print("3. accuracy at target epsilon", flush=True)
    results["accuracy"] = bench_accuracy(digits)
    results["seconds"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "privacy-dp-sgd.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "privacy-dp-sgd.md").write_text(markdown(results))
    print(
        f"wrote {args.out / 'privacy-dp-sgd.json'} and {args.out / 'privacy-dp-sgd.md'} in {results['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
