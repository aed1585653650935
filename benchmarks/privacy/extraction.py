"""Benchmark: model extraction, model inversion and attribute inference against the bundled scenario's models.

Everything runs in one process, single-threaded (``torch.set_num_threads(1)``), seeded:

1. **Extraction strategies.** A SmallCNN target on 8×8 digits (trained on 750 training digits) is
   stolen by ``ModelExtraction`` with each strategy (``random``, ``natural``, ``knockoff``,
   ``jacobian``), from its scores and from its labels alone, with the surrogate retrained and
   scored at 100, 300, 1,000 and 3,000 queries in one run (three attack seeds): fidelity (agreement with the target on
   the 540 test digits) and surrogate accuracy. The attacker owns the other 507 training digits,
   enlarged to 4,563 by one-pixel shifts (the pool of ``natural`` and ``knockoff``, grouped by
   k-means for the knockoff bandit); ``jacobian`` starts from 100 of them.
2. **Against output hardening.** The same attacks (``natural``, ``knockoff``) against the target
   behind ``defenses.output_hardening`` (rounding, Gaussian noise, reverse sigmoid, labels only).
3. **Beside ART.** ART's ``CopycatCNN`` (random subset of the pool) and ``KnockoffNets`` (adaptive
   sampling, the same k-means groups as actions) on the same target, pool, surrogate
   architecture, optimiser and epochs, at each budget. ART trains on hard labels, so the
   comparison is with modelward's label-only rows.
4. **Model inversion** (MI-Face, white-box and zeroth-order) on a SmallCNN trained on all
   training digits: correlation of each reconstruction with its real class mean versus random
   images, and how often a reconstruction is closest to its own class mean.
5. **Attribute inference** on the breast-cancer table (``worst area`` binarised at the median),
   attack beside the no-model baseline, with the attacker knowing all other columns or four.

Results go to benchmarks/results/privacy-extraction.{json,md} (plots beside them) with the
machine. Run it with

    python benchmarks/privacy/extraction.py [--seeds 3] [--skip-art] [--out DIR]

(ART comes from the ``bench`` extra: ``pip install -e '.[ml,bench]'``; without it that part is skipped.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
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

from modelward.attacks.extraction import ExtractionResult, ModelExtraction, plot_extraction  # noqa: E402
from modelward.attacks.extraction.strategies import kmeans_groups  # noqa: E402
from modelward.attacks.inversion import AttributeInference, ModelInversion  # noqa: E402
from modelward.classifiers.base import Classifier  # noqa: E402
from modelward.classifiers.models import MLP, SmallCNN  # noqa: E402
from modelward.classifiers.torch_adapter import TorchClassifier  # noqa: E402
from modelward.classifiers.training import accuracy, train_classifier  # noqa: E402
from modelward.datasets.builtin import load_breast_cancer_table, load_digits_images  # noqa: E402

BUDGETS = [100, 300, 1000, 3000]
TARGET_TRAIN = 750
JACOBIAN_SEED = 100
SURROGATE_WIDTH = 16
EPOCHS = 30
MIN_STEPS = 300
BATCH = 64
LR = 1e-3
SEED = 0
SENSITIVE = 23  # worst area
PARTIAL = [1, 4, 8, 9]  # mean texture, smoothness, symmetry, fractal dimension


def machine(art_version: str | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    if art_version:
        versions["adversarial-robustness-toolbox"] = art_version
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def surrogate() -> nn.Module:
    return SmallCNN(width=SURROGATE_WIDTH)


def epochs_for(n: int) -> int:
    """The epochs ModelExtraction trains for on n inputs (given to ART too, so both train alike)."""
    return max(EPOCHS, math.ceil(MIN_STEPS / max(1, math.ceil(n / BATCH))))


def shifted_pool(x: torch.Tensor) -> torch.Tensor:
    """The attacker's digits and their eight one-pixel shifts (zero fill): 9× the data, same distribution."""
    copies = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            padded = F.pad(x, (1, 1, 1, 1))
            copies.append(padded[:, :, 1 + dy : 9 + dy, 1 + dx : 9 + dx])
    return torch.cat(copies)


