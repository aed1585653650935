"""``modelward attack extraction``: steal a digits model into a surrogate from its (optionally hardened) answers.

The attack lives in ``attacks/extraction``; the hardenings in ``defenses/output_hardening``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from modelward.cli.privacy_options import (
    HARDENINGS,
    emit,
    format_option,
    load_digits_model,
    model_option,
    out_option,
    parse_hardening,
    recipe_option,
    rich_console,
    seed_option,
)
from modelward.cli.progress import progress_bar

EXTRACTION_STRATEGIES = ("random", "natural", "knockoff", "jacobian")
#: Width of the attacker's surrogate SmallCNN (the attacker does not know the target's).
SURROGATE_WIDTH = 16
#: Attacker images the Jacobian strategy starts from (Papernot et al. start from about 100).
JACOBIAN_SEEDS = 100


@click.command(
    "extraction",
    short_help="Steal a model from its answers: surrogate fidelity against queries.",
)
@model_option
@recipe_option
@click.option(
    "--strategy",
    type=click.Choice(EXTRACTION_STRATEGIES),
    default="natural",
    show_default=True,
    help="random: uniform inputs; natural: the attacker's own digits; knockoff: a bandit over groups of "
    "them; jacobian: Papernot's augmentation from 100 of them.",
)
@click.option("--budget", type=click.IntRange(1), default=1000, show_default=True, help="Target queries to spend.")
@click.option(
    "--rounds",
    type=click.IntRange(1, 30),
    default=4,
    show_default=True,
    help="Points on the curve: the surrogate is retrained and scored at budgets doubling up to --budget.",
)
@click.option(
    "--output",
    type=click.Choice(["auto", "scores", "labels"]),
    default="auto",
    show_default=True,
    help="What the surrogate learns from (auto: scores when the endpoint serves them).",
)
@click.option(
    "--harden",
    multiple=True,
    callback=parse_hardening,
    metavar="STEP",
    help=f"Serve the target through output hardening (repeatable, applied in order): {HARDENINGS}.",
)
@click.option(
    "--epochs", type=click.IntRange(1, 1000), default=30, show_default=True, help="Surrogate training epochs."
)
@seed_option
@format_option
@out_option
def attack_extraction(
    model: Path | None,
    recipe: str | None,
    strategy: str,
    budget: int,
    rounds: int,
    output: str,
    harden: list[dict[str, Any]],
    epochs: int,
    seed: int,
    fmt: str,
    out: Path | None,
) -> None:
    """Steal a digits model into a surrogate from its answers, and report fidelity against queries.

    The attacker sees only the target's scores or labels (through --harden when given). Its own
    data is a fixed random half of the digits' x_test (270 images, enlarged ninefold by
    one-pixel shifts into the pool of natural and knockoff; jacobian starts from 100 of them);
    the other half (270 images, never queried by the attacker) measures the surrogate:
    fidelity is agreement with the target's labels, accuracy agreement with the true labels.
    The surrogate (a SmallCNN of width 16) is retrained from scratch at each point of the curve.
    With --out, writes results.json and extraction-curve.png.
    """
    from modelward.attacks.extraction import ModelExtraction
    from modelward.attacks.extraction.attacker_data import ATTACKER_SPLIT_SEED, attacker_split, pixel_shifts
    from modelward.classifiers.models import SmallCNN
    from modelward.defenses.output_hardening import HardenedClassifier, parse_steps

    resolved = load_digits_model(model, recipe)
    attacker_x, eval_x, eval_y = attacker_split(resolved.data)
    owner = resolved.classifier()  # the owner's own view: labels for scoring fidelity, not attack queries
    owner_labels = owner.predict(eval_x)
    hardening = [{**spec, "seed": seed} if spec["kind"] == "gaussian_noise" else spec for spec in harden]
    steps = parse_steps(hardening)
    target = HardenedClassifier(resolved.classifier(), steps) if steps else resolved.classifier()
    pool = pixel_shifts(attacker_x)
    seed_data = {"random": None, "jacobian": attacker_x[:JACOBIAN_SEEDS]}.get(strategy, pool)

    def surrogate() -> Any:
        return SmallCNN(width=SURROGATE_WIDTH)

    extraction = ModelExtraction(
        strategy,  # type: ignore[arg-type]
        surrogate,
        budget,
        rounds=rounds,
        seed=seed,
        output=output,  # type: ignore[arg-type]
        epochs=epochs,
    )
    with progress_bar(f"{strategy} extraction, {budget} queries") as progress:
        result = extraction.extract(
            target, seed_data, eval_x, eval_y, target_test_labels=owner_labels, progress=progress
        )
    summary = result.summary()
    result_report: dict[str, Any] = {
        "model": resolved.source,
        "hardening": hardening,
        **summary,
        "data": {
            "attacker_images": int(attacker_x.shape[0]),
            "attacker_inputs": 0 if seed_data is None else int(seed_data.shape[0]),
            "evaluation_images": int(eval_x.shape[0]),
            "split": f"x_test of the digits split, halved at random (seed {ATTACKER_SPLIT_SEED}): "
            "attacker data and evaluation data are disjoint",
        },
        "surrogate": f"SmallCNN(width={SURROGATE_WIDTH})",
    }
    emit(result_report, fmt, out, _print_extraction, {"extraction-curve.png": result.plot})


def _print_extraction(result: dict[str, Any]) -> None:
    from rich.table import Table

    hardening = ", ".join(_step_text(spec) for spec in result["hardening"]) or "none"
    table = Table(
        title=f"Model extraction ({result['strategy']}, learns from {result['output']}; hardening: {hardening})"
    )
    for column in ("queries", "fidelity", "surrogate accuracy", "seconds"):
        table.add_column(column, justify="right")
    for point in result["curve"]:
        table.add_row(
            str(point["queries"]), f"{point['fidelity']:.3f}", f"{point['accuracy']:.3f}", f"{point['seconds']:.1f}"
        )
    console = rich_console()
    console.print(table)
    console.print(
        f"target accuracy {result['target_accuracy']:.3f} on {result['data']['evaluation_images']} held-out digits; "
        f"{result['queries']} of {result['budget']} queries spent"
    )
    if result["stop_reason"]:
        console.print(f"stopped early: {result['stop_reason']}")


def _step_text(spec: dict[str, Any]) -> str:
    """A hardening step as ``kind(param=value, …)``."""
    params = ", ".join(f"{name}={value:g}" for name, value in spec.items() if name not in ("kind", "seed"))
    return f"{spec['kind']}({params})" if params else str(spec["kind"])
