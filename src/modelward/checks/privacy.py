"""Privacy checks: measured leakage of a model (membership inference, extraction) and its DP guarantee.

``privacy.dp_epsilon`` reads the differential-privacy record a model was saved with (written by
``defend dp-train`` or the ``digits-cnn-dp`` recipe), recomputes ε from the recorded noise,
sampling rate and steps with Opacus' accountant, and passes when that ε is at most the threshold
and is a guarantee (Poisson sampling, finite ε). The membership and extraction checks attack the
model the way the catalog's threats describe.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from modelward.checks.base import Check, CheckContext, Evidence, artifact_refs, artifacts_folder, number_param
from modelward.checks.model_recipes import CACHE_DIR, resolve_model
from modelward.checks.registry import register
from modelward.core.errors import InputError

MEMBERSHIP_THREATS = ("ML-MEMBERSHIP-INFERENCE", "ML-ATTRIBUTE-INFERENCE", "ML-MEMORISATION-PII")
DP_THREATS = (*MEMBERSHIP_THREATS, "ML-MODEL-INVERSION")


def dp_record(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The DP training record of a saved model's metadata, or None when it was not trained with DP."""
    record = metadata.get("dp")
    return record if isinstance(record, dict) else None


@register
class DPEpsilon(Check):
    """The model was trained with differential privacy at an ε no larger than the threshold."""

    name = "privacy.dp_epsilon"
    title = "The model's differential-privacy ε (Opacus accountant) is at most the threshold"
    verifies = DP_THREATS
    default_threshold = 8.0

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        from modelward.defenses.dp import epsilon_for

        params = context.params
        resolved = resolve_model(params.get("model"), Path(context.base_dir), str(params.get("data", "digits")))
        threshold = self.threshold if self.threshold is not None else 8.0
        record = dp_record(resolved.metadata)
        failed = list(targets)
        if record is None:
            return Evidence(
                check=self.name,
                passed=False,
                message=f"no differential-privacy training recorded for {resolved.source}; required ε ≤ {threshold:g}",
                threshold=threshold,
                details=[f"model: {resolved.source}", "train it with `modelward defend dp-train` to record ε"],
                failed_targets=failed,
            )
        try:
            noise = float(record["noise_multiplier"])
            rate = float(record["sample_rate"])
            steps = int(record["steps"])
            delta = float(record["delta"])
            accountant = str(record.get("accountant", "prv"))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{resolved.source}: the DP record is incomplete or malformed", field="model") from None
        epsilon = epsilon_for(noise, rate, steps, delta, accountant)  # type: ignore[arg-type]
        poisson = bool(record.get("poisson_sampling", True))
        guarantee = poisson and math.isfinite(epsilon)
        passed = guarantee and epsilon <= threshold + 1e-9
        details = [
            f"model: {resolved.source}",
            f"noise multiplier {noise:.4g}, sample rate {rate:.4g}, {steps} steps, δ = {delta:.3g}, "
            f"accountant {accountant}, clipping norm {record.get('max_grad_norm', '?')}",
        ]
        claimed = record.get("epsilon")
        if isinstance(claimed, (int, float)) and not math.isclose(epsilon, float(claimed), rel_tol=1e-6, abs_tol=1e-9):
            details.append(f"the saved record claims ε = {float(claimed):.4g}; the accountant says {epsilon:.4g}")
        if not poisson:
            details.append("trained without Poisson sampling: the accountant's ε is not a guarantee")
        metrics = {"epsilon": epsilon, "delta": delta, "noise_multiplier": noise, "steps": float(steps)}
        audit = params.get("audit")
        if audit is not None:
            lower = _audit_training(resolved, record, audit, noise, rate)
            metrics["audited_epsilon_lower_bound"] = lower.epsilon_lower_bound
            details.append(
                f"one-run audit (Steinke et al. 2023) of the same training with {lower.canaries} mislabelled "
                f"canaries: {lower.correct} of {lower.guesses} membership guesses right → ε ≥ "
                f"{lower.epsilon_lower_bound:.3g} at {lower.confidence:.0%} confidence, beside the accountant's "
                f"ε ≤ {lower.epsilon_upper_bound_from_accountant or epsilon:.3g} for that run"
            )
        return Evidence(
            check=self.name,
            passed=passed,
            message=f"ε = {epsilon:.3g} at δ = {delta:.2g} ({accountant}); required ε ≤ {threshold:g}",
            metrics=metrics,
            threshold=threshold,
            details=details,
            failed_targets=[] if passed else failed,
        )


