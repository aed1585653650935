"""Adversarial-input detectors: feature squeezing, redundant-model disagreement, autoencoder reconstruction error.

Every detector maps a batch to one suspicion score per input (higher = more suspicious) and flags
inputs whose score exceeds a threshold. The threshold is set on clean held-out inputs for a target
false-positive rate with the split-conformal rule: with ``n`` calibration scores, it is the
``⌈(n + 1)(1 − fpr)⌉``-th smallest, so the FPR on the calibration set is at most ``fpr`` (exactly,
counted) and the expected FPR on fresh clean inputs drawn like them is at most ``fpr`` too. Any one
held-out set still scatters around that expectation; ``confidence=`` picks a binomial-tail rank
instead, so the true FPR is at most ``fpr`` with that probability. The detection rate is the
fraction of adversarial inputs flagged at the threshold.

These detectors are evaluated here against attacks that ignore them (the usual "oblivious"
setting of Xu et al. 2018 and Meng & Chen 2017); an attacker who knows the detector can often
evade it too, which is why detection rates are reported next to, never instead of, robust accuracy.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch

from modelward.classifiers.base import Capability, Classifier
from modelward.core.errors import ModelwardError
from modelward.defenses.preprocessing import AutoencoderReformer, median_smooth, reduce_bit_depth

Squeezer = Callable[[torch.Tensor], torch.Tensor]


class DetectorError(ModelwardError):
    """Misuse of a detector: not calibrated, bad false-positive rate, empty or mismatched inputs."""


# --- thresholds and metrics ---------------------------------------------------------------


def threshold_at_fpr(clean_scores: torch.Tensor, fpr: float, *, confidence: float | None = None) -> float:
    """A threshold ``t`` (flag ``score > t``) that keeps the false-positive rate at most ``fpr``.

    Without ``confidence``: the split-conformal rank ``⌈(n + 1)(1 − fpr)⌉``, so the FPR on the
    calibration scores is at most ``fpr`` and the *expected* FPR on fresh clean inputs is at most
    ``fpr``. With ``confidence`` (e.g. 0.95): the smallest rank ``r`` with
    ``P(Binomial(n, 1 − fpr) ≥ r) ≤ 1 − confidence``, so that with probability ≥ ``confidence`` over
    the calibration draw the true FPR itself is at most ``fpr`` (a stricter, higher threshold).
    When the rank exceeds ``n`` (too few calibration scores) ``t`` is ``+inf`` and nothing is flagged.
    """
    if not 0.0 < fpr < 1.0:
        raise DetectorError(f"the false-positive rate must lie in (0, 1), got {fpr}")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise DetectorError(f"the confidence must lie in (0, 1), got {confidence}")
    scores = clean_scores.detach().flatten().double()
    n = scores.numel()
    if n == 0:
        raise DetectorError("calibration needs at least one clean input")
    rank = math.ceil((n + 1) * (1.0 - fpr)) if confidence is None else _pac_rank(n, fpr, confidence)
    if rank > n:
        return math.inf
    return float(scores.sort().values[rank - 1])


def _pac_rank(n: int, fpr: float, confidence: float) -> int:
    """Smallest rank ``r`` with ``P(Binomial(n, 1 − fpr) ≥ r) ≤ 1 − confidence`` (``n + 1`` if none)."""
    q, delta = 1.0 - fpr, 1.0 - confidence
    log_q, log_p = math.log(q), math.log(fpr)
    tail, rank = 0.0, n + 1
    for k in range(n, 0, -1):
        log_pmf = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q + (n - k) * log_p
        tail += math.exp(log_pmf)
        if tail > delta:
            break
        rank = k
    return rank


def roc_auc(clean_scores: torch.Tensor, adversarial_scores: torch.Tensor) -> float:
    """Exact ROC AUC (Mann–Whitney): P(adversarial score > clean score), ties counted one half."""
    clean = clean_scores.detach().flatten().double().sort().values
    adversarial = adversarial_scores.detach().flatten().double()
    if clean.numel() == 0 or adversarial.numel() == 0:
        raise DetectorError("the ROC AUC needs clean and adversarial scores")
    below = torch.searchsorted(clean, adversarial, right=False)
    at_or_below = torch.searchsorted(clean, adversarial, right=True)
    wins = below.double() + 0.5 * (at_or_below - below).double()
    return float(wins.sum()) / (clean.numel() * adversarial.numel())


@dataclass(frozen=True)
class DetectionResult:
    """A detector's operating point: threshold for a target FPR, measured FPR and detection rate, AUC.

    ``calibration_fpr`` is on the clean inputs the threshold was set on (≤ ``target_fpr`` by
    construction); ``fpr`` is on the held-out clean inputs given to :meth:`ScoreDetector.evaluate`.
    """

    detector: str
    target_fpr: float
    threshold: float
    calibration_fpr: float
    fpr: float
    detection_rate: float
    auc: float
    n_clean: int
    n_adversarial: int


# --- detectors -----------------------------------------------------------------------------


class ScoreDetector(ABC):
    """A thresholded suspicion score; calibrate on clean inputs, then :meth:`detect` or :meth:`evaluate`."""

    name: ClassVar[str] = "detector"

    def __init__(self) -> None:
        self.threshold: float | None = None
        self.target_fpr: float | None = None
        self.calibration_fpr: float | None = None

    @abstractmethod
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Suspicion score per input ``(N,)``, higher = more likely adversarial (no gradients)."""

    def calibrate(self, x_clean: torch.Tensor, *, fpr: float = 0.05, confidence: float | None = None) -> float:
        """Set the threshold for a target false-positive rate on clean held-out inputs; returns it.

        ``confidence`` asks for the high-probability guarantee of :func:`threshold_at_fpr`.
        """
        scores = self.score(x_clean)
        self.threshold = threshold_at_fpr(scores, fpr, confidence=confidence)
        self.target_fpr = fpr
        self.calibration_fpr = float((scores > self.threshold).double().mean())
        return self.threshold

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean flags ``(N,)``: score above the calibrated threshold."""
        return self.score(x) > self._threshold()

    def evaluate(self, x_clean: torch.Tensor, x_adversarial: torch.Tensor) -> DetectionResult:
        """FPR on held-out clean inputs, detection rate on adversarial ones, and the AUC between them."""
        threshold = self._threshold()
        if x_clean.shape[0] == 0 or x_adversarial.shape[0] == 0:
            raise DetectorError("evaluation needs at least one clean and one adversarial input")
        clean, adversarial = self.score(x_clean), self.score(x_adversarial)
        return DetectionResult(
            detector=self.name,
            target_fpr=float(self.target_fpr or 0.0),
            threshold=threshold,
            calibration_fpr=float(self.calibration_fpr or 0.0),
            fpr=float((clean > threshold).double().mean()),
            detection_rate=float((adversarial > threshold).double().mean()),
            auc=roc_auc(clean, adversarial),
            n_clean=int(clean.numel()),
            n_adversarial=int(adversarial.numel()),
        )

    def _threshold(self) -> float:
        if self.threshold is None:
            raise DetectorError(f"{self.name}: call calibrate() on clean inputs before detecting")
        return self.threshold


def default_squeezers(classifier: Classifier, *, bits: int = 2, kernel: int = 2) -> dict[str, Squeezer]:
    """Xu et al.'s pair for this input domain: bit-depth reduction, plus k×k median smoothing for images."""
    spec = classifier.input_spec
    squeezers: dict[str, Squeezer] = {
        f"bit-depth-{bits}": lambda x: reduce_bit_depth(x, bits, spec.lower, spec.upper),
    }
    if len(spec.shape) == 3:
        squeezers[f"median-{kernel}x{kernel}"] = lambda x: median_smooth(x, kernel)
    return squeezers


