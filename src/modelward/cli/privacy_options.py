"""What the privacy commands share: click options and parsers, the digits model loader and the report writer.

The commands live in ``privacy`` (``defend dp-train`` and registration), ``membership``,
``extraction`` and ``inversion`` (with attribute inference).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from modelward.core.errors import InputError
from modelward.core.files import write_text_atomic

DATASETS = ("digits", "breast-cancer")
HARDENINGS = "round:DECIMALS, noise:SIGMA, reverse-sigmoid[:BETA[,GAMMA]], top-k:K, label-only"


def load_split(data: str) -> Any:
    """The bundled split (seed 0) the commands' models were trained on: digits or breast-cancer."""
    from modelward.datasets.builtin import load_breast_cancer_table, load_digits_images

    return load_digits_images(seed=0) if data == "digits" else load_breast_cancer_table(seed=0)


def finite(value: float) -> float | None:
    """The value, or ``None`` when it is not finite (JSON has no infinity)."""
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# option parsing
# --------------------------------------------------------------------------------------------
def parse_rates(_ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    """Comma-separated false-positive rates in (0, 1), sorted, without repeats."""
    try:
        values = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if not values or any(not 0.0 < v < 1.0 for v in values):
        raise click.BadParameter(f"give at least one {param.name} value, each strictly between 0 and 1")
    return sorted(set(values))


def parse_classes(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[int] | None:
    """Comma-separated class indices (checked against the model's classes by the attack)."""
    if value is None:
        return None
    try:
        values = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of class indices") from None
    if not values:
        raise click.BadParameter("give at least one class index")
    return values


def _hardening_spec(text: str) -> dict[str, Any]:
    """One ``--harden`` value as the plain data ``defenses.output_hardening.parse_steps`` reads."""
    name, _, argument = text.partition(":")
    name = name.strip().lower().replace("_", "-")
    argument = argument.strip()
    try:
        if name in ("round", "rounding"):
            return {"kind": "rounding", "decimals": int(argument)}
        if name in ("noise", "gaussian-noise"):
            return {"kind": "gaussian_noise", "sigma": float(argument)}
        if name in ("top-k", "topk"):
            return {"kind": "top_k", "k": int(argument)}
        if name == "reverse-sigmoid":
            numbers = [float(part) for part in argument.split(",")] if argument else []
            if len(numbers) > 2:
                raise ValueError
            return {"kind": "reverse_sigmoid", **dict(zip(("beta", "gamma"), numbers, strict=False))}
        if name in ("label-only", "labels-only", "labels"):
            if argument:
                raise ValueError
            return {"kind": "label_only"}
    except ValueError:
        raise click.BadParameter(f"{text!r}: malformed value; use one of {HARDENINGS}") from None
    raise click.BadParameter(f"unknown hardening {text!r}; use one of {HARDENINGS}")


def parse_hardening(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[dict[str, Any]]:
    """Every ``--harden`` value parsed, and checked by the defense's own parser now (before any work)."""
    from modelward.defenses.output_hardening import LabelOnly, parse_steps

    specs = [_hardening_spec(text) for text in values]
    try:
        steps = parse_steps(specs)
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None
    if any(isinstance(step, LabelOnly) for step in steps) and len(steps) > 1:
        raise click.BadParameter("label-only serves labels alone: it cannot be combined with score hardenings")
    return specs


# --------------------------------------------------------------------------------------------
# models and data
# --------------------------------------------------------------------------------------------
def load_digits_model(model: Path | None, recipe: str | None) -> Any:
    """A saved model or recipe that classifies the 8×8 digits (a SmallCNN), with the digits split."""
    from modelward.checks.model_recipes import resolve_model

    if (model is None) == (recipe is None):
        raise InputError("give exactly one of --model (a saved model) or --recipe (a built-in recipe)")
    spec = {"path": str(model)} if model is not None else {"recipe": recipe}
    resolved = resolve_model(spec, Path.cwd())
    config = dict(getattr(resolved.module, "config", {}))
    architecture = type(resolved.module).__name__
    if architecture != "SmallCNN" or (config.get("in_channels"), config.get("side"), config.get("num_classes")) != (
        1,
        8,
        10,
    ):
        raise InputError(
            f"{resolved.source}: this command attacks a digits model (a SmallCNN on 1×8×8 images, 10 classes), "
            f"not {architecture} {config}"
        )
    return resolved


# --------------------------------------------------------------------------------------------
# shared options and output
# --------------------------------------------------------------------------------------------
model_option = click.option(
    "--model", type=click.Path(path_type=Path), help="Saved model (safetensors + JSON, without suffix)."
)
recipe_option = click.option(
    "--recipe", help="Built-in model recipe, trained once and cached (digits-cnn, digits-cnn-dp, …)."
)
seed_option = click.option("--seed", type=int, default=0, show_default=True)
format_option = click.option(
    "--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
out_option = click.option("--out", "-o", type=click.Path(path_type=Path), help="Folder for results.json and plots.")


def emit(
    results: dict[str, Any],
    fmt: str,
    out: Path | None,
    printer: Callable[[dict[str, Any]], None],
    plots: dict[str, Callable[[Path], object]] | None = None,
) -> None:
    """Write ``results.json`` and the plots into ``out`` (when given), then print the report as JSON or a table."""
    text = json.dumps(results, indent=2, allow_nan=False)
    written: list[Path] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        written.append(write_text_atomic(out / "results.json", text + "\n"))
        for name, draw in (plots or {}).items():
            draw(out / name)
            written.append(out / name)
    if fmt == "json":
        click.echo(text)
    else:
        printer(results)
    if written:
        click.echo("wrote " + " and ".join(str(path) for path in written), err=True)


def rich_console() -> Any:
    """A console for the report tables (no syntax highlighting of numbers and paths)."""
    from rich.console import Console

    return Console(highlight=False)
