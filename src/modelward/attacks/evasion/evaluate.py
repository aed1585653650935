"""Robustness evaluation: per-sample worst case over an attack ensemble, epsilon curves, masking warnings.

A sample counts as robust at epsilon only if it is classified correctly and *no* attack of the
ensemble breaks it. The default ensemble follows AutoAttack (Croce & Hein 2020): APGD-CE,
APGD-T (targeted DLR) and the score-based Square attack, the last one a black-box check on the
white-box ones. Robust accuracy that only holds against gradients is masking, not robustness, so
:func:`gradient_masking_warnings` looks for the usual signs: a black-box attack breaking inputs
the white-box attacks could not, robust accuracy rising with epsilon or staying above zero at an
epsilon that spans the whole input range, and more attack steps raising robust accuracy.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import torch

from modelward.attacks.evasion.apgd import APGD, APGDT
from modelward.attacks.evasion.base import (
    AttackError,
    EpsilonResult,
    EvasionAttack,
    check_norm,
    perturbation_norms,
)
from modelward.attacks.evasion.pgd import PGD
from modelward.classifiers.base import Capability, Classifier

MaskingKind = Literal[
    "black-box-beats-white-box",
    "accuracy-rises-with-epsilon",
    "large-epsilon-not-broken",
    "more-steps-raise-accuracy",
]


@dataclass
class AttackSummary:
    """One attack's share of an ensemble evaluation at one epsilon.

    ``success`` covers all samples (False where the attack did not run, in a cascade);
    ``robust_accuracy`` is the attack's own figure when run on every sample, or the ensemble's
    running figure after this attack in a cascade; ``newly_broken`` counts samples this attack
    broke that no earlier attack had.
    """

    name: str
    black_box: bool
    success: torch.Tensor
    robust_accuracy: float
    newly_broken: int
    queries: int
    seconds: float


@dataclass
class EnsembleResult:
    """Per-sample worst case of an attack ensemble at one epsilon.

    ``worst.success`` is True where any attack succeeded (or the clean input is misclassified);
    ``worst.adversarial`` holds the first successful attack's input there; ``broken_by`` gives the
    index of that attack (``-1``: robust, ``-2``: misclassified clean).
    """

    epsilon: float
    norm: str
    worst: EpsilonResult
    attacks: list[AttackSummary]
    broken_by: torch.Tensor
    cascade: bool
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def robust_accuracy(self) -> float:
        """Fraction of samples correct and unbroken by every attack."""
        return self.worst.robust_accuracy

    @property
    def clean_accuracy(self) -> float:
        """Fraction of clean inputs classified correctly."""
        clean = self.worst.clean_correct
        return float(clean.float().mean()) if clean is not None and clean.numel() else float("nan")


@dataclass
class RobustnessCurve:
    """Ensemble robust accuracy against epsilon (increasing), monotone by carry-over, with the raw figures."""

    norm: str
    results: list[EnsembleResult]
    raw_robust_accuracy: list[float]
    seconds: float

    @property
    def epsilons(self) -> list[float]:
        """The evaluated epsilons, increasing."""
        return [r.epsilon for r in self.results]

    @property
    def robust_accuracy(self) -> list[float]:
        """Robust accuracy per epsilon; never rises with epsilon."""
        return [r.robust_accuracy for r in self.results]

    @property
    def clean_accuracy(self) -> float:
        """Clean accuracy of the evaluated samples."""
        return self.results[0].clean_accuracy if self.results else float("nan")

    def points(self) -> list[tuple[float, float]]:
        """``(epsilon, robust accuracy)`` pairs for plots and reports."""
        return list(zip(self.epsilons, self.robust_accuracy, strict=True))


@dataclass(frozen=True)
class MaskingWarning:
    """A sign that robustness may come from masked gradients rather than from the model."""

    kind: MaskingKind
    message: str
    epsilon: float | None = None
    magnitude: float = 0.0


# --------------------------------------------------------------------------------------------
# the ensemble
# --------------------------------------------------------------------------------------------
def is_black_box(attack: EvasionAttack) -> bool:
    """An attack is black-box when it does not need gradients."""
    return Capability.GRADIENTS not in attack.requires


def default_ensemble(
    classifier: Classifier,
    *,
    norm: str = "linf",
    steps: int = 100,
    target_classes: int = 9,
    square_queries: int = 5000,
    seed: int = 0,
) -> tuple[list[EvasionAttack], list[str]]:
    """AutoAttack-style attacks that fit the classifier, white-box first, and notes on what was left out.

    APGD-CE and APGD-T (targeted DLR; untargeted DLR below 4 classes; none below 3) need gradients;
    Square (from ``attacks/evasion/square.py``, imported lazily) needs scores.
    """
    checked = check_norm(norm)
    attacks: list[EvasionAttack] = []
    notes: list[str] = []
    if Capability.GRADIENTS in classifier.capabilities:
        attacks.append(APGD(classifier, norm=checked, loss="ce", steps=steps, seed=seed))
        if classifier.num_classes >= 4:
            attacks.append(APGDT(classifier, norm=checked, steps=steps, target_classes=target_classes, seed=seed))
        elif classifier.num_classes == 3:
            attacks.append(APGD(classifier, norm=checked, loss="dlr", steps=steps, seed=seed))
            notes.append("APGD-T skipped: targeted DLR needs at least 4 classes; used untargeted APGD-DLR")
        else:
            notes.append("APGD-T and APGD-DLR skipped: DLR losses need at least 3 classes")
    else:
        notes.append("white-box attacks (APGD-CE, APGD-T) skipped: the classifier offers no gradients")
    square = _make_square(classifier, checked, square_queries, seed)
    if isinstance(square, str):
        notes.append(square)
    else:
        attacks.append(square)
    return attacks, notes


def _make_square(classifier: Classifier, norm: str, max_queries: int, seed: int) -> EvasionAttack | str:
    """The Square attack for the ensemble, or a note saying why it is left out (its module is optional)."""
    try:
        from modelward.attacks.evasion.square import Square
    except ImportError:
        return "Square attack skipped: modelward.attacks.evasion.square is not available"
    if Capability.SCORES not in classifier.capabilities:
        return "Square attack skipped: the classifier offers no scores"
    return Square(classifier, norm=norm, max_queries=max_queries, seed=seed)


def evaluate_robustness(
    classifier: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    *,
    norm: str = "linf",
    attacks: Sequence[EvasionAttack] | None = None,
    cascade: bool = True,
    batch_size: int = 500,
    seed: int = 0,
) -> EnsembleResult:
    """Robust accuracy at ``epsilon`` against the per-sample worst case over ``attacks`` (default: AutoAttack-style).

    With ``cascade`` each attack runs only on the samples every earlier attack failed on (AutoAttack's
    economy); without it every attack runs on every sample and reports its own robust accuracy.
    """
    started = time.perf_counter()
    notes: list[str] = []
    if attacks is None:
        chosen, notes = default_ensemble(classifier, norm=norm, seed=seed)
    else:
        chosen = list(attacks)
    if not chosen:
        raise AttackError("no attack of the ensemble applies to this classifier: " + "; ".join(notes))
    checked = check_norm(norm)
    for attack in chosen:
        if attack.classifier is not classifier:
            raise AttackError(f"attack {attack.name} is bound to a different classifier")
        if attack.norm != checked:
            raise AttackError(f"attack {attack.name} uses the {attack.norm} norm, the evaluation {checked}")
    n = x.shape[0]
    y = torch.as_tensor(y, device=x.device).long()
    adversarial = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)  # broken by some attack, or wrong when clean
    queries = torch.zeros(n, dtype=torch.long, device=x.device)
    broken_by = torch.full((n,), -1, dtype=torch.long, device=x.device)
    clean_correct: torch.Tensor | None = None
    summaries: list[AttackSummary] = []
    for position, attack in enumerate(chosen):
        t0 = time.perf_counter()
        if cascade and clean_correct is not None:
            index = (clean_correct & ~success).nonzero().squeeze(1)
        else:
            index = torch.arange(n, device=x.device)
        own = torch.zeros(n, dtype=torch.bool, device=x.device)
        newly = torch.zeros(n, dtype=torch.bool, device=x.device)
        spent = 0
        if index.numel():
            everyone = index.numel() == n
            result = attack.perturb(
                x if everyone else x[index], y if everyone else y[index], epsilon, batch_size=batch_size
            )
            if clean_correct is None:  # the first attack runs on every sample
                clean_correct = cast(torch.Tensor, result.clean_correct).clone()
                success = ~clean_correct
                broken_by[success] = -2
            own[index] = result.success
            queries[index] += result.queries
            spent = int(result.queries.sum())
            newly = own & ~success
            rows = newly[index]
            adversarial[index[rows]] = result.adversarial[rows]
            broken_by[newly] = position
            success = success | own
        clean = clean_correct if clean_correct is not None else torch.ones(n, dtype=torch.bool, device=x.device)
        robust_mask = clean & ~(success if cascade else own)
        summaries.append(
            AttackSummary(
                name=attack.name,
                black_box=is_black_box(attack),
                success=own,
                robust_accuracy=float(robust_mask.sum()) / n if n else float("nan"),
                newly_broken=int(newly.sum()),
                queries=spent,
                seconds=time.perf_counter() - t0,
            )
        )
    final_clean = clean_correct if clean_correct is not None else torch.ones(n, dtype=torch.bool, device=x.device)
    worst = EpsilonResult(
        epsilon=float(epsilon),
        adversarial=adversarial,
        success=success,
        norms=perturbation_norms(adversarial - x, checked),
        queries=queries,
        clean_correct=final_clean,
    )
    return EnsembleResult(
        epsilon=float(epsilon),
        norm=checked,
        worst=worst,
        attacks=summaries,
        broken_by=broken_by,
        cascade=cascade,
        notes=notes,
        seconds=time.perf_counter() - started,
    )


def robustness_curve(
    classifier: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float],
    *,
    norm: str = "linf",
    attacks: Sequence[EvasionAttack] | None = None,
    cascade: bool = True,
    batch_size: int = 500,
    seed: int = 0,
) -> RobustnessCurve:
    """Ensemble robust accuracy at each epsilon (increasing).

    A sample broken at a smaller epsilon stays broken at larger ones (its adversarial input is
    still inside the ball), so the curve never rises; ``raw_robust_accuracy`` keeps each epsilon's
    own figure, whose rising is a masking sign.
    """
    if len(epsilons) == 0:
        raise AttackError("a robustness curve needs at least one epsilon")
    started = time.perf_counter()
    results: list[EnsembleResult] = []
    raw: list[float] = []
    for eps in sorted(float(e) for e in epsilons):
        result = evaluate_robustness(
            classifier, x, y, eps, norm=norm, attacks=attacks, cascade=cascade, batch_size=batch_size, seed=seed
        )
        raw.append(result.robust_accuracy)
        if results:
            result = _carry_forward(results[-1], result)
        results.append(result)
    return RobustnessCurve(
        norm=check_norm(norm), results=results, raw_robust_accuracy=raw, seconds=time.perf_counter() - started
    )


def _carry_forward(previous: EnsembleResult, current: EnsembleResult) -> EnsembleResult:
    """Mark samples broken at the smaller epsilon as broken at this one too (with that adversarial input)."""
    keep = previous.worst.success & ~current.worst.success
    if not bool(keep.any()):
        return current
    worst = current.worst
    shape = (-1, *([1] * (worst.adversarial.dim() - 1)))
    carried = EpsilonResult(
        epsilon=worst.epsilon,
        adversarial=torch.where(keep.view(shape), previous.worst.adversarial, worst.adversarial),
        success=worst.success | keep,
        norms=torch.where(keep, previous.worst.norms, worst.norms),
        queries=worst.queries,
        clean_correct=worst.clean_correct,
    )
    broken_by = torch.where(keep, previous.broken_by, current.broken_by)
    notes = [*current.notes, f"{int(keep.sum())} sample(s) broken at epsilon {previous.epsilon:g} carried over"]
    return EnsembleResult(
        epsilon=current.epsilon,
        norm=current.norm,
        worst=carried,
        attacks=current.attacks,
        broken_by=broken_by,
        cascade=current.cascade,
        notes=notes,
        seconds=current.seconds,
    )


# --------------------------------------------------------------------------------------------
# gradient-masking diagnostics
# --------------------------------------------------------------------------------------------
def black_box_warnings(result: EnsembleResult, *, tolerance: float = 0.01) -> list[MaskingWarning]:
    """Warn when black-box attacks broke more than ``tolerance`` of the samples that every white-box attack survived.

    In a cascade this needs the white-box attacks to run first (the default ensemble's order).
    """
    white = [a for a in result.attacks if not a.black_box]
    black = [a for a in result.attacks if a.black_box]
    if not white or not black:
        return []
    if result.cascade:
        first_black = min(i for i, a in enumerate(result.attacks) if a.black_box)
        last_white = max(i for i, a in enumerate(result.attacks) if not a.black_box)
        if first_black < last_white:
            return []
    n = int(result.broken_by.numel())
    clean = result.worst.clean_correct
    survived_white = ~torch.stack([a.success for a in white]).any(dim=0)
    if clean is not None:
        survived_white = survived_white & clean
    beaten = survived_white & torch.stack([a.success for a in black]).any(dim=0)
    count = int(beaten.sum())
    fraction = count / n if n else 0.0
    if count == 0 or fraction <= tolerance:
        return []
    names = ", ".join(a.name for a in black)
    return [
        MaskingWarning(
            kind="black-box-beats-white-box",
            message=(
                f"at epsilon {result.epsilon:g} the black-box attack(s) {names} broke {count} sample(s) "
                f"({fraction:.1%}) that every white-box attack failed on: gradients are likely masked"
            ),
            epsilon=result.epsilon,
            magnitude=fraction,
        )
    ]


def epsilon_warnings(
    epsilons: Sequence[float],
    raw_robust_accuracy: Sequence[float],
    *,
    norm: str,
    input_range: float,
    dimension: int,
    tolerance: float = 0.02,
) -> list[MaskingWarning]:
    """Warn when raw robust accuracy rises with epsilon, or stays above ``tolerance`` where any input is reachable.

    An epsilon at least ``input_range`` (L∞) or ``input_range·sqrt(dimension)`` (L2) lets an attacker
    reach any input, so a working attack must bring robust accuracy to about zero there.
    """
    checked = check_norm(norm)
    warnings: list[MaskingWarning] = []
    pairs = sorted(zip((float(e) for e in epsilons), (float(a) for a in raw_robust_accuracy), strict=True))
    lowest = math.inf
    for eps, acc in pairs:
        if acc > lowest + tolerance:
            warnings.append(
                MaskingWarning(
                    kind="accuracy-rises-with-epsilon",
                    message=(
                        f"robust accuracy rises to {acc:.1%} at epsilon {eps:g}, above {lowest:.1%} at a smaller "
                        "epsilon: the attack's optimisation is failing (masked or noisy gradients)"
                    ),
                    epsilon=eps,
                    magnitude=acc - lowest,
                )
            )
        lowest = min(lowest, acc)
    full = input_range if checked == "linf" else input_range * math.sqrt(dimension)
    for eps, acc in pairs:
        if eps >= full * (1 - 1e-9) and acc > tolerance:
            warnings.append(
                MaskingWarning(
                    kind="large-epsilon-not-broken",
                    message=(
                        f"robust accuracy is still {acc:.1%} at epsilon {eps:g}, where any input is reachable: "
                        "the attack cannot follow the model's gradients"
                    ),
                    epsilon=eps,
                    magnitude=acc,
                )
            )
            break
    return warnings


def steps_warnings(
    epsilon: float, accuracy_by_steps: Sequence[tuple[int, float]], *, tolerance: float = 0.02
) -> list[MaskingWarning]:
    """Warn when robust accuracy with more attack steps exceeds that with fewer by more than ``tolerance``."""
    ordered = sorted(accuracy_by_steps)
    warnings: list[MaskingWarning] = []
    for (few, acc_few), (many, acc_many) in itertools.pairwise(ordered):
        if acc_many > acc_few + tolerance:
            warnings.append(
                MaskingWarning(
                    kind="more-steps-raise-accuracy",
                    message=(
                        f"at epsilon {epsilon:g} robust accuracy is {acc_many:.1%} after {many} steps but "
                        f"{acc_few:.1%} after {few}: more optimisation should never help the defender"
                    ),
                    epsilon=epsilon,
                    magnitude=acc_many - acc_few,
                )
            )
    return warnings


def gradient_masking_warnings(
    classifier: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    *,
    norm: str = "linf",
    attacks: Sequence[EvasionAttack] | None = None,
    ensemble: EnsembleResult | None = None,
    steps: tuple[int, int] = (10, 50),
    tolerance: float = 0.02,
    batch_size: int = 500,
    seed: int = 0,
) -> list[MaskingWarning]:
    """Run the three masking checks on a gradient-capable classifier at ``epsilon``.

    1. The ensemble at ``epsilon`` (given, or run with ``attacks``/the default): black-box beating white-box.
    2. PGD over ``epsilon/2, epsilon, 2·epsilon`` and a range-spanning epsilon: robust accuracy rising
       with epsilon, or not reaching zero where every input is reachable.
    3. PGD at ``epsilon`` with ``steps[0]`` and ``steps[1]`` steps: more steps raising robust accuracy.
    """
    classifier.require(Capability.GRADIENTS, by="gradient_masking_warnings")
    checked = check_norm(norm)
    if ensemble is None:
        ensemble = evaluate_robustness(
            classifier, x, y, epsilon, norm=checked, attacks=attacks, batch_size=batch_size, seed=seed
        )
    warnings = black_box_warnings(ensemble, tolerance=tolerance / 2)
    spec = classifier.input_spec
    span = spec.upper - spec.lower
    dimension = math.prod(spec.shape)
    full = span if checked == "linf" else span * math.sqrt(dimension)
    epsilons = sorted({epsilon / 2, epsilon, 2 * epsilon, full})
    pgd = PGD(classifier, norm=checked, steps=max(steps), seed=seed)
    sweep = pgd.sweep(x, y, epsilons, batch_size=batch_size)
    warnings += epsilon_warnings(
        epsilons, sweep.raw_robust_accuracy, norm=checked, input_range=span, dimension=dimension, tolerance=tolerance
    )
    by_steps: list[tuple[int, float]] = []
    for count in sorted(set(steps)):
        attack = PGD(classifier, norm=checked, steps=count, seed=seed)
        by_steps.append((count, attack.perturb(x, y, epsilon, batch_size=batch_size).robust_accuracy))
    warnings += steps_warnings(epsilon, by_steps, tolerance=tolerance)
    return warnings
