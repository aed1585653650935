"""``modelward attack membership``: membership inference on a digits model, with reference models when needed.

The target was trained on ``x_train`` of ``load_digits_images(seed=0)``: those records are the
members and ``x_test`` the non-members. The attacks live in ``attacks/inference``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import click

from modelward.cli.privacy_options import (
    emit,
    finite,
    format_option,
    load_digits_model,
    model_option,
    out_option,
    parse_rates,
    recipe_option,
    rich_console,
    seed_option,
)
from modelward.cli.progress import progress_bar
from modelward.core.errors import InputError

MEMBERSHIP_ATTACKS = ("loss", "label-only", "shadow", "lira", "rmia")
REFERENCE_ATTACKS = frozenset({"shadow", "lira", "rmia"})
DEFAULT_CACHE = Path(".modelward-cache") / "references"


@click.command(
    "membership", short_help="Membership inference (LOSS, label-only, shadow, LiRA, RMIA): AUC and TPR at low FPR."
)
@model_option
@recipe_option
@click.option(
    "--attack",
    "attack_name",
    type=click.Choice(MEMBERSHIP_ATTACKS),
    default="lira",
    show_default=True,
    help="loss: loss threshold; label-only: correctness (labels only); shadow: shadow-model classifier; "
    "lira: likelihood ratio; rmia: relative membership inference.",
)
@click.option(
    "--references",
    type=click.IntRange(2, 1024),
    default=8,
    show_default=True,
    help="Reference (shadow) models, an even number (shadow, lira, rmia).",
)
@click.option(
    "--online/--offline",
    default=False,
    show_default=True,
    help="LiRA and RMIA: also use reference models trained on each record (online), or only those without.",
)
@click.option(
    "--fpr",
    "fprs",
    callback=parse_rates,
    default="0.001,0.01",
    metavar="RATES",
    show_default=True,
    help="False-positive rates to report the TPR at.",
)
@click.option(
    "--epochs",
    type=click.IntRange(1, 1000),
    default=15,
    show_default=True,
    help="Training epochs per reference model (Adam 1e-3, batch 64, as the recipes).",
)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Processes (or Ray CPUs).")
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Train reference models in local processes, or on Ray (needs the distributed extra).",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path, file_okay=False),
    default=str(DEFAULT_CACHE),
    show_default=True,
    help="Folder of cached reference models and their signals (safetensors), reused across runs.",
)
@click.option("--no-cache", is_flag=True, help="Train reference models afresh and store nothing.")
@seed_option
@format_option
@out_option
def attack_membership(
    model: Path | None,
    recipe: str | None,
    attack_name: str,
    references: int,
    online: bool,
    fprs: list[float],
    epochs: int,
    workers: int,
    engine_name: str,
    cache: Path,
    no_cache: bool,
    seed: int,
    fmt: str,
    out: Path | None,
) -> None:
    """Measure how well an attacker tells a digits model's training records from unseen ones.

    The target must have been trained on x_train of the 8×8 digits split (seed 0), as every recipe
    and every model `defend` saves for digits is: those 1,257 records are the members and the
    540 x_test records the non-members; the population (train ∪ test) is what reference models
    train on, each on a random half (a SmallCNN shaped like the target). Reports the AUC and the
    true-positive rate at each --fpr, exactly: with 540 non-members a rate of 0.1% cannot be
    resolved (it needs at least 1,000) and is reported as unresolvable, never as a number. With
    --out, writes results.json and roc.png (log-log ROC).
    """
    import torch

    from modelward.attacks.inference.plots import plot_roc
    from modelward.datasets.synthetic import population_from_split

    if attack_name in REFERENCE_ATTACKS and references % 2:
        raise InputError(f"--references must be even (each record is inside half of them), got {references}")
    if attack_name == "rmia" and not online and references < 4:
        raise InputError(
            "offline RMIA tunes its parameter a by attacking one reference model with the others: "
            f"it needs --references 4 or more (got {references}), or --online"
        )
    resolved = load_digits_model(model, recipe)
    split = resolved.data
    population = population_from_split(split)
    n_members = int(split.x_train.shape[0])
    members = torch.zeros(len(population), dtype=torch.bool)
    members[:n_members] = True
    target = resolved.classifier()
    reference_set: Any = None
    reference_info: dict[str, Any] | None = None
    if attack_name in REFERENCE_ATTACKS:
        reference_set, reference_info = _train_references(
            population,
            dict(resolved.module.config),
            count=references,
            epochs=epochs,
            workers=workers,
            engine_name=engine_name,
            cache=None if no_cache else cache,
            seed=seed,
        )
    chosen = _membership_attack(attack_name, target, reference_set, online=online, seed=seed)
    result = chosen.evaluate(
        population.x, population.y, members, indices=torch.arange(len(population)), fprs=fprs, top_k=10
    )
    result_report: dict[str, Any] = {
        "attack": attack_name,
        "label": result.attack,
        "mode": ("online" if online else "offline") if attack_name in ("lira", "rmia") else None,
        "model": resolved.source,
        "data": {
            "dataset": "digits (load_digits_images, seed 0)",
            "population": len(population),
            "members": result.n_members,
            "nonmembers": result.n_nonmembers,
            "members_are": "x_train (population indices 0..members-1 are x_train indices)",
        },
        "auc": result.auc,
        "balanced_accuracy": result.balanced_accuracy,
        "tpr_at_fpr": [_tpr_row(value) for _, value in sorted(result.tpr_at.items())],
        "top_leaking": result.top_leaking,
        "top_leaking_scores": [finite(float(result.scores[i])) for i in result.top_leaking],
        "queries": result.queries,
        "seconds": result.seconds,
        "references": reference_info,
        "details": result.details,
    }
    title = f"{result.attack} on {model.name if model is not None else recipe}"
    emit(result_report, fmt, out, _print_membership, {"roc.png": lambda p: plot_roc([result], p, title=title)})


def _train_references(
    population: Any,
    params: dict[str, Any],
    *,
    count: int,
    epochs: int,
    workers: int,
    engine_name: str,
    cache: Path | None,
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    """Reference models shaped like the target on random halves of the population, cached, with a progress bar."""
    from modelward.attacks.inference.reference_models import (
        LocalEngine,
        RayEngine,
        ReferenceEngine,
        ReferenceModels,
        reference_specs,
    )

    plain = {name: int(value) for name, value in params.items()}
    specs = reference_specs(
        len(population), count, "small-cnn", plain, seed=seed, epochs=epochs, batch_size=64, lr=1e-3
    )
    engine: ReferenceEngine
    if engine_name == "ray":
        engine = RayEngine(num_cpus=workers, cache_dir=cache)
    else:
        engine = LocalEngine(workers, cache_dir=cache)
    started = time.perf_counter()
    with engine, progress_bar(f"{count} reference models ({engine_name}, {workers} worker(s))") as progress:
        trained = engine.train(specs, population.x, population.y, progress=progress)
    references = ReferenceModels(trained, population, engine.cache)
    info = {
        "count": count,
        "trained": sum(not model.cached for model in trained),
        "cached": sum(model.cached for model in trained),
        "architecture": "SmallCNN",
        "params": plain,
        "epochs": epochs,
        "batch_size": 64,
        "lr": 1e-3,
        "engine": engine_name,
        "workers": workers,
        "cache": None if cache is None else str(cache),
        "seconds": time.perf_counter() - started,
    }
    return references, info


def _membership_attack(name: str, target: Any, references: Any, *, online: bool, seed: int) -> Any:
    """The chosen attack, built on the target (and the reference models when it compares against them)."""
    from modelward.attacks.inference.base import LabelOnlyAttack, LossAttack

    if name == "loss":
        return LossAttack(target)
    if name == "label-only":
        return LabelOnlyAttack(target, seed=seed)
    if name == "shadow":
        from modelward.attacks.inference.shadow import ShadowModelAttack

        return ShadowModelAttack(target, references, seed=seed)
    if name == "lira":
        from modelward.attacks.inference.lira import LiRA

        return LiRA(target, references, online=online)
    from modelward.attacks.inference.rmia import RMIA

    return RMIA(target, references, online=online, seed=seed)


def _tpr_row(value: Any) -> dict[str, Any]:
    """One TPR-at-FPR entry, with the text to show: a number only when the non-members can resolve it."""
    row: dict[str, Any] = value.to_dict()
    row["resolvable"] = value.resolvable
    if value.resolvable:
        row["display"] = f"{value.tpr:.4f}"
    else:
        needed = math.ceil(1.0 / value.fpr - 1e-9)
        row["display"] = f"unresolvable (needs ≥ {needed} non-members)"
    return row


def _print_membership(result: dict[str, Any]) -> None:
    from rich.table import Table

    data = result["data"]
    table = Table(title=f"Membership inference: {result['label']}", show_header=False)
    table.add_row("model", result["model"])
    table.add_row("members / non-members", f"{data['members']} / {data['nonmembers']}")
    table.add_row("AUC", f"{result['auc']:.4f}")
    table.add_row("best balanced accuracy", f"{result['balanced_accuracy']:.4f}")
    for row in result["tpr_at_fpr"]:
        table.add_row(f"TPR at FPR {row['fpr'] * 100:g}%", row["display"])
    table.add_row("target queries", str(result["queries"]))
    references = result["references"]
    if references is not None:
        table.add_row(
            "reference models",
            f"{references['count']} ({references['trained']} trained, {references['cached']} from the cache), "
            f"{references['epochs']} epochs, {references['seconds']:.1f} s",
        )
    table.add_row("most exposed members (x_train index)", ", ".join(map(str, result["top_leaking"])))
    rich_console().print(table)
