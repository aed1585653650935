"""``modelward defend dp-train`` and the privacy attacks: ``attack membership|extraction|inversion|attribute``.

Every attack command works on the bundled data, so its ground truth is known: digit models (a
saved SmallCNN or a recipe) were trained on ``x_train`` of ``load_digits_images(seed=0)``, which
makes ``x_train`` the members and ``x_test`` the non-members; the attribute attack trains (or
loads) an MLP on the breast-cancer table's training split. Commands only wire capabilities
together and report: the attacks live in ``attacks/inference``, ``extraction`` and ``inversion``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from modelward.cli.progress import progress_bar
from modelward.core.errors import InputError
from modelward.core.files import write_text_atomic
from modelward.core.progress import Progress, report

DATASETS = ("digits", "breast-cancer")
MEMBERSHIP_ATTACKS = ("loss", "label-only", "shadow", "lira", "rmia")
REFERENCE_ATTACKS = frozenset({"shadow", "lira", "rmia"})
EXTRACTION_STRATEGIES = ("random", "natural", "knockoff", "jacobian")
DEFAULT_CACHE = Path(".modelward-cache") / "references"
#: Width of the attacker's surrogate SmallCNN (the attacker does not know the target's).
SURROGATE_WIDTH = 16
#: Attacker images the Jacobian strategy starts from (Papernot et al. start from about 100).
JACOBIAN_SEEDS = 100
#: The seed of the fixed split of the digits' test images into attacker data and evaluation data.
HARDENINGS = "round:DECIMALS, noise:SIGMA, reverse-sigmoid[:BETA[,GAMMA]], top-k:K, label-only"


def _split(data: str) -> Any:
    from modelward.datasets.builtin import load_breast_cancer_table, load_digits_images

    return load_digits_images(seed=0) if data == "digits" else load_breast_cancer_table(seed=0)


def _fresh_model(split: Any) -> Any:
    from modelward.classifiers.models import MLP, SmallCNN

    if len(split.input_shape) == 3:
        return SmallCNN(num_classes=split.num_classes)
    return MLP(split.input_shape[0], num_classes=split.num_classes)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# option parsing
# --------------------------------------------------------------------------------------------
def _rates(_ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    """Comma-separated false-positive rates in (0, 1), sorted, without repeats."""
    try:
        values = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if not values or any(not 0.0 < v < 1.0 for v in values):
        raise click.BadParameter(f"give at least one {param.name} value, each strictly between 0 and 1")
    return sorted(set(values))


def _classes(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[int] | None:
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


def _hardening(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[dict[str, Any]]:
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
def _load_digits_model(model: Path | None, recipe: str | None) -> Any:
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


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------
_model_option = click.option(
    "--model", type=click.Path(path_type=Path), help="Saved model (safetensors + JSON, without suffix)."
)
_recipe_option = click.option(
    "--recipe", help="Built-in model recipe, trained once and cached (digits-cnn, digits-cnn-dp, …)."
)
_seed_option = click.option("--seed", type=int, default=0, show_default=True)
_format_option = click.option(
    "--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
_out_option = click.option("--out", "-o", type=click.Path(path_type=Path), help="Folder for results.json and plots.")


def _emit(
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


def register(cli: click.Group) -> None:
    """Add the privacy commands to the ``attack`` and ``defend`` groups (created by the evasion commands)."""
    attack = cli.commands.get("attack")
    defend = cli.commands.get("defend")
    if not isinstance(attack, click.Group) or not isinstance(defend, click.Group):
        raise RuntimeError("register the evasion commands first: they create the attack and defend groups")

    @defend.command("dp-train")
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
        split = _split(data)
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
            "epsilon": _finite(result.epsilon),
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

    @attack.command(
        "membership", short_help="Membership inference (LOSS, label-only, shadow, LiRA, RMIA): AUC and TPR at low FPR."
    )
    @_model_option
    @_recipe_option
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
        callback=_rates,
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
    @click.option(
        "--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Processes (or Ray CPUs)."
    )
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
    @_seed_option
    @_format_option
    @_out_option
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
        resolved = _load_digits_model(model, recipe)
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
            "top_leaking_scores": [_finite(float(result.scores[i])) for i in result.top_leaking],
            "queries": result.queries,
            "seconds": result.seconds,
            "references": reference_info,
            "details": result.details,
        }
        title = f"{result.attack} on {model.name if model is not None else recipe}"
        _emit(result_report, fmt, out, _print_membership, {"roc.png": lambda p: plot_roc([result], p, title=title)})

    @attack.command(
        "extraction",
        short_help="Steal a model from its answers: surrogate fidelity against queries.",
    )
    @_model_option
    @_recipe_option
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
        callback=_hardening,
        metavar="STEP",
        help=f"Serve the target through output hardening (repeatable, applied in order): {HARDENINGS}.",
    )
    @click.option(
        "--epochs", type=click.IntRange(1, 1000), default=30, show_default=True, help="Surrogate training epochs."
    )
    @_seed_option
    @_format_option
    @_out_option
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

        resolved = _load_digits_model(model, recipe)
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
        _emit(result_report, fmt, out, _print_extraction, {"extraction-curve.png": result.plot})

    @attack.command(
        "inversion", short_help="Model inversion: reconstruct class images and compare them with the real data."
    )
    @_model_option
    @_recipe_option
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
        "--classes", callback=_classes, metavar="LIST", help="Classes to reconstruct, e.g. 0,3,8 (default: all)."
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
    @_seed_option
    @_format_option
    @_out_option
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

        resolved = _load_digits_model(model, recipe)
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
        _emit(result_report, fmt, out, _print_inversion, {"inversion.png": result.plot})

    @attack.command(
        "attribute", short_help="Attribute inference on the breast-cancer table, beside a no-model baseline."
    )
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
    @click.option(
        "--epochs", type=click.IntRange(1, 10_000), default=100, show_default=True, help="When training the MLP."
    )
    @_seed_option
    @_format_option
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


# --------------------------------------------------------------------------------------------
# membership helpers
# --------------------------------------------------------------------------------------------
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
        trained = _train_in_chunks(engine, specs, population, _chunk_size(engine_name, workers, progress), progress)
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


def _chunk_size(engine_name: str, workers: int, progress: Progress | None) -> int | None:
    """Specs per training call: one call without a bar; one model (or one per Ray CPU) at a time with one.

    A local process pool starts afresh on every call, so it gets all specs at once even with a bar.
    """
    if progress is None or (engine_name == "local" and workers > 1):
        return None
    return 1 if engine_name == "local" else workers


def _train_in_chunks(
    engine: Any, specs: Sequence[Any], population: Any, chunk: int | None, progress: Progress | None
) -> list[Any]:
    size = len(specs) if chunk is None else chunk
    trained: list[Any] = []
    report(progress, 0, len(specs))
    for start in range(0, len(specs), size):
        trained.extend(engine.train(specs[start : start + size], population.x, population.y))
        report(progress, len(trained), len(specs))
    return trained


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


# --------------------------------------------------------------------------------------------
# attribute inference
# --------------------------------------------------------------------------------------------
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
    split = _split("breast-cancer")
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
    _emit(result_report, fmt, out, _print_attribute)


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


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
    _console().print(table)


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
    console = _console()
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
    console = _console()
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
    console = _console()
    console.print(table)
    console.print(
        f"the model adds {result['advantage']:+.3f} accuracy and {result['auc_advantage']:+.3f} AUC; "
        f"{result['queries']} queries; model: {result['model']}"
    )
