"""Benchmark: membership inference (LOSS, LiRA, RMIA, shadow models) on two overfit targets, beside ART.

Two targets, each trained on a random half of its population (the other half are the non-members):

1. **Tabular**: an MLP (hidden 256, 100 epochs, no regularisation) on a generated population of
   5,000 records (20 features, 10 classes, 10% label noise; ``make_tabular_population``), so
   2,500 non-members resolve a TPR at 0.1% FPR.
2. **Digits**: SmallCNN (40 epochs) on the 1,797 scikit-learn digit images. Half of them leaves
   899 non-members, too few for 0.1% FPR: that rate is reported as unresolvable, never guessed.

Per target: 16 reference models on balanced random halves of the population (trained on 2 local
processes), then LOSS, LiRA online/offline (global variance, the paper's choice below 64 models,
and per-example variance), RMIA offline/online, shadow models and the label-only gap attack on every
record: AUC and TPR at 0.1% and 1% FPR, exact. Target: LiRA and RMIA TPR@0.1% ≥ 5× LOSS's.

Side by side with ART's ``MembershipInferenceBlackBox`` (when ``adversarial-robustness-toolbox``
is importable): ART's attack learns from the target's outputs on records whose membership the
attacker knows (a random 20% of members and of non-members); everything is then compared on the
remaining 80%, where our attacks are re-scored on exactly the same records.

Results go to benchmarks/results/privacy-membership.{json,md} with the machine. Run it with

    python benchmarks/privacy/membership.py [--references 16] [--workers 2] [--skip-art] [--plots DIR]

ART comes from the ``bench`` extra (or a separate venv:
``python -m venv /tmp/bv && /tmp/bv/bin/pip install -e '.[ml]' adversarial-robustness-toolbox``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modelward.attacks.inference.base import LabelOnlyAttack, LossAttack, MembershipAttack  # noqa: E402
from modelward.attacks.inference.lira import LiRA  # noqa: E402
from modelward.attacks.inference.metrics import MembershipResult, membership_result  # noqa: E402
from modelward.attacks.inference.plots import plot_roc  # noqa: E402
from modelward.attacks.inference.reference_models import (  # noqa: E402
    LocalEngine,
    ModelSpec,
    ReferenceModels,
    reference_specs,
    train_reference_models,
)
from modelward.attacks.inference.rmia import RMIA  # noqa: E402
from modelward.attacks.inference.shadow import ShadowModelAttack  # noqa: E402
from modelward.classifiers.torch_adapter import TorchClassifier  # noqa: E402
from modelward.classifiers.training import accuracy  # noqa: E402
from modelward.datasets.builtin import load_digits_images  # noqa: E402
from modelward.datasets.synthetic import Population, make_tabular_population, population_from_split  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FPRS = (0.001, 0.01)
ART_KNOWN_FRACTION = 0.2  # of members and of non-members, whose membership ART's attacker is given


@dataclass
class Setting:
    """One target: its population, model factory and schedule."""

    name: str
    title: str
    short: str
    population: Population
    factory: str
    params: dict[str, int]
    epochs: int


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
    for name, module in (("scikit-learn", "sklearn"), ("adversarial-robustness-toolbox", "art"), ("ray", "ray")):
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
        "note": "shared machine: other engineers' jobs ran on the same 2 cores, so timings are indicative",
    }


def settings() -> list[Setting]:
    tabular = make_tabular_population(5000, seed=0)
    digits = population_from_split(load_digits_images())
    return [
        Setting(
            "tabular",
            "MLP on the generated tabular population (5,000 records, 20 features, 10 classes, 10% label noise)",
            "Overfit MLP, generated tabular population",
            tabular,
            "mlp",
            {"in_features": 20, "num_classes": 10, "hidden": 256},
            100,
        ),
        Setting(
            "digits",
            "SmallCNN on the 1,797 scikit-learn digits (8×8)",
            "Overfit SmallCNN, 8×8 digits",
            digits,
            "small-cnn",
            {"width": 32},
            40,
        ),
    ]


def attacks(target: TorchClassifier, references: ReferenceModels) -> list[MembershipAttack]:
    return [
        LossAttack(target),
        LiRA(target, references, online=True),
        LiRA(target, references, online=True, fixed_variance=False),
        LiRA(target, references, online=False),
        LiRA(target, references, online=False, fixed_variance=False),
        RMIA(target, references, online=False),
        RMIA(target, references, online=True),
        ShadowModelAttack(target, references),
        LabelOnlyAttack(target),
    ]


def row(result: MembershipResult) -> dict[str, Any]:
    summary = result.summary()
    summary.pop("top_leaking", None)
    summary["auc"] = round(result.auc, 4)
    summary["balanced_accuracy"] = round(result.balanced_accuracy, 4)
    summary["seconds"] = round(result.seconds, 3)
    return summary


def art_black_box(
    module: nn.Module, population: Population, members: torch.Tensor, known: torch.Tensor, held_out: torch.Tensor
) -> list[tuple[str, np.ndarray, float]]:
    """ART's black-box attack (neural-network and random-forest attack models) scored on ``held_out``."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import PyTorchClassifier

    estimator = PyTorchClassifier(
        model=nn.Sequential(module, nn.Softmax(dim=1)),  # ART sees probabilities, as a black box would
        loss=nn.CrossEntropyLoss(),
        input_shape=population.input_shape,
        nb_classes=population.num_classes,
        clip_values=population.bounds,
    )
    x = population.x.numpy()
    y = population.y.numpy()
    known_in = known[members[known]]
    known_out = known[~members[known]]
    outputs = []
    for kind in ("nn", "rf"):
        started = time.perf_counter()
        attack = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type=kind)
        attack.fit(x[known_in], y[known_in], x[known_out], y[known_out])
        scores = np.asarray(attack.infer(x[held_out], y[held_out], probabilities=True), dtype=np.float64)
        scores = scores[:, -1] if scores.ndim == 2 else scores
        outputs.append((f"ART black-box ({kind})", scores.ravel(), time.perf_counter() - started))
    return outputs


