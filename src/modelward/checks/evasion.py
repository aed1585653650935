"""Evasion checks: measured robustness of a model, bound in the system file to the model it protects.

``evasion.robust_accuracy`` runs the AutoAttack-style ensemble (APGD-CE, APGD-T, Square) at the
requirement's epsilon on held-out data and compares the worst-case robust accuracy with the
threshold; it also draws the robustness curve and a grid of original vs adversarial images, and
reports gradient-masking warnings (a robustness figure that only masks gradients does not count).
With a ``sanitizer`` parameter the model is measured behind that input-sanitation defense, attacked
adaptively (BPDA/EOT), and the plain attack's figure is shown beside it. ``evasion.certified_accuracy``
certifies with randomized smoothing; ``evasion.detection_rate`` measures an adversarial-input detector
(feature squeezing or redundant-model disagreement) at a fixed false-positive rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelward.checks.base import Check, CheckContext, Evidence, artifact_refs, artifacts_folder, number_param
from modelward.checks.model_recipes import resolve_model
from modelward.checks.registry import register
from modelward.core.errors import InputError

EVASION_THREATS = (
    "ML-EVASION-WHITEBOX",
    "ML-EVASION-BLACKBOX-SCORE",
    "ML-EVASION-BLACKBOX-DECISION",
    "ML-EVASION-TRANSFER",
)


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
        epsilon = number_param(params, "epsilon", 0.1, high=1.0)
        norm = str(params.get("norm", "linf"))
        if norm not in ("linf", "l2"):
            raise InputError(f"norm must be linf or l2, got {norm!r}", field="params.norm")
        samples = int(number_param(params, "samples", 200, low=1))
        steps = int(number_param(params, "steps", 50, low=1))
        resolved = resolve_model(params.get("model"), Path(context.base_dir), str(params.get("data", "digits")))
        split = resolved.data
        x, y = split.x_test[:samples], split.y_test[:samples]
        sanitizer = params.get("sanitizer")
        classifier, defense_notes = _behind_sanitizer(resolved.classifier(), sanitizer, x, y, epsilon, norm)
        attacks, notes = default_ensemble(
            classifier,
            norm=norm,
            steps=steps,
            target_classes=int(number_param(params, "target_classes", 3, low=1)),
            square_queries=int(number_param(params, "square_queries", 1000, low=1)),
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
        artifacts = _plots(artifacts_folder(context), curve, x, result, epsilon)
        details = [f"model: {resolved.source}", *defense_notes, *notes]
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
            artifacts=artifact_refs(context, artifacts),
            failed_targets=[] if passed else list(targets),
        )


SANITIZERS = ("bit-depth", "median")


def _behind_sanitizer(classifier: Any, spec: Any, x: Any, y: Any, epsilon: float, norm: str) -> tuple[Any, list[str]]:
    """The classifier an attacker faces behind ``spec``'s sanitiser (adaptive BPDA/EOT view), with notes.

    The notes give the plain (non-adaptive) APGD-CE figure beside it: the gap between the two is
    what gradient masking would have claimed.
    """
    if spec is None:
        return classifier, []
    from modelward.attacks.evasion.apgd import APGD
    from modelward.defenses.preprocessing import BitDepthReduction, MedianSmoothing

    if not isinstance(spec, dict) or spec.get("kind") not in SANITIZERS:
        raise InputError(
            f"sanitizer must be {{kind: {' | '.join(SANITIZERS)}, ...}}, got {spec!r}", field="params.sanitizer"
        )
    noise = number_param(spec, "noise", 0.0, high=1.0)
    if spec["kind"] == "bit-depth":
        defense: Any = BitDepthReduction(classifier, int(number_param(spec, "bits", 3, low=1, high=16)), noise=noise)
        label = f"bit-depth reduction to {defense.bits} bits"
    else:
        defense = MedianSmoothing(classifier, int(number_param(spec, "kernel", 2, low=1, high=7)), noise=noise)
        label = f"{defense.kernel}×{defense.kernel} median smoothing"
    if noise:
        label += f" with uniform noise ±{noise:g}"
    plain = APGD(defense, norm=norm, steps=20).perturb(x, y, epsilon).robust_accuracy
    adaptive = defense.adaptive()
    notes = [
        f"defense: {label}, attacked adaptively (BPDA{', EOT' if noise else ''})",
        f"a plain APGD-CE attack on the defense reports robust accuracy {plain:.3f} (what masking would claim)",
    ]
    return adaptive, notes


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
        sigma = number_param(params, "sigma", 0.25, high=10.0)
        radius = number_param(params, "radius", 0.25, high=100.0)
        alpha = number_param(params, "alpha", 0.001, high=0.5)
        n0 = int(number_param(params, "n0", 100, low=1))
        n = int(number_param(params, "n", 1000, low=1))
        samples = int(number_param(params, "samples", 100, low=1))
        resolved = resolve_model(params.get("model"), Path(context.base_dir), str(params.get("data", "digits")))
        split = resolved.data
        smoothed = SmoothedClassifier(resolved.classifier(), sigma, n=n, alpha=alpha)
        x, y = split.x_test[:samples], split.y_test[:samples]
        result = smoothed.certify(x, n0=n0, n=n, alpha=alpha)
        certified = result.certified_accuracy(y, radius)
        threshold = self.threshold if self.threshold is not None else 0.5
        passed = certified >= threshold
        folder = artifacts_folder(context)
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
            artifacts=artifact_refs(context, [curve_path.name]),
            failed_targets=[] if passed else list(targets),
        )


DETECTORS = ("feature-squeezing", "disagreement")


@register
class DetectionRate(Check):
    """Share of successful adversarial inputs an adversarial-input detector flags, at a fixed false-positive rate.

    The clean test inputs are split in two: the first half sets the detector's threshold for the
    target false-positive rate, the second half measures the real false-positive rate and is attacked
    (PGD, oblivious of the detector); only inputs the attack actually broke count towards the
    detection rate, since flagging a failed attack protects nothing.
    """

    name = "evasion.detection_rate"
    title = "An adversarial-input detector flags at least the threshold share of attacks at a fixed FPR"
    # Detection is query monitoring: it answers the attacks that probe a served model, not a white-box
    # or transfer attacker who adapts offline (see the catalog's mitigations).
    verifies = ("ML-EVASION-BLACKBOX-SCORE", "ML-EVASION-BLACKBOX-DECISION")
    default_threshold = 0.8

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        from modelward.attacks.evasion.pgd import PGD
        from modelward.defenses.detection import DisagreementDetector, FeatureSqueezingDetector, select_squeezers

        params = context.params
        epsilon = number_param(params, "epsilon", 0.1, high=1.0)
        fpr = number_param(params, "fpr", 0.05, high=0.5)
        samples = int(number_param(params, "samples", 200, low=4))
        steps = int(number_param(params, "steps", 40, low=1))
        detector_name = str(params.get("detector", "feature-squeezing"))
        if detector_name not in DETECTORS:
            raise InputError(
                f"detector must be one of {', '.join(DETECTORS)}, got {detector_name!r}", field="params.detector"
            )
        data = str(params.get("data", "digits"))
        base_dir = Path(context.base_dir)
        resolved = resolve_model(params.get("model"), base_dir, data)
        classifier = resolved.classifier()
        split = resolved.data
        x, y = split.x_test[:samples], split.y_test[:samples]
        half = x.shape[0] // 2
        calibration, held_out, held_out_y = x[:half], x[half:], y[half:]
        details = [f"model: {resolved.source}"]
        if detector_name == "feature-squeezing":
            squeezers = select_squeezers(classifier, split.x_train[:500], split.y_train[:500])
            detector: Any = FeatureSqueezingDetector(classifier, squeezers)
            details.append(f"squeezers (chosen on training data for ≤ 2 points of accuracy): {', '.join(squeezers)}")
        else:
            redundant = params.get("redundant")
            if redundant is None:
                raise InputError("the disagreement detector needs params.redundant: a second model", field="params")
            other = resolve_model(redundant, base_dir, data)
            detector = DisagreementDetector(classifier, other.classifier())
            details.append(f"redundant model: {other.source}")
        detector.calibrate(calibration, fpr=fpr)
        attack = PGD(classifier, norm="linf", steps=steps, seed=0).perturb(held_out, held_out_y, epsilon)
        broken = attack.success if attack.clean_correct is None else attack.success & attack.clean_correct
        if not bool(broken.any()):
            raise InputError(f"PGD at ε={epsilon:g} broke no input: nothing to detect; raise epsilon")
        result = detector.evaluate(held_out, attack.adversarial[broken])
        threshold = self.threshold if self.threshold is not None else 0.8
        passed = result.detection_rate >= threshold
        details.append(
            f"threshold set on {half} clean inputs (FPR there {result.calibration_fpr:.3f}); "
            f"{result.n_adversarial} adversarial inputs from PGD at ε={epsilon:g} ({steps} steps)"
        )
        details.append("the attack ignores the detector: an adaptive attacker who knows it can do better")
        return Evidence(
            check=self.name,
            passed=passed,
            message=(
                f"{result.detector} flags {result.detection_rate:.1%} of adversarial inputs at a false-positive "
                f"rate of {result.fpr:.1%} (target {fpr:.0%}; AUC {result.auc:.3f}); required ≥ {threshold:g}"
            ),
            metrics={
                "detection_rate": result.detection_rate,
                "false_positive_rate": result.fpr,
                "auc": result.auc,
                "epsilon": epsilon,
            },
            threshold=threshold,
            details=details,
            failed_targets=[] if passed else list(targets),
        )