def extraction(strategy: str, output: str, seed: int = SEED) -> ModelExtraction:
    return ModelExtraction(
        strategy,  # type: ignore[arg-type]
        surrogate,
        BUDGETS[-1],
        seed=seed,
        checkpoints=BUDGETS,
        output=output,  # type: ignore[arg-type]
        epochs=EPOCHS,
        min_steps=MIN_STEPS,
        batch_size=BATCH,
        lr=LR,
    )


def row(result: ExtractionResult, **extra: Any) -> dict[str, Any]:
    return {**result.summary(), **extra}


def aggregate(curves: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of fidelity and accuracy, per budget every seed reached."""
    points = []
    for budget in BUDGETS:
        at = [p for curve in curves for p in curve if p["queries"] == budget]
        if len(at) != len(curves):
            continue
        point: dict[str, Any] = {"queries": budget, "seeds": len(at)}
        for key in ("fidelity", "accuracy"):
            values = np.array([p[key] for p in at])
            point[key] = float(values.mean())
            point[f"{key}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        points.append(point)
    return points


def run_strategies(
    module: nn.Module, data: dict[str, torch.Tensor], target_labels: torch.Tensor, seeds: list[int]
) -> tuple[list[dict[str, Any]], list[ExtractionResult]]:
    rows, plotted = [], []
    for strategy in ("random", "natural", "knockoff", "jacobian"):
        for output in ("scores", "labels"):
            runs = []
            for seed in seeds:
                target = TorchClassifier(module, (1, 8, 8))
                seed_data = {"random": None, "jacobian": data["seed"]}.get(strategy, data["pool"])
                result = extraction(strategy, output, seed).extract(
                    target,
                    seed_data,
                    data["test_x"],
                    data["test_y"],
                    target_test_labels=target_labels,
                    pool_groups=data["groups"] if strategy == "knockoff" else None,
                )
                if result.queries != target.queries:
                    raise RuntimeError(f"reported {result.queries} queries, the target counted {target.queries}")
                runs.append(row(result, seed=seed))
                if seed == seeds[0]:
                    plotted.append(result)
                print(f"  {strategy:8s} {output:6s} seed {seed} " + _curve_text(result), flush=True)
            rows.append(
                {
                    "strategy": strategy,
                    "output": output,
                    "curve": aggregate([r["curve"] for r in runs]),
                    "seconds": float(np.mean([r["seconds"] for r in runs])),
                    "runs": runs,
                }
            )
    return rows, plotted


def run_hardened(module: nn.Module, data: dict[str, torch.Tensor], target_labels: torch.Tensor) -> list[dict[str, Any]]:
    try:
        from modelward.defenses.output_hardening import (
            GaussianNoise,
            HardenedClassifier,
            LabelOnly,
            ReverseSigmoid,
            Rounding,
        )
    except ImportError:
        print("  output hardening not available: skipped")
        return []
    defenses: dict[str, Any] = {
        "rounding (1 decimal)": [Rounding(1)],
        "Gaussian noise (σ=0.1)": [GaussianNoise(0.1, seed=SEED)],
        "reverse sigmoid (β=1, γ=0.1)": [ReverseSigmoid(1.0, 0.1)],
        "labels only": [LabelOnly()],
    }
    rows = []
    for name, steps in defenses.items():
        for strategy in ("natural", "knockoff"):
            target: Classifier = HardenedClassifier(TorchClassifier(module, (1, 8, 8)), steps)
            result = extraction(strategy, "auto").extract(
                target,
                data["pool"],
                data["test_x"],
                data["test_y"],
                target_test_labels=target_labels,
                pool_groups=data["groups"] if strategy == "knockoff" else None,
            )
            rows.append(row(result, defense=name))
            print(f"  {name:28s} {strategy:8s} {result.output:6s} " + _curve_text(result), flush=True)
    return rows


def run_art(
    module: nn.Module, data: dict[str, torch.Tensor], target_labels: torch.Tensor, seeds: list[int]
) -> list[dict[str, Any]]:
    from art.attacks.extraction import CopycatCNN, KnockoffNets
    from art.estimators.classification import PyTorchClassifier

    def wrap(model: nn.Module) -> Any:
        return PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam(model.parameters(), lr=LR),
            input_shape=(1, 8, 8),
            nb_classes=10,
            clip_values=(0.0, 1.0),
        )

    victim = wrap(module)
    pool = data["pool"].numpy()
    groups = data["groups"].numpy()
    test_x = data["test_x"]
    rows = []
    # KnockoffNets' random strategy samples exactly as CopycatCNN does (same code, same numbers): not repeated
    for name in ("CopycatCNN", "KnockoffNets (adaptive)"):
        curves: list[list[dict[str, Any]]] = []
        for seed, budget in [(seed, budget) for seed in seeds for budget in BUDGETS]:
            if budget == BUDGETS[0]:
                curves.append([])
            np.random.seed(seed)
            torch.manual_seed(seed)
            thief_module = surrogate()
            thief = wrap(thief_module)
            epochs = epochs_for(budget)
            started = time.perf_counter()
            if name == "CopycatCNN":
                attack = CopycatCNN(
                    victim, batch_size_fit=BATCH, batch_size_query=BATCH, nb_epochs=epochs, nb_stolen=budget
                )
                stolen = attack.extract(pool, thieved_classifier=thief)
            else:
                attack = KnockoffNets(
                    victim,
                    batch_size_fit=BATCH,
                    batch_size_query=BATCH,
                    nb_epochs=epochs,
                    nb_stolen=budget,
                    sampling_strategy="adaptive" if "adaptive" in name else "random",
                    reward="all",
                    verbose=False,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    stolen = attack.extract(pool, y=groups if "adaptive" in name else None, thieved_classifier=thief)
            seconds = time.perf_counter() - started
            predicted = torch.from_numpy(stolen.predict(test_x.numpy(), batch_size=1024)).argmax(dim=1)
            curves[-1].append(
                {
                    "queries": budget,
                    "fidelity": float((predicted == target_labels).float().mean()),
                    "accuracy": float((predicted == data["test_y"]).float().mean()),
                    "seconds": seconds,
                }
            )
            if budget == BUDGETS[-1]:
                text = "  ".join(f"{p['queries']}: {p['fidelity']:.3f}" for p in curves[-1])
                print(f"  ART {name:24s} seed {seed} {text}", flush=True)
        rows.append(
            {
                "implementation": "ART",
                "attack": name,
                "output": "labels",
                "curve": aggregate(curves),
                "seconds": float(np.mean([sum(p["seconds"] for p in c) for c in curves])),
                "runs": curves,
            }
        )
    return rows


def run_inversion(out: Path) -> dict[str, Any]:
    split = load_digits_images(seed=SEED)
    torch.manual_seed(SEED)
    module = train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=20, seed=SEED)
    results: dict[str, Any] = {"target_accuracy": accuracy(module, split.x_test, split.y_test), "runs": []}
    settings = {
        "white-box": {"steps": 300},
        "white-box, TV 0.01 + blur every 10": {"steps": 300, "tv_weight": 0.01, "denoise_every": 10},
        "zeroth-order (scores only), 10 pairs": {"steps": 100, "samples": 10, "gradient": "zeroth-order"},
    }
    for name, options in settings.items():
        target = TorchClassifier(module, (1, 8, 8))
        result = ModelInversion(seed=SEED, **options).invert(  # type: ignore[arg-type]
            target, reference_x=split.x_train, reference_y=split.y_train
        )
        similarity = result.similarity
        if similarity is None:
            raise RuntimeError("inversion with reference data must report similarity")
        if name == "white-box":
            result.plot(out / "privacy-inversion.png")
        results["runs"].append(
            {
                "setting": name,
                "queries": result.queries,
                "seconds": result.seconds,
                "mean_confidence": float(result.confidence.mean()),
                "correlation": similarity.mean,
                "random_correlation": similarity.random,
                "per_class_correlation": similarity.per_class,
                "match_rate": similarity.match_rate,
                "chance": similarity.chance,
                "ssim": similarity.ssim,
                "random_ssim": similarity.random_ssim,
                "meaningful": similarity.meaningful,
            }
        )
        print(f"  {name:38s} corr {similarity.mean:.3f} vs random {similarity.random:.3f}", flush=True)
    return results


def run_attribute() -> dict[str, Any]:
    split = load_breast_cancer_table(seed=SEED)
    torch.manual_seed(SEED)
    module = train_classifier(MLP(30, 2, hidden=64), split.x_train, split.y_train, epochs=100, seed=SEED)
    results: dict[str, Any] = {"target_accuracy": accuracy(module, split.x_test, split.y_test), "runs": []}
    for method, known in (("scores", None), ("grid", None), ("scores", PARTIAL)):
        target = TorchClassifier(module, (30,), bounds=(split.lower, split.upper))
        result = AttributeInference(SENSITIVE, method=method, known_columns=known, seed=SEED).infer(  # type: ignore[arg-type]
            target, split.x_test, split.y_test, split.x_train, split.y_train
        )
        summary = result.summary()
        summary["knowledge"] = "all other columns" if known is None else f"{len(known)} columns"
        results["runs"].append(summary)
        print(
            f"  {method:6s} {summary['knowledge']:17s} attack {result.attack_accuracy:.3f}/{result.attack_auc:.3f}"
            f"  baseline {result.baseline_accuracy:.3f}/{result.baseline_auc:.3f}"
        )
    return results


def _curve_text(result: ExtractionResult) -> str:
    text = "  ".join(f"{p.queries}: {p.fidelity:.3f}/{p.accuracy:.3f}" for p in result.curve)
    return text + (f"  [{result.stop_reason}]" if result.stop_reason else "") + f"  ({result.seconds:.1f} s)"


def _fid(rows: list[dict[str, Any]], budget: int, key: str = "fidelity") -> str:
    for point in rows:
        if point["queries"] == budget:
            spread = f" ± {point[f'{key}_sd']:.3f}" if point.get("seeds", 1) > 1 else ""
            return f"{point[key]:.3f}{spread}"
    return "—"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        "# Privacy benchmark: model extraction, inversion, attribute inference",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch thread), Python {m['python']}, "
        f"{versions}; {m['date']}. Total {report['seconds']:.0f} s.",
        "",
        "Regenerate with `python benchmarks/privacy/extraction.py` (part of `make bench-privacy`).",
        "",
        "## Extraction of a digits SmallCNN",
        "",
        f"Target: SmallCNN (width 32) trained on {TARGET_TRAIN} training digits, test accuracy "
        f"{report['target_accuracy']:.3f}. Surrogate: SmallCNN (width {SURROGATE_WIDTH}), Adam {LR}, "
        f"{EPOCHS} epochs (at least {MIN_STEPS} steps), batch {BATCH}, retrained from scratch at each budget. "
        f"Pool: the other {report['attacker_digits']} training digits and their one-pixel shifts "
        f"({report['pool_size']} images, {report['groups']} k-means groups for the knockoff bandit); jacobian seed: "
        f"{JACOBIAN_SEED} of those digits. Fidelity = agreement with the target's labels on the "
        f"{report['test_size']} test digits; accuracy = the surrogate's test accuracy. Queries are the target's "
        f"own count. Mean ± standard deviation over attack seeds {report['seeds']} (sampling and surrogate "
        "initialisation; the target is fixed); the plot shows the first seed.",
        "",
        "| strategy | output | "
        + " | ".join(f"fidelity @{b}" for b in BUDGETS)
        + " | "
        + " | ".join(f"accuracy @{b}" for b in BUDGETS)
        + " | seconds (whole curve, mean) |",
        "|---|---|" + "---:|" * (2 * len(BUDGETS) + 1),
    ]
    for r in report["strategies"]:
        lines.append(
            f"| {r['strategy']} | {r['output']} | "
            + " | ".join(_fid(r["curve"], b) for b in BUDGETS)
            + " | "
            + " | ".join(_fid(r["curve"], b, "accuracy") for b in BUDGETS)
            + f" | {r['seconds']:.1f} |"
        )
    lines += ["", "![fidelity and accuracy vs queries](privacy-extraction.png)", ""]
    if report["hardened"]:
        lines += [
            "## Against output hardening (`defenses.output_hardening.HardenedClassifier`)",
            "",
            "Same target, pool and surrogate; the surrogate learns from whatever the hardened endpoint returns "
            "(scores when it serves them, else labels). Every hardening keeps the top-1 label, so fidelity is "
            f"measured against the same labels as above. One run, seed {report['seeds'][0]} (compare with that "
            "seed's unhardened runs in the JSON, or with the means above).",
            "",
            "| hardening | strategy | learns from | " + " | ".join(f"fidelity @{b}" for b in BUDGETS) + " |",
            "|---|---|---|" + "---:|" * len(BUDGETS),
        ]
        for r in report["strategies"]:
            if r["output"] == "scores" and r["strategy"] in ("natural", "knockoff"):
                first = r["runs"][0]
                lines.append(
                    f"| none (seed {first['seed']}) | {r['strategy']} | scores | "
                    + " | ".join(_fid(first["curve"], b) for b in BUDGETS)
                    + " |"
                )
        for r in report["hardened"]:
            lines.append(
                f"| {r['defense']} | {r['strategy']} | {r['output']} | "
                + " | ".join(_fid(r["curve"], b) for b in BUDGETS)
                + " |"
            )
        lines.append("")
    if report["art"]:
        lines += [
            "## Beside ART (label-only: ART's thieved classifier trains on hard labels)",
            "",
            "ART runs once per budget (no curve within a run); same target, pool, k-means groups, surrogate "
            "architecture, optimiser, epochs and seeds. modelward rows are the label-only runs above. ART's "
            "KnockoffNets with random sampling runs CopycatCNN's sampling code (identical numbers), so it is "
            "not repeated.",
            "",
            "| implementation | attack | "
            + " | ".join(f"fidelity @{b}" for b in BUDGETS)
            + " | "
            + " | ".join(f"accuracy @{b}" for b in BUDGETS)
            + " | seconds (all budgets, mean) |",
            "|---|---|" + "---:|" * (2 * len(BUDGETS) + 1),
        ]
        for r in report["strategies"]:
            if r["output"] == "labels" and r["strategy"] in ("natural", "knockoff"):
                lines.append(
                    f"| modelward | {r['strategy']} | "
                    + " | ".join(_fid(r["curve"], b) for b in BUDGETS)
                    + " | "
                    + " | ".join(_fid(r["curve"], b, "accuracy") for b in BUDGETS)
                    + f" | {r['seconds']:.1f} |"
                )
        for r in report["art"]:
            seconds = r["seconds"]
            lines.append(
                f"| ART | {r['attack']} | "
                + " | ".join(_fid(r["curve"], b) for b in BUDGETS)
                + " | "
                + " | ".join(_fid(r["curve"], b, "accuracy") for b in BUDGETS)
                + f" | {seconds:.1f} |"
            )
        lines.append("")
    inv = report["inversion"]
    lines += [
        "## Model inversion (MI-Face) of a digits SmallCNN",
        "",
        f"Target: SmallCNN trained on all training digits (test accuracy {inv['target_accuracy']:.3f}). "
        "Correlation: Pearson correlation of each class's reconstruction with the mean of that class's real "
        "training digits, averaged over the ten classes, against uniform random images. Identified: share of "
        "reconstructions whose most correlated class mean is their own (chance 10%).",
        "",
        "| setting | queries | correlation | random images | identified | SSIM (global) | random SSIM | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in inv["runs"]:
        lines.append(
            f"| {r['setting']} | {r['queries']} | {r['correlation']:.3f} | {r['random_correlation']:.3f} | "
            f"{r['match_rate']:.0%} | {r['ssim']:.3f} | {r['random_ssim']:.3f} | {r['seconds']:.2f} |"
        )
    lines += ["", "![reconstructions above, real class means below](privacy-inversion.png)", ""]
    att = report["attribute"]
    lines += [
        "## Attribute inference on the breast-cancer table",
        "",
        f"Target: MLP trained on the {att['runs'][0]['victims']} training records (the victims; test accuracy "
        f"{att['target_accuracy']:.3f}). Sensitive column: `worst area`, binarised at the attacker data's median. "
        f"Attacker data: the {att['runs'][0]['attacker_records']} test records. Baseline: logistic regression on "
        "what the attacker knows without the model (known columns and the label).",
        "",
        "| attack | attacker knows | attack acc. | attack AUC | baseline acc. | baseline AUC | advantage (acc.) "
        "| advantage (AUC) | majority | queries |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in att["runs"]:
        lines.append(
            f"| {r['method']} | {r['knowledge']} + label | {r['attack_accuracy']:.3f} | {r['attack_auc']:.3f} | "
            f"{r['baseline_accuracy']:.3f} | {r['baseline_auc']:.3f} | {r['advantage']:+.3f} | "
            f"{r['auc_advantage']:+.3f} | {r['majority_accuracy']:.3f} | {r['queries']} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-art", action="store_true", help="do not run ART even when it is installed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--seeds", type=int, default=3, help="attack seeds per extraction row (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    art_version = None
    if not args.skip_art:
        try:
            import art

            art_version = art.__version__
        except ImportError:
            print("ART is not installed: its rows are skipped")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    split = load_digits_images(seed=SEED)
    order = torch.randperm(split.x_train.shape[0], generator=torch.Generator().manual_seed(SEED))
    own, attacker = order[:TARGET_TRAIN], order[TARGET_TRAIN:]
    torch.manual_seed(SEED)
    module = train_classifier(SmallCNN(), split.x_train[own], split.y_train[own], epochs=20, seed=SEED)
    with torch.no_grad():
        target_labels = module(split.x_test).argmax(dim=1)
    pool = shifted_pool(split.x_train[attacker])
    seed_set = split.x_train[attacker][torch.randperm(attacker.numel(), generator=torch.Generator().manual_seed(1))]
    data = {
        "pool": pool,
        "groups": kmeans_groups(pool, 10, SEED),
        "seed": seed_set[:JACOBIAN_SEED],
        "test_x": split.x_test,
        "test_y": split.y_test,
    }
    report: dict[str, Any] = {
        "machine": machine(art_version),
        "budgets": BUDGETS,
        "target_accuracy": accuracy(module, split.x_test, split.y_test),
        "attacker_digits": int(attacker.numel()),
        "pool_size": int(pool.shape[0]),
        "groups": int(data["groups"].max()) + 1,
        "test_size": int(split.x_test.shape[0]),
        "seeds": list(range(args.seeds)),
    }
    print(f"target accuracy {report['target_accuracy']:.3f}; strategies:", flush=True)
    report["strategies"], results = run_strategies(module, data, target_labels, report["seeds"])
    plot_extraction(results, args.out / "privacy-extraction.png", title="Extraction of a digits SmallCNN")
    print("output hardening:", flush=True)
    report["hardened"] = run_hardened(module, data, target_labels)
    report["art"] = []
    if art_version:
        print("ART:", flush=True)
        report["art"] = run_art(module, data, target_labels, report["seeds"])
    print("model inversion:", flush=True)
    report["inversion"] = run_inversion(args.out)
    print("attribute inference:", flush=True)
    report["attribute"] = run_attribute()
    report["seconds"] = time.perf_counter() - started
    (args.out / "privacy-extraction.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "privacy-extraction.md").write_text(markdown(report))
    print(f"wrote {args.out / 'privacy-extraction.md'} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