def run_setting(setting: Setting, args: argparse.Namespace) -> dict[str, Any]:
    population = setting.population
    n = len(population)
    members = population.random_half(seed=1)
    engine = LocalEngine(args.workers, cache_dir=args.cache)
    print(f"{setting.name}: training the target and {args.references} reference models", flush=True)
    started = time.perf_counter()
    target_spec = ModelSpec(
        setting.factory, setting.params, tuple(members.nonzero().squeeze(1).tolist()), seed=2, epochs=setting.epochs
    )
    target_module = engine.train([target_spec], population.x, population.y)[0].module()
    target_seconds = time.perf_counter() - started
    started = time.perf_counter()
    specs = reference_specs(n, args.references, setting.factory, setting.params, seed=3, epochs=setting.epochs)
    references = train_reference_models(population, specs, engine=engine)
    reference_seconds = time.perf_counter() - started
    split = population.split(members)
    train_acc = accuracy(target_module, split.x_train, split.y_train)
    test_acc = accuracy(target_module, split.x_test, split.y_test)
    print(f"  target accuracy train {train_acc:.3f} / test {test_acc:.3f}; refs {reference_seconds:.1f} s", flush=True)

    started = time.perf_counter()
    references.log_probabilities()  # every reference model on every record, once, shared by the attacks
    signal_seconds = time.perf_counter() - started
    target = TorchClassifier(target_module, population.input_shape, bounds=population.bounds)
    everyone = torch.arange(n)
    results: list[MembershipResult] = []
    for attack in attacks(target, references):
        result = attack.evaluate(population.x, population.y, members, indices=everyone, fprs=FPRS)
        results.append(result)
        print(
            f"  {result.attack:<32} AUC {result.auc:.3f}  TPR@0.1% {result.tpr_at[0.001]!s:<8.8}  "
            f"TPR@1% {result.tpr_at[0.01]!s:<8.8} ({result.queries} queries, {result.seconds:.2f} s)",
            flush=True,
        )
    if args.plots:
        plot_roc(results, Path(args.plots) / f"membership-{setting.name}.png", title=setting.short)

    loss_low = results[0].tpr_at[0.001].tpr
    target_check: dict[str, Any] = {}
    for result in results[1:7]:
        ours = result.tpr_at[0.001].tpr
        if ours is None or loss_low is None:
            target_check[result.attack] = {"ratio": None, "meets_5x": None, "why": "TPR@0.1% FPR unresolvable"}
        else:
            ratio = ours / loss_low if loss_low > 0 else float("inf")
            target_check[result.attack] = {
                "ratio": None if ratio == float("inf") else round(ratio, 2),
                "meets_5x": ratio >= 5.0,
            }

    # Side by side with ART on records whose membership the ART attacker was not given.
    generator = torch.Generator().manual_seed(11)
    known = (
        torch.cat(
            [
                group[torch.randperm(group.numel(), generator=generator)[: int(ART_KNOWN_FRACTION * group.numel())]]
                for group in (members.nonzero().squeeze(1), (~members).nonzero().squeeze(1))
            ]
        )
        .sort()
        .values
    )
    held = torch.ones(n, dtype=torch.bool)
    held[known] = False
    held_out = held.nonzero().squeeze(1)
    comparison: list[dict[str, Any]] = []
    for result in results:
        subset = membership_result(result.attack, result.scores[held_out], members[held_out], fprs=FPRS)
        comparison.append(row(subset) | {"seconds": round(result.seconds, 3)})
    art_error = None
    if args.skip_art:
        art_error = "skipped (--skip-art)"
    else:
        try:
            for name, scores, seconds in art_black_box(target_module, population, members, known, held_out):
                subset = membership_result(name, scores, members[held_out].numpy(), fprs=FPRS)
                comparison.append(row(subset) | {"seconds": round(seconds, 3)})
                print(f"  {name:<32} AUC {subset.auc:.3f} on the held-out records", flush=True)
        except ImportError as exc:
            art_error = f"adversarial-robustness-toolbox not importable ({exc})"
    return {
        "name": setting.name,
        "title": setting.title,
        "population": n,
        "members": int(members.sum()),
        "nonmembers": int((~members).sum()),
        "model": {"factory": setting.factory, "params": setting.params, "epochs": setting.epochs},
        "target_accuracy": {"train": round(train_acc, 4), "test": round(test_acc, 4)},
        "reference_models": args.references,
        "workers": args.workers,
        "seconds": {
            "target": round(target_seconds, 2),
            "references": round(reference_seconds, 2),
            "reference_signals": round(signal_seconds, 2),
        },
        "attacks": [row(r) for r in results],
        "top_leaking": {r.attack: r.top_leaking for r in results[:2]},
        "lira_rmia_vs_loss_at_0.1pct": target_check,
        "loss_members_found_at_0.1pct": None if loss_low is None else round(loss_low * int(members.sum())),
        "art_comparison": {
            "known_fraction": ART_KNOWN_FRACTION,
            "held_out_members": int(members[held_out].sum()),
            "held_out_nonmembers": int((~members[held_out]).sum()),
            "rows": comparison,
            "art_error": art_error,
        },
    }


