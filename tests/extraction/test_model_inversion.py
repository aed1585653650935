"""MI-Face model inversion: reconstructions resemble the class means more than noise does, within bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from extraction_helpers import DigitsTarget, LabelsOnly, ScoresOnly, trained_digits_target

from modelward.attacks.inversion import (
    ModelInversion,
    class_means,
    global_ssim,
    reconstruction_similarity,
    total_variation,
)
from modelward.classifiers.base import MissingCapabilityError
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.core.errors import InputError

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits_target() -> DigitsTarget:
    return trained_digits_target()


def test_white_box_inversion_recovers_class_representatives(digits_target: DigitsTarget, tmp_path: Path) -> None:
    target = TorchClassifier(digits_target.module, SHAPE)
    result = ModelInversion(steps=200).invert(
        target, reference_x=digits_target.train_x, reference_y=digits_target.train_y
    )
    assert result.gradient == "white-box" and result.classes == list(range(10))
    assert result.reconstructions.shape == (10, *SHAPE)
    assert float(result.reconstructions.min()) >= 0.0 and float(result.reconstructions.max()) <= 1.0
    assert result.queries == target.queries > 0
    # the target is confident on what it was inverted for
    with torch.no_grad():
        predicted = digits_target.module(result.reconstructions).argmax(1)
    assert predicted.tolist() == result.classes
    similarity = result.similarity
    assert similarity is not None
    assert similarity.mean > similarity.random + 0.15, similarity
    assert similarity.match_rate > 2 * similarity.chance
    assert similarity.ssim > similarity.random_ssim
    assert similarity.meaningful and similarity.advantage == pytest.approx(similarity.mean - similarity.random)
    path = result.plot(tmp_path / "inversion.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"


def test_regularised_inversion_with_denoising_stays_in_bounds(digits_target: DigitsTarget) -> None:
    target = TorchClassifier(digits_target.module, SHAPE)
    result = ModelInversion(steps=60, tv_weight=0.01, l2_weight=0.01, denoise_every=10, start="middle").invert(
        target, [3, 7]
    )
    assert result.classes == [3, 7] and result.similarity is None
    assert float(result.reconstructions.min()) >= 0.0 and float(result.reconstructions.max()) <= 1.0
    assert max(result.steps) <= 60 and result.queries == target.queries <= 2 * 60


def test_zeroth_order_inversion_counts_every_query_and_respects_its_cap(digits_target: DigitsTarget) -> None:
    target = ScoresOnly(digits_target.module, SHAPE)
    inversion = ModelInversion(steps=500, samples=10, max_queries=21 * 40, seed=1)
    result = inversion.invert(target, reference_x=digits_target.train_x, reference_y=digits_target.train_y)
    assert result.gradient == "zeroth-order"
    assert result.queries == target.queries <= 10 * 21 * 40
    assert max(result.steps) <= 40
    assert float(result.reconstructions.min()) >= 0.0 and float(result.reconstructions.max()) <= 1.0
    similarity = result.similarity
    assert similarity is not None and similarity.mean > similarity.random + 0.1, similarity


def test_inversion_needs_gradients_or_scores(digits_target: DigitsTarget) -> None:
    with pytest.raises(MissingCapabilityError, match="scores"):
        ModelInversion(steps=5).invert(LabelsOnly(digits_target.module, SHAPE))
    with pytest.raises(MissingCapabilityError, match="gradients"):
        ModelInversion(steps=5, gradient="white-box").invert(ScoresOnly(digits_target.module, SHAPE))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": 0}, "steps"),
        ({"step_size": 0.0}, "step_size"),
        ({"tv_weight": -1.0}, "tv_weight"),
        ({"start": "random"}, "start"),
        ({"gradient": "magic"}, "gradient"),
        ({"max_queries": 0}, "max_queries"),
        ({"sigma": float("nan")}, "sigma"),
    ],
)
def test_bad_inversion_parameters_are_input_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        ModelInversion(**options)  # type: ignore[arg-type]


def test_bad_classes_and_references_are_input_errors(digits_target: DigitsTarget) -> None:
    target = TorchClassifier(digits_target.module, SHAPE)
    with pytest.raises(InputError, match="classes"):
        ModelInversion(steps=2).invert(target, [3, 3])
    with pytest.raises(InputError, match="classes"):
        ModelInversion(steps=2).invert(target, [10])
    with pytest.raises(InputError, match="together"):
        ModelInversion(steps=2).invert(target, reference_x=digits_target.train_x)
    with pytest.raises(InputError, match="no example of class"):
        class_means(digits_target.train_x[:5], torch.zeros(5, dtype=torch.long), [0, 1])


def test_similarity_measures() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 8, 8, generator=generator)
    assert torch.allclose(global_ssim(images.flatten(1), images.flatten(1), 1.0), torch.ones(4, dtype=images.dtype))
    assert torch.equal(total_variation(torch.full((2, 1, 8, 8), 0.3)), torch.zeros(2))
    stripes = torch.zeros(1, 1, 8, 8)
    stripes[..., ::2] = 1.0
    assert float(total_variation(stripes)[0]) == pytest.approx(8 * 7)
    # the means themselves are perfect reconstructions; their negatives are the worst
    same = reconstruction_similarity(images, images, classes=[5, 6, 7, 8])
    assert same.mean == pytest.approx(1.0) and same.match_rate == 1.0 and same.classes == [5, 6, 7, 8]
    opposite = reconstruction_similarity(1 - images, images)
    assert opposite.mean == pytest.approx(-1.0) and not opposite.meaningful