def _audit_training(resolved: Any, record: dict[str, Any], audit: Any, noise: float, rate: float) -> Any:
    """Re-run the model's DP training once with canaries and bound ε from below (one-run audit)."""
    import torch

    from modelward.defenses.dp import train_dp
    from modelward.privacy.dp_audit import audit_dp, mislabeled_canaries

    if not isinstance(audit, dict):
        raise InputError("audit must be a mapping like {canaries: 200, guesses: 40}", field="params.audit")
    split = resolved.data
    canaries = int(number_param(audit, "canaries", 200, low=2, high=split.x_test.shape[0]))
    guesses = int(number_param(audit, "guesses", canaries // 5, low=1, high=canaries))
    epochs = int(record.get("epochs", resolved.metadata.get("epochs", 15)))
    batch_size = max(1, round(split.x_train.shape[0] * rate))
    lr = float(record.get("lr", 1e-2))
    module = resolved.module
    architecture, config = type(module), dict(getattr(module, "config", {}))
    canary_x, canary_y = mislabeled_canaries(split.x_test, split.y_test, canaries, split.num_classes, seed=0)

    def train(x: torch.Tensor, y: torch.Tensor) -> Any:
        torch.manual_seed(0)
        return train_dp(
            architecture(**config), x, y, noise_multiplier=noise, epochs=epochs, batch_size=batch_size, lr=lr, seed=0
        )

    return audit_dp(
        train, split.x_train, split.y_train, canary_x, canary_y, k_plus=guesses // 2, k_minus=guesses - guesses // 2
    )


MEMBERSHIP_ATTACKS = ("lira", "rmia", "loss")


def _flag(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}", field=f"params.{name}")
    return value


def _factory_for(split: Any) -> tuple[str, dict[str, Any]]:
    """The reference-model factory that mirrors the recipes' architecture for this data."""
    if len(split.input_shape) == 3:
        return "small-cnn", {"num_classes": split.num_classes}
    return "mlp", {"in_features": split.input_shape[0], "num_classes": split.num_classes}


@register
class MembershipInference(Check):
    """Membership inference (LiRA, RMIA or LOSS) against the model: TPR at a low FPR at most the threshold.

    The population is the model's data, training records first (the members) and held-out records
    after them (the non-members). Reference models train on random halves of that population, the
    way the attacker of Carlini et al. would on data from the same distribution, and are cached.
    """

    name = "privacy.membership_inference"
    title = "Membership inference finds members no better than the threshold TPR at a low FPR"
    verifies = MEMBERSHIP_THREATS
    default_threshold = 0.02

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        import torch

        from modelward.attacks.inference import (
            RMIA,
            LiRA,
            LocalEngine,
            LossAttack,
            plot_roc,
            reference_specs,
            train_reference_models,
        )
        from modelward.datasets.synthetic import population_from_split

        params = context.params
        attack_name = str(params.get("attack", "lira"))
        if attack_name not in MEMBERSHIP_ATTACKS:
            raise InputError(
                f"attack must be one of {', '.join(MEMBERSHIP_ATTACKS)}, got {attack_name!r}", field="params.attack"
            )
        fpr = number_param(params, "fpr", 0.01, high=0.5)
        if fpr <= 0:
            raise InputError("fpr must be above 0", field="params.fpr")
        references_count = int(number_param(params, "references", 8, low=1, high=256))
        epochs = int(number_param(params, "epochs", 15, low=1, high=1000))
        workers = int(number_param(params, "workers", 1, low=1, high=64))
        online = _flag(params, "online", False)
        max_auc = params.get("max_auc")
        if max_auc is not None:
            max_auc = number_param(params, "max_auc", 1.0, low=0.0, high=1.0)
        base_dir = Path(context.base_dir)
        resolved = resolve_model(params.get("model"), base_dir, str(params.get("data", "digits")))
        split = resolved.data
        population = population_from_split(split)
        members = torch.zeros(len(population), dtype=torch.bool)
        members[: split.x_train.shape[0]] = True
        non_members = int((~members).sum())
        if non_members * fpr < 1:
            raise InputError(
                f"an FPR of {fpr:g} cannot be resolved with {non_members} non-members "
                f"(needs at least {int(1 / fpr + 0.999999)}); raise fpr",
                field="params.fpr",
            )
        classifier = resolved.classifier()
        details = [f"model: {resolved.source}"]
        attack: Any
        if attack_name == "loss":
            attack = LossAttack(classifier)
        else:
            factory, factory_params = _factory_for(split)
            specs = reference_specs(len(population), references_count, factory, factory_params, epochs=epochs, seed=0)
            cache = base_dir / CACHE_DIR / "references"
            references = train_reference_models(population, specs, engine=LocalEngine(workers, cache_dir=cache))
            attack = (
                LiRA(classifier, references, online=online)
                if attack_name == "lira"
                else RMIA(classifier, references, online=online)
            )
            details.append(
                f"{references_count} reference models ({factory}, {epochs} epochs) on random halves of "
                f"{len(population)} records; cached in {CACHE_DIR}/references"
            )
        indices = torch.arange(len(population))
        result = attack.evaluate(population.x, population.y, members, indices=indices, fprs=(fpr,))
        tpr = result.tpr(fpr)
        threshold = self.threshold if self.threshold is not None else 0.02
        if tpr is None:  # pragma: no cover - ruled out by the resolvability check above
            raise InputError(f"TPR at FPR {fpr:g} is unresolvable here")
        passed = tpr <= threshold and (max_auc is None or result.auc <= max_auc)
        folder = artifacts_folder(context)
        plot_roc([result], folder / "roc.png", title=f"{result.attack} on {resolved.source}")
        details.append(
            f"{result.n_members} members, {result.n_nonmembers} non-members; {result.queries} queries to the model; "
            f"a random guess has TPR = FPR = {fpr:g}"
        )
        if result.top_leaking:
            details.append(f"records exposed most confidently: {', '.join(map(str, result.top_leaking[:5]))}")
        auc_rule = f", AUC ≤ {max_auc:g}" if max_auc is not None else ""
        return Evidence(
            check=self.name,
            passed=passed,
            message=(
                f"{result.attack}: TPR {tpr:.2%} at {fpr:.1%} FPR ({tpr / fpr:.1f}× a random guess), AUC "
                f"{result.auc:.3f}; required TPR ≤ {threshold:.2%}{auc_rule}"
            ),
            metrics={"tpr_at_fpr": tpr, "fpr": fpr, "auc": result.auc, "balanced_accuracy": result.balanced_accuracy},
            threshold=threshold,
            details=details,
            artifacts=artifact_refs(context, ["roc.png"]),
            failed_targets=[] if passed else list(targets),
        )


@register
class ExtractionFidelity(Check):
    """A copy stolen through the model's outputs at a query budget agrees with it at most the threshold share."""

    name = "privacy.extraction_fidelity"
    title = "A model copied through its API at the query budget agrees with it at most the threshold"
    verifies = ("ML-EXTRACTION", "ML-CONFIDENCE-DISCLOSURE")
    default_threshold = 0.8

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        from modelward.attacks.extraction import STRATEGIES, ModelExtraction
        from modelward.attacks.extraction.attacker_data import attacker_split, pixel_shifts
        from modelward.classifiers.base import Capability
        from modelward.defenses.output_hardening import HardenedClassifier, parse_steps

        params = context.params
        strategy = str(params.get("strategy", "natural"))
        if strategy not in STRATEGIES:
            raise InputError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}", field="params.strategy"
            )
        budget = int(number_param(params, "budget", 1000, low=1))
        rounds = int(number_param(params, "rounds", 4, low=1, high=100))
        output = str(params.get("output", "scores"))
        if output not in ("scores", "labels"):
            raise InputError(f"output must be scores or labels, got {output!r}", field="params.output")
        hardening = params.get("hardening", [])
        if not isinstance(hardening, list) or not all(isinstance(step, dict) for step in hardening):
            raise InputError("hardening must be a list of steps like {kind: rounding, decimals: 1}", field="params")
        resolved = resolve_model(params.get("model"), Path(context.base_dir), str(params.get("data", "digits")))
        split = resolved.data
        served: Any = resolved.classifier()
        if hardening:
            served = HardenedClassifier(served, parse_steps(hardening))
        if output == "labels" or Capability.SCORES not in served.capabilities:
            output = "labels"
        attacker_x, test_x, test_y = attacker_split(split)
        pool = pixel_shifts(attacker_x)
        import torch

        torch.manual_seed(0)
        factory, factory_params = _factory_for(split)
        from modelward.attacks.inference.reference_models import FACTORIES

        build = FACTORIES[factory]
        extraction = ModelExtraction(
            strategy,
            lambda: build(**factory_params),
            budget,
            rounds,
            seed=0,
            output=output,  # type: ignore[arg-type]
        )
        with torch.no_grad():
            truth = resolved.module(test_x).argmax(dim=1)
        result = extraction.extract(
            served, None if strategy == "random" else pool, test_x, test_y, target_test_labels=truth
        )
        threshold = self.threshold if self.threshold is not None else 0.8
        passed = result.fidelity <= threshold
        folder = artifacts_folder(context)
        result.plot(folder / "extraction-curve.png")
        served_as = ", ".join(str(step.get("kind")) for step in hardening) if hardening else "unhardened"
        details = [
            f"model: {resolved.source}; served {served_as}, the attacker learns from {output}",
            f"{strategy} queries from {pool.shape[0]} attacker-owned images (half the held-out digits and their "
            f"one-pixel shifts); fidelity on the {test_x.shape[0]} other held-out inputs",
            "curve: " + ", ".join(f"{p.queries} queries → fidelity {p.fidelity:.3f}" for p in result.curve),
        ]
        if result.stop_reason:
            details.append(f"stopped early: {result.stop_reason}")
        return Evidence(
            check=self.name,
            passed=passed,
            message=(
                f"a {strategy} copy made with {result.queries} queries agrees with the model on {result.fidelity:.1%} "
                f"of held-out inputs (copy accuracy {result.accuracy:.3f}); required ≤ {threshold:.0%}"
            ),
            metrics={"fidelity": result.fidelity, "surrogate_accuracy": result.accuracy, "queries": result.queries},
            threshold=threshold,
            details=details,
            artifacts=artifact_refs(context, ["extraction-curve.png"]),
            failed_targets=[] if passed else list(targets),
        )


