"""``modelward defend dp-train`` and the privacy attacks: ``attack membership|extraction|inversion|attribute``.

Every attack command works on the bundled data, so its ground truth is known: digit models (a
saved SmallCNN or a recipe) were trained on ``x_train`` of ``load_digits_images(seed=0)``, which
makes ``x_train`` the members and ``x_test`` the non-members; the attribute attack trains (or
loads) an MLP on the breast-cancer table's training split. Commands only wire capabilities
together and report: the attacks live in ``attacks/inference``, ``extraction`` and ``inversion``.
This module registers them all and holds ``defend dp-train``; each attack family has its own
module (``membership``, ``extraction``, ``inversion``) and they share ``privacy_options``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from modelward.cli.extraction import attack_extraction
from modelward.cli.inversion import attack_attribute, attack_inversion
from modelward.cli.membership import attack_membership
from modelward.cli.privacy_options import DATASETS, finite, load_split
from modelward.cli.progress import progress_bar
from modelward.core.errors import InputError


def _fresh_model(split: Any) -> Any:
    """An untrained model for the split: a SmallCNN for images, an MLP for tables."""
    from modelward.classifiers.models import MLP, SmallCNN

    if len(split.input_shape) == 3:
        return SmallCNN(num_classes=split.num_classes)
    return MLP(split.input_shape[0], num_classes=split.num_classes)


def register(cli: click.Group) -> None:
    """Add the privacy commands to the ``attack`` and ``defend`` groups (created by the evasion commands)."""
    attack = cli.commands.get("attack")
    defend = cli.commands.get("defend")
    if not isinstance(attack, click.Group) or not isinstance(defend, click.Group):
        raise RuntimeError("register the evasion commands first: they create the attack and defend groups")
    defend.add_command(defend_dp_train)
    for command in (attack_membership, attack_extraction, attack_inversion, attack_attribute):
        attack.add_command(command)


@click.command("dp-train")
@click.option("--data", type=click.Choice(DATASETS), default="digits", show_default=True)
@click.option("--epsilon", type=click.FloatRange(0, min_open=True), help="Target ε (noise calibrated to it).")
@click.option("--noise-multiplier", type=click.FloatRange(0), help="Noise multiplier instead of a target ε.")
@click.option("--delta", type=click.FloatRange(0, 1, min_open=True, max_open=True), help="δ (default 1/(10·n)).")
@click.option("--clip", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 1000), default=15, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True, help="Expected batch.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-2, show_default=True)
@click.option("--accountant", type=click.Choice(["prv", "rdp", "gdp"]), default="prv", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Where to save (no suffix).")
def defend_dp_train(
    data: str,
    epsilon: float | None,
    noise_multiplier: float | None,
    delta: float | None,
    clip: float,
    epochs: int,
    batch_size: int,
    lr: float,
    accountant: str,
    seed: int,
    fmt: str,
    out: Path,
) -> None:
    """Train a model with DP-SGD (Opacus) and save it with the privacy it spent (ε, δ) in its metadata."""
    from modelward.classifiers.store import save_model
    from modelward.classifiers.training import accuracy
    from modelward.defenses.dp import train_dp

    if (epsilon is None) == (noise_multiplier is None):
        raise InputError("give exactly one of --epsilon (a target) or --noise-multiplier")
    split = load_split(data)
    import torch

    torch.manual_seed(seed)
    with progress_bar(f"DP-SGD on {data}, {epochs} epochs"):
        result = train_dp(
            _fresh_model(split),
            split.x_train,
            split.y_train,
            target_epsilon=epsilon,
            noise_multiplier=noise_multiplier,
            delta=delta,
            max_grad_norm=clip,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            accountant=accountant,  # type: ignore[arg-type]
            seed=seed,
        )
    test_accuracy = accuracy(result.module, split.x_test, split.y_test)
    record = result.record(lr=lr)
    save_model(
        result.module,
        out,
        {"training": "dp-sgd", "data": data, "epochs": epochs, "test_accuracy": test_accuracy, "dp": record},
    )
    report = {
        **record,
        "epsilon": finite(result.epsilon),
        "data": data,
        "epochs": epochs,
        "batch_size": batch_size,
        "test_accuracy": test_accuracy,
        "seconds": result.seconds,
        "fixes": list(result.fixes),
        "saved": str(out.with_suffix(".safetensors")),
    }
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"DP-SGD on {data} ({result.accountant} accountant)", show_header=False)
    eps_text = f"{result.epsilon:.4g}" if math.isfinite(result.epsilon) else "∞ (no noise: not private)"
    rows = [
        ("ε spent", eps_text),
        ("δ", f"{result.delta:.3g}"),
        ("noise multiplier", f"{result.noise_multiplier:.4g}"),
        ("sample rate", f"{result.sample_rate:.4g}"),
        ("steps", str(result.steps)),
        ("clipping norm", f"{result.max_grad_norm:g}"),
        ("test accuracy", f"{test_accuracy:.3f}"),
        ("seconds", f"{result.seconds:.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console(highlight=False)
    console.print(table)
    for fix in result.fixes:
        console.print(f"made compatible with Opacus: {fix}")
    console.print(f"saved {report['saved']}")
