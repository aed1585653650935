"""Progress bars: drawn on a terminal, absent when piped, and fed by the capabilities' callbacks."""

from __future__ import annotations

import io

import torch

from modelward.attacks.evasion.fgsm import FGSM
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.cli.progress import progress_bar
from modelward.core.progress import scaled


def test_no_bar_when_the_stream_is_not_a_terminal() -> None:
    with progress_bar("work", stream=io.StringIO()) as progress:
        assert progress is None


def test_forced_bar_draws_the_description_and_the_count() -> None:
    stream = io.StringIO()
    with progress_bar("attacking", stream=stream, force=True) as progress:
        assert progress is not None
        progress(3, 4)
    text = stream.getvalue()
    assert "attacking" in text
    assert "3/4" in text


def test_scaled_places_a_part_inside_the_whole() -> None:
    heard: list[tuple[int, int]] = []
    part = scaled(lambda done, total: heard.append((done, total)), 10, 30)
    assert part is not None
    part(5, 10)
    assert heard == [(15, 30)]
    assert scaled(None, 0, 1) is None


def test_a_sweep_reports_every_sample_of_every_epsilon_once_in_order() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    classifier = TorchClassifier(module, (4,), num_classes=3)
    x, y = torch.rand(7, 4), torch.randint(0, 3, (7,))
    heard: list[tuple[int, int]] = []
    FGSM(classifier).sweep(x, y, [0.1, 0.2, 0.3], batch_size=3, progress=lambda d, t: heard.append((d, t)))
    assert [d for d, _ in heard] == [3, 6, 7, 10, 13, 14, 17, 20, 21]
    assert {t for _, t in heard} == {21}
