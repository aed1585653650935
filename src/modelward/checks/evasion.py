"""Evasion checks: measured robustness of a model, bound in the system file to the model it protects.

``evasion.robust_accuracy`` runs the AutoAttack-style ensemble (APGD-CE, APGD-T, Square) at the
requirement's epsilon on held-out data and compares the worst-case robust accuracy with the
threshold; it also draws the robustness curve and a grid of original vs adversarial images, and
reports gradient-masking warnings (a robustness figure that only masks gradients does not count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelward.checks.base import Check, CheckContext, Evidence
from modelward.checks.model_recipes import resolve_model
from modelward.checks.registry import register
from modelward.core.errors import InputError

EVASION_THREATS = (
    "ML-EVASION-WHITEBOX",
    "ML-EVASION-BLACKBOX-SCORE",
    "ML-EVASION-BLACKBOX-DECISION",
    "ML-EVASION-TRANSFER",
)


def _number(params: dict[str, Any], name: str, default: float, *, low: float = 0.0, high: float | None = None) -> float:
    value = params.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InputError(f"{name} must be a number {bound}, got {value!r}", field=f"params.{name}")
    return float(value)


def _artifacts_dir(context: CheckContext) -> Path:
    """The requirement's own artifact folder (created)."""
    folder = Path(context.artifacts_dir) / context.requirement
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _artifact_refs(context: CheckContext, names: list[str]) -> list[str]:
    """Artifact paths as the report links them: relative to the report folder."""
    return [f"{Path(context.artifacts_dir).name}/{context.requirement}/{name}" for name in names]


@register
class RobustAccuracy(Check):
    """Worst-case robust accuracy of a model under an AutoAttack-style ensemble at a given epsilon."""

    name = "evasion.robust_accuracy"
    title = "Robust accuracy under evasion attacks is at least the threshold"
    verifies = EVASION_THREATS
    default_threshold = 0.5

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        from modelward.attacks.evasion.evaluate import (
            default_ensemble,
            evaluate_robustness,
            gradient_masking_warnings,
            robustness_curve,
        )

        params = context.params
        epsilon = _number(params, "epsilon", 0.1, high=1.0)
        norm = str(params.get("norm", "linf"))
        if norm not in ("linf", "l2"):
            raise InputError(f"norm must be linf or l2, got {norm!r}", field="params.norm")
        samples = int(_number(params, "samples", 200, low=1))
        steps = int(_number(params, "steps", 50, low=1))
        resolved = resolve_model(params.get("model"), Path(context.base_dir), str(params.get("data", "digits")))
        split = resolved.data
        x, y = split.x_test[:samples], split.y_test[:samples]
        classifier = resolved.classifier()
        attacks, notes = default_ensemble(
            classifier,
            norm=norm,
            steps=steps,
            target_classes=int(_number(params, "target_classes", 3, low=1)),
            square_queries=int(_number(params, "square_queries", 1000, low=1)),
        )
        result = evaluate_robustness(classifier, x, y, epsilon, norm=norm, attacks=attacks)
        masking_steps = params.get("masking_steps", [10, 50])
        if not (
            isinstance(masking_steps, list)
            and len(masking_steps) == 2
            and all(isinstance(v, int) for v in masking_steps)
        ):
            raise InputError("masking_steps must be two step counts, e.g. [10, 50]", field="params.masking_steps")
        warnings = gradient_masking_warnings(
            classifier, x, y, epsilon, norm=norm, ensemble=result, steps=(masking_steps[0], masking_steps[1])
        )
        # The curve uses the ensemble's first (white-box) attack: the full ensemble at every epsilon
        # would multiply the cost, and the figure that decides the check is the ensemble's above.
        default_curve = [epsilon / 4, epsilon / 2, 2 * epsilon]
        curve_epsilons = sorted({*(float(e) for e in params.get("curve", default_curve)), epsilon})
        curve = robustness_curve(classifier, x, y, curve_epsilons, norm=norm, attacks=attacks[:1])
        threshold = self.threshold if self.threshold is not None else 0.5
        robust = result.robust_accuracy
        passed = robust >= threshold and not warnings
        artifacts = _plots(_artifacts_dir(context), curve, x, result, epsilon)
        details = [f"model: {resolved.source}", *notes]
        details += [f"{a.name}: robust accuracy {a.robust_accuracy:.3f} ({a.queries} queries)" for a in result.attacks]
        details += [f"gradient masking: {w.message}" for w in warnings]
        message = (
            f"robust accuracy {robust:.3f} at ε={epsilon:g} ({norm}) on {len(y)} inputs "
            f"(clean {result.clean_accuracy:.3f}); required ≥ {threshold:g}"
            + ("; gradient-masking warnings void the figure" if warnings else "")
        )
        metrics = {"robust_accuracy": robust, "clean_accuracy": result.clean_accuracy, "epsilon": epsilon}
        metrics.update({f"curve_{e:g}": r for e, r in curve.points()})
        return Evidence(
            check=self.name,
            passed=passed,
            message=message,
            metrics=metrics,
            threshold=threshold,
            details=details,
            artifacts=_artifact_refs(context, artifacts),
            failed_targets=[] if passed else list(targets),
        )


