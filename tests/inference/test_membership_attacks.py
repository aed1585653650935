"""Membership attacks on a deliberately overfit MLP: they separate members, and do not on unseen records."""

from __future__ import annotations

import pytest
import torch
from membership_world import world

from modelward.attacks.inference.base import LabelOnlyAttack, LossAttack, MembershipAttack
from modelward.attacks.inference.lira import LiRA
from modelward.attacks.inference.metrics import MembershipResult
from modelward.attacks.inference.rmia import RMIA
from modelward.attacks.inference.shadow import ShadowModelAttack
from modelward.classifiers.base import MissingCapabilityError
from modelward.classifiers.remote import RemoteClassifier
from modelward.classifiers.serve_local import LocalServer
from modelward.core.errors import InputError


def _attacks() -> dict[str, MembershipAttack]:
    w = world()
    target = w.target()
    return {
        "loss": LossAttack(target),
        "lira-online": LiRA(target, w.references),
        "lira-offline": LiRA(target, w.references, online=False),
        "rmia": RMIA(target, w.references),
        "shadow": ShadowModelAttack(target, w.references),
    }


@pytest.fixture(scope="module")
def results() -> dict[str, MembershipResult]:
    w = world()
    everyone = torch.arange(len(w.population))
    return {
        name: attack.evaluate(w.population.x, w.population.y, w.members, indices=everyone)
        for name, attack in _attacks().items()
    }


