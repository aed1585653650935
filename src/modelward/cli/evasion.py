"""``modelward attack evasion`` and ``modelward defend adversarial-training``: single capabilities, usable alone."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from modelward.cli.progress import progress_bar
from modelward.core.errors import InputError
from modelward.core.files import write_text_atomic

ATTACKS = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "square", "hopskipjump")


def _numbers(_ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    try:
        values = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if not values or any(v < 0 for v in values):
        raise click.BadParameter(f"give at least one {param.name} value, none negative")
    return values


def _load(model: Path | None, recipe: str | None) -> Any:
    from modelward.checks.model_recipes import resolve_model

    if (model is None) == (recipe is None):
        raise InputError("give exactly one of --model (a saved model) or --recipe (a built-in recipe)")
    spec = {"path": str(model)} if model is not None else {"recipe": recipe}
    return resolve_model(spec, Path.cwd())


def register(cli: click.Group) -> None:
    """Add the ``attack`` and ``defend`` groups to the main command."""

    @cli.group()
    def attack() -> None:
        """Attack a model to measure how exposed it is."""

    @attack.command("evasion")
    @click.option("--model", type=click.Path(path_type=Path), help="Saved model (safetensors + JSON, without suffix).")
    @click.option("--recipe", help="Built-in model recipe, trained once and cached (e.g. digits-cnn).")
    @click.option("--attack", "attack_name", type=click.Choice(ATTACKS), default="pgd", show_default=True)
    @click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True)
    @click.option("--epsilons", callback=_numbers, default="0.05,0.1,0.2", show_default=True)
    @click.option("--steps", type=click.IntRange(1, 10_000), default=40, show_default=True, help="Gradient attacks.")
    @click.option(
        "--budget", type=click.IntRange(1), default=1000, show_default=True, help="Queries per input (black-box)."
    )
    @click.option("--samples", type=click.IntRange(1), default=200, show_default=True, help="Test inputs attacked.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    @click.option("--out", "-o", type=click.Path(path_type=Path), help="Folder for results.json and plots.")
    def attack_evasion(
        model: Path | None,
        recipe: str | None,
        attack_name: str,
        norm: str,
        epsilons: list[float],
        steps: int,
        budget: int,
        samples: int,
        seed: int,
        fmt: str,
        out: Path | None,
    ) -> None:
        """Run one evasion attack over several epsilons on held-out data, and report robust accuracy."""
        from modelward.attacks.evasion.catalog import make_attack
        from modelward.attacks.evasion.plots import plot_curve, plot_examples

        resolved = _load(model, recipe)
        split = resolved.data
        classifier = resolved.classifier()
        x, y = split.x_test[:samples], split.y_test[:samples]
        chosen = make_attack(attack_name, classifier, norm=norm, steps=steps, budget=budget, seed=seed)
        with progress_bar(f"{attack_name} on {len(y)} inputs × {len(epsilons)} ε") as progress:
            sweep = chosen.sweep(x, y, epsilons, progress=progress)
        per_epsilon = sweep.per_epsilon
        report = {
            "attack": attack_name,
            "norm": norm,
            "model": resolved.source,
            "samples": len(y),
            "results": [
                {
                    "epsilon": r.epsilon,
                    "robust_accuracy": r.robust_accuracy,
                    "success_rate": r.success_rate,
                    "mean_norm": float(r.norms[r.success].mean()) if bool(r.success.any()) else 0.0,
                    "queries": int(r.queries.sum()),
                }
                for r in per_epsilon
            ],
        }
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / "results.json", json.dumps(report, indent=2) + "\n")
            plot_curve(
                [(r["epsilon"], r["robust_accuracy"]) for r in report["results"]], norm, out / "robustness-curve.png"
            )
            last = per_epsilon[-1]
            broken = last.success.nonzero().flatten()[:8]
            plot_examples(x[broken], last.adversarial[broken], out / "adversarial-examples.png")
        if fmt == "json":
            click.echo(json.dumps(report, indent=2))
        else:
            _print_results(report)
        if out is not None:
            click.echo(f"wrote {out / 'results.json'} and plots", err=True)

    @cli.group()
    def defend() -> None:
        """Harden a model and measure what the defense buys."""

    @defend.command("adversarial-training")
    @click.option("--method", type=click.Choice(["pgd", "trades"]), default="pgd", show_default=True)
    @click.option("--epsilon", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True)
    @click.option("--epochs", type=click.IntRange(1, 1000), default=30, show_default=True)
    @click.option("--steps", type=click.IntRange(1, 100), default=7, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    @click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Where to save (no suffix).")
    def defend_adversarial_training(
        method: str, epsilon: float, epochs: int, steps: int, seed: int, fmt: str, out: Path
    ) -> None:
        """Train the digits CNN on adversarial examples (PGD, Madry) or with TRADES; save it as safetensors."""
        from modelward.classifiers.models import SmallCNN
        from modelward.classifiers.store import save_model
        from modelward.classifiers.training import accuracy
        from modelward.datasets.builtin import load_digits_images
        from modelward.defenses.adversarial_training import adversarial_training, trades_training

        split = load_digits_images(seed=0)
        train = adversarial_training if method == "pgd" else trades_training
        with progress_bar(f"{method} adversarial training, {epochs} epochs") as progress:
            module, history = train(
                SmallCNN(),
                split.x_train,
                split.y_train,
                epsilon=epsilon,
                steps=steps,
                epochs=epochs,
                seed=seed,
                eval_data=(split.x_test, split.y_test),
                progress=progress,
            )
        clean = accuracy(module, split.x_test, split.y_test)
        save_model(
            module,
            out,
            {"training": f"{method}-adversarial", "epsilon": epsilon, "epochs": epochs, "test_accuracy": clean},
        )
        report = {
            "method": method,
            "epsilon": epsilon,
            "epochs": epochs,
            "steps": steps,
            "seed": seed,
            "seconds": history.seconds,
            "clean_test_accuracy": clean,
            "saved": str(out.with_suffix(".safetensors")),
            "history": [
                {
                    "epoch": i + 1,
                    "epsilon": e,
                    "loss": loss,
                    "perturbed_accuracy": None if math.isnan(p) else p,
                    "clean_accuracy": c,
                }
                for i, (e, loss, p, c) in enumerate(
                    zip(
                        history.epsilons,
                        history.epoch_losses,
                        history.perturbed_accuracy,
                        history.clean_accuracy,
                        strict=True,
                    )
                )
            ],
        }
        if fmt == "json":
            click.echo(json.dumps(report, indent=2, allow_nan=False))
            return
        _print_training(report)

    @defend.command("certify")
    @click.option("--model", type=click.Path(path_type=Path), help="Saved model (safetensors + JSON, without suffix).")
    @click.option("--recipe", help="Built-in model recipe (digits-cnn-gaussian is trained for smoothing).")
    @click.option("--sigma", type=click.FloatRange(0, 10, min_open=True), default=0.25, show_default=True)
    @click.option("--n0", type=click.IntRange(1), default=100, show_default=True, help="Samples to pick the class.")
    @click.option("--n", "n", type=click.IntRange(1), default=1000, show_default=True, help="Samples to bound it.")
    @click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True), default=0.001, show_default=True)
    @click.option("--samples", type=click.IntRange(1), default=100, show_default=True, help="Test inputs certified.")
    @click.option("--radii", callback=_numbers, default="0,0.25,0.5,0.75", show_default=True)
    @click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    def defend_certify(
        model: Path | None,
        recipe: str | None,
        sigma: float,
        n0: int,
        n: int,
        alpha: float,
        samples: int,
        radii: list[float],
        fmt: str,
    ) -> None:
        """Certify held-out inputs with randomized smoothing (Cohen et al.): certified accuracy by L2 radius."""
        from modelward.defenses.smoothing import SmoothedClassifier

        resolved = _load(model, recipe)
        split = resolved.data
        base = resolved.classifier()
        x, y = split.x_test[:samples], split.y_test[:samples]
        smoothed = SmoothedClassifier(base, sigma, n=n, alpha=alpha)
        with progress_bar(f"certifying {len(y)} inputs (n0={n0}, n={n})") as progress:
            result = smoothed.certify(x, n0=n0, n=n, alpha=alpha, progress=progress)
        report = {
            "model": resolved.source,
            "sigma": sigma,
            "n0": n0,
            "n": n,
            "alpha": alpha,
            "samples": len(y),
            "abstain_rate": result.abstain_rate,
            "seconds_per_input": result.seconds_per_input,
            "certified_accuracy": [{"radius": r, "accuracy": result.certified_accuracy(y, r)} for r in sorted(radii)],
        }
        if fmt == "json":
            click.echo(json.dumps(report, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Randomized smoothing, σ={sigma:g}, n={n}, α={alpha:g}, {len(y)} inputs")
        table.add_column("L2 radius", justify="right")
        table.add_column("certified accuracy", justify="right")
        for row in report["certified_accuracy"]:
            table.add_row(f"{row['radius']:g}", f"{row['accuracy']:.3f}")
        console = Console(highlight=False)
        console.print(table)
        console.print(f"abstained on {result.abstain_rate:.1%}; {result.seconds_per_input:.4f} s per certified input")


def _print_training(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['method']} adversarial training at ε={report['epsilon']:g}")
    for column in ("epoch", "ε", "loss", "accuracy on perturbed inputs", "clean test accuracy"):
        table.add_column(column, justify="right")
    for row in report["history"]:
        perturbed = row["perturbed_accuracy"]
        table.add_row(
            str(row["epoch"]),
            f"{row['epsilon']:g}",
            f"{row['loss']:.4f}",
            "—" if perturbed is None else f"{perturbed:.3f}",
            f"{row['clean_accuracy']:.3f}",
        )
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"saved {report['saved']} (clean test accuracy {report['clean_test_accuracy']:.3f}, {report['seconds']:.1f} s)"
    )


def _print_results(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['attack']} ({report['norm']}) on {report['samples']} inputs")
    for column in ("epsilon", "robust accuracy", "success rate", "mean norm (successes)", "queries"):
        table.add_column(column, justify="right")
    for row in report["results"]:
        table.add_row(
            f"{row['epsilon']:g}",
            f"{row['robust_accuracy']:.3f}",
            f"{row['success_rate']:.3f}",
            f"{row['mean_norm']:.4f}",
            str(row["queries"]),
        )
    Console(highlight=False).print(table)