def fmt_tpr(entry: dict[str, Any]) -> str:
    if entry["tpr"] is None:
        return "unresolvable"
    return f"{100 * entry['tpr']:.2f}%"


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    versions = m["versions"]
    art = versions.get("adversarial-robustness-toolbox")
    lines = [
        "# Membership-inference benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch thread), {m['memory']}, "
        f"Python {m['python']}, torch {versions['torch']}, scikit-learn {versions['scikit-learn']}"
        + (f", ART {art}" if art else ", ART not installed")
        + f"; {m['date']}. {m['note'].capitalize()}.",
        "",
        "Regenerate with `python benchmarks/privacy/membership.py` "
        f"(total {data['seconds']:.0f} s). TPRs are exact: the largest TPR at a threshold whose FPR does not exceed "
        "the rate; *unresolvable* where the non-members cannot resolve it (0.1% needs ≥ 1,000).",
    ]
    for setting in data["settings"]:
        accuracy = setting["target_accuracy"]
        lines += [
            "",
            f"## {setting['title']}",
            "",
            f"Target trained on {setting['members']} records (accuracy train {accuracy['train']:.3f}, "
            f"test {accuracy['test']:.3f}); attacks score all {setting['population']} records "
            f"({setting['nonmembers']} non-members). {setting['reference_models']} reference models, trained on "
            f"{setting['workers']} processes in {setting['seconds']['references']:.1f} s; their outputs on every "
            f"record took {setting['seconds']['reference_signals']:.2f} s (shared by the attacks).",
            "",
            "| attack | AUC | TPR @ 0.1% FPR | TPR @ 1% FPR | target queries | seconds |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in setting["attacks"]:
            tprs = r["tpr_at_fpr"]
            lines.append(
                f"| {r['attack']} | {r['auc']:.3f} | {fmt_tpr(tprs['0.001'])} | {fmt_tpr(tprs['0.01'])} | "
                f"{r['queries']} | {r['seconds']:.2f} |"
            )
        checks = setting["lira_rmia_vs_loss_at_0.1pct"]
        verdicts = []
        for name, check in checks.items():
            if check["meets_5x"] is None:
                verdicts.append(f"{name}: n/a ({check['why']})")
            else:
                ratio = "∞ (LOSS finds none)" if check["ratio"] is None else f"{check['ratio']:.1f}×"
                verdicts.append(f"{name}: {ratio} {'✓' if check['meets_5x'] else '✗'}")
        lines += ["", "TPR@0.1% FPR relative to LOSS (target ≥ 5×): " + "; ".join(verdicts) + "."]
        found = setting["loss_members_found_at_0.1pct"]
        if found is not None:
            lines += [
                "",
                f"(LOSS identifies {found} of {setting['members']} members at 0.1% FPR: with so small a denominator "
                "the ratios are coarse; the absolute TPRs are the figures to compare.)",
            ]
        comparison = setting["art_comparison"]
        lines += [
            "",
            f"### Beside ART's black-box attack ({comparison['held_out_members']} members and "
            f"{comparison['held_out_nonmembers']} non-members held out)",
            "",
            f"ART's attack model learns from the target's outputs on {100 * comparison['known_fraction']:.0f}% of "
            "members and of non-members whose membership it is given; all rows are scored on the remaining records.",
            "",
        ]
        if comparison["art_error"]:
            lines += [f"ART: {comparison['art_error']}.", ""]
        lines += [
            "| attack | AUC | TPR @ 0.1% FPR | TPR @ 1% FPR |",
            "|---|---:|---:|---:|",
        ]
        for r in comparison["rows"]:
            tprs = r["tpr_at_fpr"]
            lines.append(f"| {r['attack']} | {r['auc']:.3f} | {fmt_tpr(tprs['0.001'])} | {fmt_tpr(tprs['0.01'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=16, help="reference models per target (even)")
    parser.add_argument("--workers", type=int, default=2, help="local processes training reference models")
    parser.add_argument("--skip-art", action="store_true", help="do not run ART's black-box attack")
    parser.add_argument("--cache", default=None, help="cache folder for trained models and signals (default: none)")
    parser.add_argument("--plots", default=None, help="folder for log-log ROC plots (default: none)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for privacy-membership.{json,md}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    data: dict[str, Any] = {"machine": machine(), "settings": []}
    for setting in settings():
        data["settings"].append(run_setting(setting, args))
    data["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "privacy-membership.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "privacy-membership.md").write_text(markdown(data), encoding="utf-8")
    print(f"wrote {out / 'privacy-membership.json'} and .md in {data['seconds']:.0f} s")


if __name__ == "__main__":
    main()