@pytest.fixture(scope="module")
def null_results() -> dict[str, MembershipResult]:
    """The same attacks on records the target never saw, half of them labelled 'members' at random."""
    w = world()
    unseen = (~w.members).nonzero().squeeze(1)
    unseen = unseen[torch.randperm(unseen.numel(), generator=torch.Generator().manual_seed(7))]
    fake = torch.zeros(unseen.numel(), dtype=torch.bool)
    fake[: unseen.numel() // 2] = True
    x, y = w.population.x[unseen], w.population.y[unseen]
    return {name: attack.evaluate(x, y, fake, indices=unseen) for name, attack in _attacks().items()}


def test_the_target_is_overfit() -> None:
    w = world()
    predicted = w.target_module(w.population.x).argmax(dim=1)
    correct = predicted == w.population.y
    assert float(correct[w.members].float().mean()) > float(correct[~w.members].float().mean()) + 0.1


@pytest.mark.parametrize(
    ("name", "floor"), [("loss", 0.57), ("lira-online", 0.65), ("lira-offline", 0.65), ("rmia", 0.65), ("shadow", 0.55)]
)
def test_attacks_separate_members_of_an_overfit_model(
    results: dict[str, MembershipResult], name: str, floor: float
) -> None:
    result = results[name]
    assert result.auc > floor, f"{result.attack}: AUC {result.auc:.3f}"
    assert result.n_nonmembers == 1000
    assert result.tpr_at[0.001].resolvable and result.tpr_at[0.01].resolvable
    assert result.queries >= 2000


@pytest.mark.parametrize("name", ["loss", "lira-online", "lira-offline", "rmia", "shadow"])
def test_attacks_do_not_separate_records_the_model_never_saw(
    null_results: dict[str, MembershipResult], name: str
) -> None:
    assert abs(null_results[name].auc - 0.5) < 0.07, f"{name}: AUC {null_results[name].auc:.3f} on unseen records"


def test_reference_attacks_beat_loss_at_low_fpr(results: dict[str, MembershipResult]) -> None:
    loss = results["loss"]
    for name in ("lira-online", "lira-offline", "rmia"):
        for fpr in (0.001, 0.01):
            ours, theirs = results[name].tpr(fpr), loss.tpr(fpr)
            assert ours is not None and theirs is not None
            assert ours > 3 * theirs and ours > fpr * 3, f"{name} TPR@{fpr}: {ours:.4f} vs LOSS {theirs:.4f}"


def test_lira_per_example_and_fixed_variance_both_run_and_differ() -> None:
    w = world()
    target = w.target()
    auto = LiRA(target, w.references)
    assert auto.fixed_variance  # 8 reference models < 64: the paper's global variance
    per_example = LiRA(target, w.references, fixed_variance=False)
    everyone = torch.arange(len(w.population))
    a = auto.infer(w.population.x, w.population.y, indices=everyone)
    b = per_example.infer(w.population.x, w.population.y, indices=everyone)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert not torch.allclose(a, b)
    assert per_example.label == "LiRA online" and auto.label == "LiRA online, fixed variance"


def test_attacks_are_deterministic() -> None:
    w = world()
    everyone = torch.arange(len(w.population))
    first = RMIA(w.target(), w.references, seed=4).infer(w.population.x, w.population.y, indices=everyone)
    second = RMIA(w.target(), w.references, seed=4).infer(w.population.x, w.population.y, indices=everyone)
    assert torch.equal(first, second)


def test_rmia_tunes_a_on_a_reference_model_and_counts_population_queries() -> None:
    w = world()
    target = w.target()
    attack = RMIA(target, w.references, z_count=300)
    assert attack.a in attack.a_scores and attack.a_scores[attack.a] == max(attack.a_scores.values())
    x, y = w.population.x[:50], w.population.y[:50]
    attack.infer(x, y, indices=torch.arange(50))
    assert attack.last_queries == 50 + 300  # the z's are queried once, on the first call
    attack.infer(x, y, indices=torch.arange(50))
    assert attack.last_queries == 50


def test_online_attacks_need_indices_and_indices_must_match_the_records() -> None:
    w = world()
    target = w.target()
    x, y = w.population.x[:10], w.population.y[:10]
    with pytest.raises(InputError, match="indices"):
        LiRA(target, w.references, online=True).infer(x, y)
    with pytest.raises(InputError, match="not the population records"):
        LiRA(target, w.references).infer(x, y, indices=torch.arange(1, 11))
    assert target.queries == 0  # refused before any target query
    scores = LiRA(target, w.references, online=False).infer(x, y)  # offline without indices: all OUT
    assert scores.shape == (10,) and target.queries == 10


def test_label_only_endpoint_refuses_score_attacks_at_construction_and_runs_label_only() -> None:
    w = world()
    with LocalServer(w.target(), output="labels") as server:
        remote = RemoteClassifier(
            server.url,
            output="labels",
            input_shape=w.population.input_shape,
            bounds=w.population.bounds,
            num_classes=w.population.num_classes,
        )
        for build in (
            lambda: LossAttack(remote),
            lambda: LiRA(remote, w.references),
            lambda: RMIA(remote, w.references),
            lambda: ShadowModelAttack(remote, w.references),
        ):
            with pytest.raises(MissingCapabilityError, match="scores"):
                build()
        assert remote.queries == 0
        gap = LabelOnlyAttack(remote).evaluate(w.population.x, w.population.y, w.members)
        assert gap.auc > 0.55
        assert gap.queries == len(w.population) and server.inputs == len(w.population)
        noisy = LabelOnlyAttack(remote, noise_queries=2, sigma=0.5)
        result = noisy.evaluate(w.population.x[:200], w.population.y[:200], w.members[:200])
        assert result.queries == 200 * 3
        assert result.attack.startswith("label-only (augmented")


def test_offline_rmia_with_two_reference_models_says_it_needs_more() -> None:
    from modelward.attacks.inference import RMIA, LocalEngine, reference_specs, train_reference_models
    from modelward.classifiers.models import MLP
    from modelward.classifiers.torch_adapter import TorchClassifier
    from modelward.core.errors import InputError
    from modelward.datasets.synthetic import make_tabular_population

    population = make_tabular_population(200, seed=1)
    params = {"in_features": 20, "num_classes": 10, "hidden": 8}
    references = train_reference_models(
        population, reference_specs(200, 2, "mlp", params, epochs=1), engine=LocalEngine(1)
    )
    target = TorchClassifier(MLP(**params), (20,), bounds=population.bounds)
    with pytest.raises(InputError, match="2 are too few"):
        RMIA(target, references, online=False, z_count=100)