def candidate_squeezers(classifier: Classifier) -> dict[str, Squeezer]:
    """Squeezers worth trying: bit depths 1–5, and 2×2 and 3×3 median smoothing for images."""
    spec = classifier.input_spec
    candidates: dict[str, Squeezer] = {}
    for bits in range(1, 6):
        candidates[f"bit-depth-{bits}"] = partial(reduce_bit_depth, bits=bits, lower=spec.lower, upper=spec.upper)
    if len(spec.shape) == 3:
        for kernel in (2, 3):
            if kernel <= min(spec.shape[1:]):
                candidates[f"median-{kernel}x{kernel}"] = partial(median_smooth, kernel=kernel)
    return candidates


def select_squeezers(
    classifier: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    candidates: Mapping[str, Squeezer] | None = None,
    *,
    max_accuracy_drop: float = 0.02,
) -> dict[str, Squeezer]:
    """Keep the squeezers that cost at most ``max_accuracy_drop`` clean accuracy on labelled clean inputs.

    Xu et al. chose squeezers per dataset this way: a squeezer that destroys clean accuracy makes
    clean scores large, raises the threshold and hides adversarial inputs. Costs
    ``(1 + len(candidates)) × N`` queries. Fails when no candidate qualifies.
    """
    pool = dict(candidates) if candidates is not None else candidate_squeezers(classifier)
    with torch.no_grad():
        baseline = float((classifier.predict(x) == y).double().mean())
        kept = {
            name: squeeze
            for name, squeeze in pool.items()
            if float((classifier.predict(squeeze(x)) == y).double().mean()) >= baseline - max_accuracy_drop
        }
    if not kept:
        raise DetectorError(f"no squeezer keeps clean accuracy within {max_accuracy_drop} of {baseline:.3f}")
    return kept