def _plots(folder: Path, curve: Any, x: Any, result: Any, epsilon: float) -> list[str]:
    """The robustness curve and an originals-vs-adversarials grid, as PNG files in ``folder``."""
    from modelward.attacks.evasion.plots import plot_curve, plot_examples

    written = [plot_curve(curve.points(), curve.norm, folder / "robustness-curve.png", marker=epsilon).name]
    clean = result.worst.clean_correct
    attacked = result.worst.success if clean is None else result.worst.success & clean
    broken = attacked.nonzero().flatten()[:8]  # inputs the attack changed, not ones wrong from the start
    grid = plot_examples(x[broken], result.worst.adversarial[broken], folder / "adversarial-examples.png")
    if grid is not None:
        written.append(grid.name)
    return written


@register
class CertifiedAccuracy(Check):
    """Certified accuracy at an L2 radius under randomized smoothing (Cohen et al.'s CERTIFY)."""

    name = "evasion.certified_accuracy"
    title = "Certified accuracy under randomized smoothing is at least the threshold"
    verifies = EVASION_THREATS
    default_threshold = 0.5

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        from modelward.attacks.evasion.plots import plot_curve
        from modelward.defenses.smoothing import SmoothedClassifier

        params = context.params
        sigma = _number(params, "sigma", 0.25, high=10.0)
        radius = _number(params, "radius", 0.25, high=100.0)
        alpha = _number(params, "alpha", 0.001, high=0.5)
        n0 = int(_number(params, "n0", 100, low=1))
        n = int(_number(params, "n", 1000, low=1))
        samples = int(_number(params, "samples", 100, low=1))
        resolved = resolve_model(params.get("model"), Path(context.base_dir), str(params.get("data", "digits")))
        split = resolved.data
        smoothed = SmoothedClassifier(resolved.classifier(), sigma, n=n, alpha=alpha)
        x, y = split.x_test[:samples], split.y_test[:samples]
        result = smoothed.certify(x, n0=n0, n=n, alpha=alpha)
        certified = result.certified_accuracy(y, radius)
        threshold = self.threshold if self.threshold is not None else 0.5
        passed = certified >= threshold
        folder = _artifacts_dir(context)
        grid = [radius * i / 4 for i in range(9)]
        curve_path = plot_curve(
            result.curve(y, grid),
            "L2 radius",
            folder / "certified-accuracy.png",
            marker=radius,
            ylabel="certified accuracy",
        )
        return Evidence(
            check=self.name,
            passed=passed,
            message=(
                f"certified accuracy {certified:.3f} at L2 radius {radius:g} (σ={sigma:g}, n={n}, α={alpha:g}) "
                f"on {len(y)} inputs; abstained on {result.abstain_rate:.1%}; required ≥ {threshold:g}"
            ),
            metrics={
                "certified_accuracy": certified,
                "clean_certified_accuracy": result.certified_accuracy(y, 0.0),
                "abstain_rate": result.abstain_rate,
                "seconds_per_input": result.seconds_per_input,
            },
            threshold=threshold,
            details=[f"model: {resolved.source}"],
            artifacts=_artifact_refs(context, [curve_path.name]),
            failed_targets=[] if passed else list(targets),
        )
