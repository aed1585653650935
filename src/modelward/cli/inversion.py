"""``modelward attack inversion`` (MI-Face on a digits model) and ``attack attribute`` (breast-cancer table).

The attribute attack trains (or loads) an MLP on the breast-cancer table's training split; its
victims are those training records. The attacks live in ``attacks/inversion``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from modelward.cli.privacy_options import (
    DATASETS,
    emit,
    format_option,
    load_digits_model,
    load_split,
    model_option,
    out_option,
    parse_classes,
    recipe_option,
    rich_console,
    seed_option,
)
from modelward.core.errors import InputError


@click.command("inversion", short_help="Model inversion: reconstruct class images and compare them with the real data.")
@model_option
@recipe_option
@click.option(
    "--data",
    type=click.Choice(DATASETS),
    default="digits",
    show_default=True,
    help="digits: reconstruct class images (MI-Face); breast-cancer: attribute inference (see `attack attribute`).",
)
@click.option("--column", help="breast-cancer only: the sensitive column (name or index), e.g. 'worst area'.")
@click.option("--steps", type=click.IntRange(1, 100_000), default=300, show_default=True, help="Search steps.")
@click.option(
    "--classes", callback=parse_classes, metavar="LIST", help="Classes to reconstruct, e.g. 0,3,8 (default: all)."
)
@click.option(
    "--gradient",
    type=click.Choice(["auto", "white-box", "zeroth-order"]),
    default="auto",
    show_default=True,
    help="white-box: exact gradients; zeroth-order: estimated from score queries only.",
)
@click.option(
    "--samples", type=click.IntRange(1, 1000), default=20, show_default=True, help="Zeroth-order pairs per step."
)
@click.option(
    "--tv-weight",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Total-variation penalty (smoother images).",
)
@seed_option
@format_option
@out_option
def attack_inversion(
    model: Path | None,
    recipe: str | None,
    data: str,
    column: str | None,
    steps: int,
    classes: list[int] | None,
    gradient: str,
    samples: int,
    tv_weight: float,
    seed: int,
    fmt: str,
    out: Path | None,
) -> None:
    """Reconstruct a representative image of each class from a digits model (MI-Face model inversion).

    Each reconstruction is compared with the real mean image of its class in the training data
    (x_train), beside random images: the report gives the correlation of both, how often a
    reconstruction is closest to its own class mean (against chance), and the queries spent.
    With --out, writes inversion.png (reconstructions above the real class means) and
    results.json. --data breast-cancer --column NAME runs attribute inference instead (the same
    as `attack attribute` with its defaults).
    """
    if data == "breast-cancer":
        if recipe is not None:
            raise InputError("recipes are digits models; for breast-cancer give --model (an MLP) or nothing")
        if column is None:
            raise InputError("--data breast-cancer needs --column (the sensitive column)")
        _run_attribute(model, column, "scores", None, "auto", 100, seed, fmt, out)
        return
    if column is not None:
        raise InputError("--column is for --data breast-cancer (attribute inference)")
    from modelward.attacks.inversion import ModelInversion

    resolved = load_digits_model(model, recipe)
    split = resolved.data
    inversion = ModelInversion(
        steps=steps,
        gradient=gradient,  # type: ignore[arg-type]
        samples=samples,
        tv_weight=tv_weight,
        seed=seed,
    )
    result = inversion.invert(resolved.classifier(), classes, reference_x=split.x_train, reference_y=split.y_train)
    similarity = result.similarity
    if similarity is None:  # pragma: no cover - reference data was given
        raise InputError("model inversion returned no similarity")
    result_report: dict[str, Any] = {
        "model": resolved.source,
        "gradient": result.gradient,
        "classes": result.classes,
        "steps": result.steps,
        "confidence": [float(c) for c in result.confidence],
        "queries": result.queries,
        "seconds": result.seconds,
        "similarity": {
            "per_class_correlation": similarity.per_class,
            "correlation": similarity.mean,
            "random_correlation": similarity.random,
            "advantage": similarity.advantage,
            "match_rate": similarity.match_rate,
            "chance": similarity.chance,
            "ssim": similarity.ssim,
            "random_ssim": similarity.random_ssim,
            "meaningful": similarity.meaningful,
        },
        "reference": "class means of x_train (the training data the attack tries to reveal)",
    }
    emit(result_report, fmt, out, _print_inversion, {"inversion.png": result.plot})


@click.command("attribute", short_help="Attribute inference on the breast-cancer table, beside a no-model baseline.")
@click.option(
    "--data", type=click.Choice(["breast-cancer"]), default="breast-cancer", show_default=True, help="The table."
)
@click.option("--column", required=True, help="The sensitive column (name or index), e.g. 'worst area'.")
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="Saved MLP (30 inputs, 2 classes) trained on the table's training split; default: train one now.",
)
@click.option(
    "--method",
    type=click.Choice(["scores", "grid"]),
    default="scores",
    show_default=True,
    help="scores: an attack model on the model's outputs; grid: try candidate values (model inversion).",
)
@click.option(
    "--known",
    metavar="COLUMNS",
    help="Columns the attacker knows, comma-separated (default: all others; scores only).",
)
@click.option(
    "--output",
    type=click.Choice(["auto", "scores", "labels"]),
    default="auto",
    show_default=True,
    help="What the attacker sees of the model's answers.",
)
@click.option("--epochs", type=click.IntRange(1, 10_000), default=100, show_default=True, help="When training the MLP.")
@seed_option
@format_option
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Folder for results.json.")
def attack_attribute(
    data: str,
    column: str,
    model: Path | None,
    method: str,
    known: str | None,
    output: str,
    epochs: int,
    seed: int,
    fmt: str,
    out: Path | None,
) -> None:
    """Infer a sensitive column of training records from a tabular model, beside a no-model baseline.

    The victims are the breast-cancer training records (the model's members): the attacker
    knows each victim's other columns (or --known ones) and label and sees the model's output,
    and holds the test records in full. The sensitive value is binarised at the attacker data's
    median. The baseline imputes it from the same knowledge without the model, so the
    difference (advantage) is what the model leaks. With no --model, an MLP (hidden 64) is
    trained now, seeded.
    """
    _run_attribute(model, column, method, known, output, epochs, seed, fmt, out)


def _column_index(text: str, names: Sequence[str]) -> int:
    """A breast-cancer column by name (case, ``-`` and ``_`` ignored) or by index."""
    wanted = " ".join(text.strip().lower().replace("-", " ").replace("_", " ").split())
    if wanted.isdigit():
        index = int(wanted)
        if index < len(names):
            return index
        raise InputError(
            f"column index {index} is out of range: the table has {len(names)} columns (0–{len(names) - 1})"
        )
    for index, name in enumerate(names):
        if name.lower() == wanted:
            return index
    raise InputError(f"unknown column {text!r}; columns: {', '.join(names)}")


def _tabular_model(model: Path | None, split: Any, epochs: int, seed: int) -> tuple[Any, str]:
    """A saved breast-cancer MLP, or one trained now (seeded) on the training split."""
    import torch

    from modelward.classifiers.models import MLP
    from modelward.classifiers.store import load_model
    from modelward.classifiers.training import train_classifier

    width = int(split.input_shape[0])
    if model is not None:
        path = (Path.cwd() / model).resolve()
        module, _ = load_model(path)
        config = dict(getattr(module, "config", {}))
        if type(module).__name__ != "MLP" or (config.get("in_features"), config.get("num_classes")) != (width, 2):
            raise InputError(
                f"{path}: attribute inference on breast-cancer needs an MLP with {width} inputs and 2 classes, "
                f"not {type(module).__name__} {config}"
            )
        return module, str(path)
    torch.manual_seed(seed)  # the initial weights come from the global generator
    module = train_classifier(MLP(width, 2, hidden=64), split.x_train, split.y_train, epochs=epochs, seed=seed)
    return module, f"MLP (hidden 64) trained now on the training split, {epochs} epochs, seed {seed}"


def _run_attribute(
    model: Path | None,
    column: str,
    method: str,
    known: str | None,
    output: str,
    epochs: int,
    seed: int,
    fmt: str,
    out: Path | None,
) -> None:
    """Attribute inference on the breast-cancer table: attackers hold x_test, victims are x_train."""
    from sklearn.datasets import load_breast_cancer

    from modelward.attacks.inversion import AttributeInference
    from modelward.classifiers.torch_adapter import TorchClassifier
    from modelward.classifiers.training import accuracy

    names = [str(name) for name in load_breast_cancer().feature_names]
    index = _column_index(column, names)
    known_columns = None if known is None else [_column_index(part, names) for part in known.split(",") if part.strip()]
    if known_columns is not None and method == "grid":
        raise InputError("--known is for --method scores: the grid method queries complete records")
    split = load_split("breast-cancer")
    module, source = _tabular_model(model, split, epochs, seed)
    target = TorchClassifier(module, split.input_shape, bounds=(split.lower, split.upper))
    inference = AttributeInference(
        index,
        method=method,  # type: ignore[arg-type]
        known_columns=known_columns,
        output=output,  # type: ignore[arg-type]
        seed=seed,
    )
    result = inference.infer(target, split.x_test, split.y_test, split.x_train, split.y_train)
    summary = result.summary()
    result_report: dict[str, Any] = {
        "data": "breast-cancer (load_breast_cancer_table, seed 0)",
        "model": source,
        "target_accuracy": accuracy(module, split.x_test, split.y_test),
        "column_name": names[index],
        **summary,
        "known_column_names": [names[i] for i in summary["known_columns"]],
        "victims_are": "x_train (the model's training records)",
        "attacker_holds": "x_test in full",
    }
    emit(result_report, fmt, out, _print_attribute)


def _print_inversion(result: dict[str, Any]) -> None:
    from rich.table import Table

    similarity = result["similarity"]
    table = Table(title=f"Model inversion ({result['gradient']}), {result['queries']} queries")
    for column in ("class", "target confidence", "correlation with class mean"):
        table.add_column(column, justify="right")
    for label, confidence, correlation in zip(
        result["classes"], result["confidence"], similarity["per_class_correlation"], strict=True
    ):
        table.add_row(str(label), f"{confidence:.3f}", f"{correlation:.3f}")
    console = rich_console()
    console.print(table)
    console.print(
        f"mean correlation {similarity['correlation']:.3f} vs random images {similarity['random_correlation']:.3f}; "
        f"class identified {similarity['match_rate']:.0%} (chance {similarity['chance']:.0%})"
    )


def _print_attribute(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"Attribute inference of '{result['column_name']}' (above {result['threshold']:.3g}, standardised), "
        f"{result['method']} method, {result['victims']} victims"
    )
    table.add_column("")
    for column in ("accuracy", "ROC AUC"):
        table.add_column(column, justify="right")
    table.add_row("attack (with the model)", f"{result['attack_accuracy']:.3f}", f"{result['attack_auc']:.3f}")
    table.add_row("baseline (without it)", f"{result['baseline_accuracy']:.3f}", f"{result['baseline_auc']:.3f}")
    table.add_row("always the majority value", f"{result['majority_accuracy']:.3f}", "—")
    console = rich_console()
    console.print(table)
    console.print(
        f"the model adds {result['advantage']:+.3f} accuracy and {result['auc_advantage']:+.3f} AUC; "
        f"{result['queries']} queries; model: {result['model']}"
    )