class FeatureSqueezingDetector(ScoreDetector):
    """Feature squeezing (Xu et al., 2018): max L1 distance between the softmax on the input and on squeezed copies.

    Needs class scores. Each scored batch of N inputs costs ``(1 + len(squeezers)) × N`` queries,
    sent as one batch. Squeezers must map inputs into the classifier's bounds.
    """

    name: ClassVar[str] = "feature squeezing"

    def __init__(self, classifier: Classifier, squeezers: Mapping[str, Squeezer] | None = None) -> None:
        super().__init__()
        classifier.require(Capability.SCORES, by="FeatureSqueezingDetector")
        self.classifier = classifier
        self.squeezers = dict(squeezers) if squeezers is not None else default_squeezers(classifier)
        if not self.squeezers:
            raise DetectorError("feature squeezing needs at least one squeezer")

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Max over squeezers of ``‖softmax(x) − softmax(squeeze(x))‖₁`` per input."""
        with torch.no_grad():
            batch = torch.cat([x, *(squeeze(x) for squeeze in self.squeezers.values())])
            probabilities = self.classifier.probabilities(batch).view(1 + len(self.squeezers), x.shape[0], -1)
            distances = (probabilities[1:] - probabilities[0]).abs().sum(dim=2)
            return distances.amax(dim=0)


class DisagreementDetector(ScoreDetector):
    """Redundant models: inputs on which independently trained models disagree are suspect.

    The score is the largest total-variation distance between the primary's class probabilities and
    any other model's (in [0, 1]); with label-only models it is 1 where the labels differ, else 0.
    Each scored batch of N inputs costs N queries on every model.
    """

    name: ClassVar[str] = "model disagreement"

    def __init__(self, primary: Classifier, *others: Classifier) -> None:
        super().__init__()
        if not others:
            raise DetectorError("disagreement needs at least two models")
        for other in others:
            if other.input_spec != primary.input_spec or other.num_classes != primary.num_classes:
                raise DetectorError("redundant models must share the input spec and the classes of the primary")
        self.models = (primary, *others)
        self.use_scores = all(Capability.SCORES in m.capabilities for m in self.models)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Largest disagreement between the primary and any other model, per input."""
        with torch.no_grad():
            if self.use_scores:
                outputs = [m.probabilities(x) for m in self.models]
                return torch.stack([0.5 * (o - outputs[0]).abs().sum(dim=1) for o in outputs[1:]]).amax(dim=0)
            labels = [m.predict(x) for m in self.models]
            return torch.stack([(lab != labels[0]) for lab in labels[1:]]).any(dim=0).to(x.dtype)

    def disagree(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean ``(N,)``: some model predicts a different label from the primary (no threshold needed)."""
        with torch.no_grad():
            labels = [m.predict(x) for m in self.models]
            return torch.stack([(lab != labels[0]) for lab in labels[1:]]).any(dim=0)


class ReconstructionErrorDetector(ScoreDetector):
    """MagNet's detector: the autoencoder's reconstruction error, large off the clean-data manifold.

    Queries no model (only the autoencoder runs). ``p`` is the error's exponent (1 for MagNet's MNIST
    detector, 2 for mean squared error).
    """

    name: ClassVar[str] = "autoencoder reconstruction error"

    def __init__(self, reformer: AutoencoderReformer, *, p: int = 1) -> None:
        super().__init__()
        if p < 1:
            raise DetectorError(f"p must be >= 1, got {p}")
        self.reformer = reformer
        self.p = p

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-input mean ``|x − AE(x)|^p``."""
        return self.reformer.reconstruction_error(x, p=self.p)
