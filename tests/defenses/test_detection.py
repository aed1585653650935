"""Adversarial-input detectors: conformal thresholds at a fixed FPR, exact AUC, and detection on digits."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modelward.attacks.evasion.pgd import PGD
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import accuracy, train_classifier
from modelward.datasets.builtin import load_digits_images
from modelward.defenses.detection import (
    DetectorError,
    DisagreementDetector,
    FeatureSqueezingDetector,
    ReconstructionErrorDetector,
    candidate_squeezers,
    default_squeezers,
    roc_auc,
    select_squeezers,
    threshold_at_fpr,
)
from modelward.defenses.preprocessing import AutoencoderReformer, train_autoencoder

FPR = 0.05


@dataclass
class Bench:
    """Two independently trained digit models, clean calibration / held-out sets, and adversarial inputs."""

    primary: TorchClassifier
    secondary: TorchClassifier
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    adversarial: torch.Tensor  # PGD-L∞ eps 0.1 on held-out digits: successful, clean input correct
    x_train: torch.Tensor

    def slack(self) -> float:
        """Three binomial standard deviations of an FPR measured on the held-out set."""
        return 3 * math.sqrt(FPR * (1 - FPR) / self.x_test.shape[0])


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small models run fastest on one thread, and the suite runs on two workers: don't oversubscribe."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def seeded_cnn(seed: int) -> SmallCNN:
    """A SmallCNN whose initial weights depend on ``seed`` only, not on what ran before in the session."""
    torch.manual_seed(seed)
    return SmallCNN()


@pytest.fixture(scope="module")
def bench(one_thread: None) -> Bench:
    """Models seeded 0 and 1; test digits split in half: calibration (clean) and held-out (clean + attacked)."""
    split = load_digits_images(seed=0)
    modules = [train_classifier(seeded_cnn(s), split.x_train, split.y_train, epochs=10, seed=s) for s in (0, 1)]
    assert all(accuracy(m, split.x_test, split.y_test) >= 0.95 for m in modules)
    primary, secondary = (TorchClassifier(m, split.input_shape) for m in modules)
    half = split.x_test.shape[0] // 2
    x_test, y_test = split.x_test[half:], split.y_test[half:]
    result = PGD(primary, steps=20, seed=0).perturb(x_test, y_test, 0.1)
    adversarial = result.adversarial[result.success & result.clean_correct]
    assert adversarial.shape[0] >= 50
    return Bench(primary, secondary, split.x_test[:half], split.y_test[:half], x_test, adversarial, split.x_train)


# --- thresholds and AUC: exact properties ----------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    scores=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=300),
    fpr=st.floats(min_value=0.001, max_value=0.5),
)
def test_threshold_never_exceeds_the_target_fpr_on_its_calibration_set(scores: list[int], fpr: float) -> None:
    values = torch.tensor(scores, dtype=torch.float64)  # many ties
    threshold = threshold_at_fpr(values, fpr)
    flagged = int((values > threshold).sum())
    assert flagged <= fpr * len(scores) + 1e-9
    if math.isfinite(threshold):
        assert threshold in scores


def test_threshold_controls_the_fpr_on_fresh_clean_scores_as_conformal_theory_says() -> None:
    # 20,000 independent calibrations of n = 100 scores; one fresh score each. P(fresh > t) = 5/101 exactly.
    generator = torch.Generator().manual_seed(0)
    calibration = torch.rand(20_000, 100, generator=generator, dtype=torch.float64)
    fresh = torch.rand(20_000, generator=generator, dtype=torch.float64)
    rank = math.ceil(101 * (1 - FPR))
    thresholds = calibration.sort(dim=1).values[:, rank - 1]
    assert threshold_at_fpr(calibration[0], FPR) == float(thresholds[0])
    observed = float((fresh > thresholds).double().mean())
    assert observed == pytest.approx(5 / 101, abs=0.005)  # ~3 Monte-Carlo standard deviations
    assert FPR >= 5 / 101


def test_high_confidence_threshold_bounds_the_true_fpr_with_that_probability() -> None:
    # uniform clean scores: the true FPR of threshold t is exactly 1 - t
    generator = torch.Generator().manual_seed(1)
    calibration = torch.rand(20_000, 100, generator=generator, dtype=torch.float64)
    threshold = threshold_at_fpr(calibration[0], FPR, confidence=0.9)
    rank = int((calibration[0] <= threshold).sum())
    assert rank == 99  # P(Bin(100, .95) >= 98) = 0.118 > 0.1 >= P(Bin(100, .95) >= 99) = 0.037
    thresholds = calibration.sort(dim=1).values[:, rank - 1]
    exceeded = float(((1 - thresholds) > FPR).double().mean())
    exact = 0.95**100 + 100 * 0.05 * 0.95**99
    assert exceeded == pytest.approx(exact, abs=0.005)
    assert exact <= 0.1


def test_threshold_is_infinite_when_too_few_scores_and_refuses_bad_rates() -> None:
    assert threshold_at_fpr(torch.arange(10.0), 0.05) == math.inf  # rank 11 of 10: flag nothing
    with pytest.raises(DetectorError, match="false-positive rate"):
        threshold_at_fpr(torch.arange(10.0), 0.0)
    with pytest.raises(DetectorError, match="at least one"):
        threshold_at_fpr(torch.empty(0), 0.1)
    with pytest.raises(DetectorError, match="confidence"):
        threshold_at_fpr(torch.arange(10.0), 0.1, confidence=1.0)
    assert threshold_at_fpr(torch.arange(20.0), 0.1, confidence=0.99) == math.inf


@settings(max_examples=50, deadline=None)
@given(
    clean=st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=40),
    adversarial=st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=40),
)
def test_roc_auc_matches_the_pairwise_definition(clean: list[int], adversarial: list[int]) -> None:
    pairs = [(1.0 if a > c else 0.5 if a == c else 0.0) for a in adversarial for c in clean]
    expected = sum(pairs) / len(pairs)
    assert roc_auc(torch.tensor(clean), torch.tensor(adversarial)) == pytest.approx(expected, abs=1e-12)


# --- the detectors on digits ----------------------------------------------------------------------


def test_feature_squeezing_holds_its_fpr_and_detects_adversarial_digits(bench: Bench) -> None:
    chosen = select_squeezers(bench.primary, bench.x_val, bench.y_val)
    assert "bit-depth-3" in chosen and "median-3x3" not in chosen  # 3×3 median costs digits >2 points
    detector = FeatureSqueezingDetector(bench.primary, chosen)
    detector.calibrate(bench.x_val, fpr=FPR)
    assert detector.calibration_fpr is not None and detector.calibration_fpr <= FPR  # exact, counted
    result = detector.evaluate(bench.x_test, bench.adversarial)
    assert result.fpr <= FPR + bench.slack()  # held-out: the conformal guarantee, up to sampling noise
    assert result.auc >= 0.85
    assert result.detection_rate >= result.fpr + 0.25

    # the high-confidence threshold: the held-out FPR, counted exactly, is within the target
    detector.calibrate(bench.x_val, fpr=FPR, confidence=0.95)
    strict = detector.evaluate(bench.x_test, bench.adversarial)
    assert strict.threshold >= result.threshold
    assert strict.fpr <= FPR
    assert strict.detection_rate >= 0.5

    bench.primary.reset_queries()
    detector.score(bench.x_test[:10])
    assert bench.primary.queries == 10 * (1 + len(chosen))


def test_feature_squeezing_with_xu_default_pair_is_weaker_when_a_squeezer_ruins_clean_accuracy(bench: Bench) -> None:
    pair = FeatureSqueezingDetector(bench.primary, default_squeezers(bench.primary, bits=2, kernel=3))
    pair.calibrate(bench.x_val, fpr=FPR)
    bits_only = FeatureSqueezingDetector(
        bench.primary, {"bit-depth-2": candidate_squeezers(bench.primary)["bit-depth-2"]}
    )
    bits_only.calibrate(bench.x_val, fpr=FPR)
    with_median = pair.evaluate(bench.x_test, bench.adversarial)
    without = bits_only.evaluate(bench.x_test, bench.adversarial)
    assert with_median.detection_rate < without.detection_rate


def test_disagreement_between_redundant_models_flags_adversarial_inputs(bench: Bench) -> None:
    detector = DisagreementDetector(bench.primary, bench.secondary)
    clean_rate = float(detector.disagree(bench.x_test).double().mean())
    adversarial_rate = float(detector.disagree(bench.adversarial).double().mean())
    assert clean_rate <= 0.06
    assert adversarial_rate >= clean_rate + 0.15
    detector.calibrate(bench.x_val, fpr=FPR)
    result = detector.evaluate(bench.x_test, bench.adversarial)
    assert result.fpr <= FPR + bench.slack()
    assert result.detection_rate >= result.fpr + 0.25


def test_autoencoder_reconstruction_error_separates_clean_from_adversarial(bench: Bench) -> None:
    autoencoder = train_autoencoder(bench.x_train, bench.primary.input_spec, epochs=8, seed=0)
    detector = ReconstructionErrorDetector(AutoencoderReformer(bench.primary, autoencoder))
    bench.primary.reset_queries()
    detector.calibrate(bench.x_val, fpr=FPR)
    assert bench.primary.queries == 0  # only the autoencoder runs
    result = detector.evaluate(bench.x_test, bench.adversarial)
    assert result.auc >= 0.8  # chance is 0.5
    assert result.fpr <= FPR + bench.slack()
    assert result.detection_rate >= result.fpr + 0.2


def test_detectors_refuse_misuse(bench: Bench) -> None:
    detector = FeatureSqueezingDetector(bench.primary)
    with pytest.raises(DetectorError, match="calibrate"):
        detector.detect(bench.x_test[:2])
    with pytest.raises(DetectorError, match="at least one squeezer"):
        FeatureSqueezingDetector(bench.primary, {})
    with pytest.raises(DetectorError, match="two models"):
        DisagreementDetector(bench.primary)
    other = TorchClassifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)), (1, 8, 8))
    with pytest.raises(DetectorError, match="share"):
        DisagreementDetector(bench.primary, other)
    with pytest.raises(DetectorError, match="no squeezer"):
        select_squeezers(bench.primary, bench.x_val, (bench.y_val + 1) % 10, max_accuracy_drop=-1.0)