@register
class PrivacyUtility(Check):
    """Privacy against utility, per defense: test accuracy beside LiRA's TPR at 0.1% and 1% FPR.

    Measured on a generated tabular population large enough to resolve 0.1% FPR (the digit images
    have too few non-members): an overfit MLP undefended, served with rounded scores, served label
    only (attacked with the label-only attack), regularised (weight decay, fewer epochs), and
    trained with DP-SGD at each ε of ``epsilons``. Passes when some defense keeps TPR at ``fpr`` at
    most the threshold while losing at most ``max_accuracy_drop`` of the undefended accuracy.
    """

    name = "privacy.privacy_utility"
    title = "Some defense keeps membership TPR at a low FPR under the threshold at an acceptable utility cost"
    verifies = ("ML-MEMBERSHIP-INFERENCE",)
    default_threshold = 0.01

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        import torch

        from modelward.attacks.inference import (
            LabelOnlyAttack,
            LiRA,
            LocalEngine,
            ModelSpec,
            reference_specs,
            train_reference_models,
        )
        from modelward.checks.base import EvidenceTable
        from modelward.classifiers.models import MLP
        from modelward.classifiers.torch_adapter import TorchClassifier
        from modelward.classifiers.training import accuracy
        from modelward.datasets.synthetic import make_tabular_population
        from modelward.defenses.dp import train_dp
        from modelward.defenses.output_hardening import HardenedClassifier, LabelOnly, Rounding

        params = context.params
        fpr = number_param(params, "fpr", 0.001, high=0.5)
        size = int(number_param(params, "population", 5000, low=200, high=200_000))
        if (size - size // 2) * fpr < 1:
            raise InputError(f"a population of {size} cannot resolve an FPR of {fpr:g}", field="params.population")
        references_count = int(number_param(params, "references", 8, low=1, high=256))
        epochs = int(number_param(params, "epochs", 60, low=1, high=1000))
        workers = int(number_param(params, "workers", 1, low=1, high=64))
        max_drop = number_param(params, "max_accuracy_drop", 0.05, high=1.0)
        epsilons = params.get("epsilons", [1, 3, 8])
        if not isinstance(epsilons, list) or not all(
            isinstance(e, (int, float)) and not isinstance(e, bool) and e > 0 for e in epsilons
        ):
            raise InputError("epsilons must be a list of positive numbers", field="params.epsilons")
        population = make_tabular_population(size, seed=0)
        members = population.random_half(seed=1)
        split = population.split(members)
        model_params: dict[str, Any] = {"in_features": population.x.shape[1], "num_classes": population.num_classes}
        model_params["hidden"] = 256
        engine = LocalEngine(workers, cache_dir=Path(context.base_dir) / CACHE_DIR / "references")
        trained_on = tuple(int(i) for i in members.nonzero().squeeze(1).tolist())
        variants_specs = {
            "undefended": ModelSpec("mlp", model_params, trained_on, seed=2, epochs=epochs),
            "regularised (weight decay 1e-2, 1/3 of the epochs)": ModelSpec(
                "mlp", model_params, trained_on, seed=2, epochs=max(1, epochs // 3), weight_decay=1e-2
            ),
        }
        trained = engine.train(list(variants_specs.values()), population.x, population.y)
        modules = dict(zip(variants_specs, (t.module() for t in trained), strict=True))
        references = train_reference_models(
            population,
            reference_specs(size, references_count, "mlp", model_params, epochs=epochs, seed=3),
            engine=engine,
        )
        indices = torch.arange(size)
        bounds = (population.lower, population.upper)

        def wrap(module: Any) -> Any:
            return TorchClassifier(module, (population.x.shape[1],), bounds=bounds)

        rows: list[tuple[str, float, Any]] = []
        fprs = sorted({fpr, 0.01})
        for label, module in modules.items():
            result = LiRA(wrap(module), references, online=False).evaluate(
                population.x, population.y, members, indices=indices, fprs=fprs
            )
            rows.append((label, accuracy(module, split.x_test, split.y_test), result))
            if label == "undefended":
                served = HardenedClassifier(wrap(module), [Rounding(1)])
                rounded = LiRA(served, references, online=False).evaluate(
                    population.x, population.y, members, indices=indices, fprs=fprs
                )
                rows.append(("served with scores rounded to 1 decimal", rows[0][1], rounded))
                label_only = LabelOnlyAttack(HardenedClassifier(wrap(module), [LabelOnly()])).evaluate(
                    population.x, population.y, members, fprs=fprs
                )
                rows.append(("served label only (label-only attack)", rows[0][1], label_only))
        for epsilon in epsilons:
            torch.manual_seed(2)
            dp = train_dp(
                MLP(**model_params), split.x_train, split.y_train, target_epsilon=float(epsilon), epochs=30,
                batch_size=256, lr=1e-2, seed=2,
            )  # fmt: skip
            result = LiRA(wrap(dp.module), references, online=False).evaluate(
                population.x, population.y, members, indices=indices, fprs=fprs
            )
            rows.append((f"DP-SGD, ε = {epsilon:g}", accuracy(dp.module, split.x_test, split.y_test), result))
        threshold = self.threshold if self.threshold is not None else 0.01
        baseline = rows[0][1]

        def tpr_text(result: Any, rate: float) -> str:
            value = result.tpr(rate)
            return "unresolvable" if value is None else f"{value:.2%}"

        table = EvidenceTable(
            title="Privacy against utility",
            columns=["model", "test accuracy", f"TPR at {fpr:.1%} FPR", "TPR at 1% FPR", "AUC", "attack"],
            rows=[
                [label, f"{acc:.3f}", tpr_text(result, fpr), tpr_text(result, 0.01), f"{result.auc:.3f}", result.attack]
                for label, acc, result in rows
            ],
        )
        acceptable = [
            (label, acc, result)
            for label, acc, result in rows[1:]
            if (result.tpr(fpr) or 0.0) <= threshold and acc >= baseline - max_drop
        ]
        passed = bool(acceptable)
        best = max(acceptable, key=lambda row: row[1]) if acceptable else None
        undefended_tpr = rows[0][2].tpr(fpr) or 0.0
        message = f"undefended: accuracy {baseline:.3f}, TPR {undefended_tpr:.2%} at {fpr:.1%} FPR; " + (
            f"best acceptable defense: {best[0]} (accuracy {best[1]:.3f}, TPR {best[2].tpr(fpr) or 0.0:.2%})"
            if best
            else f"no defense keeps TPR ≤ {threshold:.2%} within {max_drop:.0%} of the accuracy"
        )
        return Evidence(
            check=self.name,
            passed=passed,
            message=message,
            metrics={"undefended_tpr": undefended_tpr, "undefended_accuracy": baseline, "fpr": fpr},
            threshold=threshold,
            details=[
                f"generated population of {size} records, half of them members; LiRA offline with "
                f"{references_count} reference models trained like the undefended model ({epochs} epochs)",
                "a stand-in for the model's own data, which has too few non-members to resolve 0.1% FPR",
            ],
            tables=[table],
            failed_targets=[] if passed else list(targets),
        )
