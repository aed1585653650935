"""Membership metrics on hand-made scores: exact TPR at fixed FPR, unresolvable rates, AUC, top-k, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from modelward.attacks.inference.metrics import membership_result, roc, tpr_at_fpr
from modelward.attacks.inference.plots import plot_roc
from modelward.core.errors import InputError


def _scores(members: list[float], nonmembers: list[float]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.array(members + nonmembers, dtype=np.float64)
    labels = np.array([True] * len(members) + [False] * len(nonmembers))
    return scores, labels


def _population(extra_high_nonmembers: int, n_nonmembers: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """100 members (20 at 10, 30 at 4, 50 at 0.5); non-members in [0, 1) plus a few at 5."""
    members = [10.0] * 20 + [4.0] * 30 + [0.5] * 50
    low = list(np.linspace(0.0, 0.999, n_nonmembers - extra_high_nonmembers))
    return _scores(members, low + [5.0] * extra_high_nonmembers)


def test_tpr_at_fpr_is_exact_not_interpolated() -> None:
    # One non-member above the 4.0 members: at 0.1% FPR (one false positive allowed of 1,000)
    # both the 10.0 and the 4.0 members are caught.
    scores, labels = _population(extra_high_nonmembers=1)
    result = membership_result("hand", scores, labels)
    low = result.tpr_at[0.001]
    assert low.tpr == pytest.approx(0.5)
    assert low.achieved_fpr == pytest.approx(0.001)
    assert low.threshold == pytest.approx(4.0)
    # Two such non-members: the 4.0 threshold costs two false positives, too many for 0.1%;
    # only the 10.0 members remain (an interpolating ROC would report something in between).
    scores, labels = _population(extra_high_nonmembers=2)
    result = membership_result("hand", scores, labels)
    assert result.tpr_at[0.001].tpr == pytest.approx(0.2)
    assert result.tpr_at[0.001].achieved_fpr == 0.0
    # At 1% (ten false positives) the 4.0 members are back, and the 0.5 members are not reached.
    assert result.tpr_at[0.01].tpr == pytest.approx(0.5)
    assert result.tpr_at[0.01].achieved_fpr <= 0.01


def test_ties_between_members_and_nonmembers_count_together() -> None:
    scores, labels = _scores([1.0] * 10 + [0.0] * 10, [1.0] + [0.0] * 999)
    assert membership_result("tie", scores, labels).tpr_at[0.001].tpr == pytest.approx(0.5)
    scores, labels = _scores([1.0] * 10 + [0.0] * 10, [1.0] * 2 + [0.0] * 998)
    assert membership_result("tie", scores, labels).tpr_at[0.001].tpr == 0.0


def test_too_few_nonmembers_make_the_rate_unresolvable() -> None:
    scores, labels = _population(extra_high_nonmembers=1, n_nonmembers=999)
    result = membership_result("small", scores, labels)
    low = result.tpr_at[0.001]
    assert low.tpr is None and not low.resolvable
    assert "999 non-members" in (low.reason or "") and "1000" in (low.reason or "")
    assert "unresolvable" in str(low)
    assert result.tpr_at[0.01].tpr == pytest.approx(0.5)  # 1% needs only 100
    assert result.summary()["tpr_at_fpr"]["0.001"]["tpr"] is None
    assert tpr_at_fpr(roc(scores, labels), 0.002).tpr is not None


def test_auc_balanced_accuracy_and_top_leaking() -> None:
    rng = np.random.default_rng(0)
    members = rng.normal(1.0, 1.0, 300)
    nonmembers = rng.normal(0.0, 1.0, 400)
    scores, labels = _scores(list(members), list(nonmembers))
    result = membership_result("gauss", torch.from_numpy(scores), torch.from_numpy(labels), top_k=5)
    assert result.auc == pytest.approx(roc_auc_score(labels, scores))
    assert 0.5 < result.balanced_accuracy < 1.0
    assert result.top_leaking == [int(i) for i in np.argsort(-members)[:5]]
    assert result.n_members == 300 and result.n_nonmembers == 400
    separable = membership_result("clean", *_scores([2.0, 3.0], [0.0, 1.0]))
    assert separable.auc == 1.0 and separable.balanced_accuracy == 1.0


def test_infinite_scores_keep_their_order() -> None:
    scores, labels = _scores([np.inf, 3.0], [-np.inf, 1.0])
    assert membership_result("inf", scores, labels).auc == 1.0


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.1, np.nan], [True, False]),
        ([0.1, 0.2], [True, True]),
        ([0.1, 0.2, 0.3], [True, False]),
        ([0.1, 0.2], [2, 0]),
    ],
)
def test_bad_inputs_are_input_errors(scores: list[float], labels: list[object]) -> None:
    with pytest.raises(InputError):
        membership_result("bad", np.array(scores), np.array(labels))


def test_fpr_outside_zero_one_is_refused() -> None:
    with pytest.raises(InputError):
        tpr_at_fpr(roc(*_scores([1.0], [0.0])), 0.0)


def test_plot_roc_writes_a_png(tmp_path: Path) -> None:
    scores, labels = _population(extra_high_nonmembers=1)
    first = membership_result("a", scores, labels)
    second = membership_result("b", -scores, labels)
    path = plot_roc([first, second], tmp_path / "roc.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError):
        plot_roc([], tmp_path / "none.png")
