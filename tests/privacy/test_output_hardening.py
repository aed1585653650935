"""Output hardening: every step keeps the label, has its stated form, and label-only stops score-based attacks."""

from __future__ import annotations

import pytest
import torch

from modelward.attacks.evasion.square import Square
from modelward.classifiers.base import (
    Capability,
    Classifier,
    InputSpec,
    MissingCapabilityError,
    QueryBudgetExceeded,
)
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.core.errors import InputError
from modelward.defenses.output_hardening import (
    GaussianNoise,
    HardenedClassifier,
    HardeningStep,
    LabelOnly,
    ReverseSigmoid,
    Rounding,
    TopK,
    parse_steps,
)

CLASSES = 10


class TableClassifier(Classifier):
    """Scores from a fixed table: input ``i`` (a 1-vector) gets row ``i``. Lets tests choose hard distributions."""

    def __init__(self, table: torch.Tensor, capabilities: set[Capability] | None = None) -> None:
        caps = capabilities if capabilities is not None else {Capability.SCORES, Capability.LABELS}
        super().__init__(InputSpec((1,), 0.0, float(table.shape[0])), table.shape[1], caps)
        self.table = table

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()]

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()].argmax(dim=1)


def _table(n: int = 3000, seed: int = 0) -> torch.Tensor:
    """Peaked, flat and near-tied distributions over ten classes."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for concentration in (0.1, 1.0, 10.0):
            rows.append(torch.distributions.Dirichlet(torch.full((CLASSES,), concentration)).sample((n // 3,)))
    near_tie = torch.full((n // 3, CLASSES), 0.02)
    near_tie[:, 3] = 0.4
    near_tie[:, 7] = 0.4 - torch.rand(n // 3, generator=generator) * 1e-3
    rows.append(near_tie / near_tie.sum(dim=1, keepdim=True))
    confident = torch.full((50, CLASSES), 1e-7)
    confident[:, 5] = 1.0
    rows.append(confident / confident.sum(dim=1, keepdim=True))
    return torch.cat(rows).to(torch.float32)


@pytest.fixture(scope="module")
def table() -> torch.Tensor:
    return _table()


def _inputs(table: torch.Tensor) -> torch.Tensor:
    return torch.arange(table.shape[0], dtype=torch.float32).unsqueeze(1)


STEPS: list[list[HardeningStep]] = [
    [TopK(1)],
    [TopK(3)],
    [TopK(3, renormalise=False)],
    [GaussianNoise(0.05, seed=1)],
    [GaussianNoise(0.5, seed=2)],
    [ReverseSigmoid()],
    [ReverseSigmoid(beta=0.7, gamma=0.4)],
    [ReverseSigmoid(beta=3.0, gamma=2.0)],
    [ReverseSigmoid(), GaussianNoise(0.1, seed=3), TopK(4)],
]


@pytest.mark.parametrize("steps", STEPS, ids=lambda steps: "+".join(s.kind for s in steps))
def test_hardening_keeps_the_argmax_label(table: torch.Tensor, steps: list[HardeningStep]) -> None:
    inner = TableClassifier(table)
    hardened = HardenedClassifier(inner, steps)
    x = _inputs(table)
    out = hardened.probabilities(x)
    assert out.shape == table.shape
    assert torch.equal(out.argmax(dim=1), table.argmax(dim=1))
    assert bool(((out >= 0) & (out <= 1)).all())
    assert torch.equal(hardened.predict(x), table.argmax(dim=1))


def test_noise_and_reverse_sigmoid_would_flip_labels_without_the_guard(table: torch.Tensor) -> None:
    """The guard is not idle: the raw perturbations do change some top-1 labels on these distributions."""
    labels = table.argmax(dim=1)
    y = table.clamp(1e-9, 1 - 1e-9)
    raw = (table - 3.0 * (torch.sigmoid(2.0 * torch.logit(y)) - 0.5)).clamp(0, 1)
    assert bool((raw.argmax(dim=1) != labels).any())
    noisy = table + 0.5 * torch.randn(table.shape, generator=torch.Generator().manual_seed(2))
    assert bool((noisy.argmax(dim=1) != labels).any())


@pytest.mark.parametrize("decimals", [1, 2])
def test_rounding_has_the_stated_form_and_keeps_the_label_maximal(table: torch.Tensor, decimals: int) -> None:
    hardened = HardenedClassifier(TableClassifier(table), [Rounding(decimals)])
    out = hardened.probabilities(_inputs(table))
    scaled = out.double() * 10**decimals
    assert torch.allclose(scaled, scaled.round(), atol=1e-4)
    assert torch.allclose(out, table, atol=0.5 * 10**-decimals + 1e-6)
    labels = table.argmax(dim=1)
    label_values = out.gather(1, labels.unsqueeze(1)).squeeze(1)
    assert torch.equal(label_values, out.max(dim=1).values)  # the label is always among the maxima
    # the documented exception: at one decimal the near-tied rows tie, and argmax may pick the other class
    ties = (out == out.max(dim=1, keepdim=True).values).sum(dim=1) > 1
    assert decimals == 2 or bool(ties.any())


def test_top_k_zeroes_all_but_k_and_renormalises_or_not(table: torch.Tensor) -> None:
    x = _inputs(table)
    positive = table[:2000]  # rows with every probability > 0
    kept = HardenedClassifier(TableClassifier(table), [TopK(3)]).probabilities(x)[:2000]
    raw = HardenedClassifier(TableClassifier(table), [TopK(3, renormalise=False)]).probabilities(x)[:2000]
    assert bool(((kept > 0).sum(dim=1) == 3).all())
    assert torch.allclose(kept.sum(dim=1), torch.ones(2000), atol=1e-5)
    top_values, top_index = positive.topk(3, dim=1)
    assert torch.equal(raw.gather(1, top_index), top_values)  # unnormalised: the model's own values
    assert torch.allclose(raw.sum(dim=1), top_values.sum(dim=1))
    assert torch.equal(kept.topk(3, dim=1).indices.sort(dim=1).values, top_index.sort(dim=1).values)
    one_hot = HardenedClassifier(TableClassifier(table), [TopK(1)]).probabilities(x)
    assert torch.equal(one_hot, torch.nn.functional.one_hot(table.argmax(dim=1), CLASSES).float())


def test_top_k_on_rows_with_no_mass_left_serves_the_label_one_hot() -> None:
    rows = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.1, 0.6, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([2, 1, 0])
    out = TopK(2).apply(rows, labels)
    expected = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.6 / 0.9, 0.3 / 0.9, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(out, expected)
    assert torch.equal(
        TopK(2, renormalise=False).apply(rows, labels), torch.tensor([[0.0] * 4, [0, 0.6, 0.3, 0], [0.0] * 4])
    )


def test_reverse_sigmoid_follows_the_formula_and_perturbs(table: torch.Tensor) -> None:
    beta, gamma = 0.7, 0.4
    out = HardenedClassifier(TableClassifier(table), [ReverseSigmoid(beta, gamma)]).probabilities(_inputs(table))
    y = table.clamp(1e-9, 1 - 1e-9)
    expected = (table - beta * (torch.sigmoid(gamma * torch.log(y / (1 - y))) - 0.5)).clamp(0, 1)
    expected = expected / expected.sum(dim=1, keepdim=True)
    unswapped = expected.argmax(dim=1) == table.argmax(dim=1)
    assert unswapped.float().mean() > 0.5
    assert torch.allclose(out[unswapped], expected[unswapped], atol=1e-6)
    assert torch.allclose(out.sum(dim=1), torch.ones(table.shape[0]), atol=1e-5)
    assert float((out - table).abs().sum(dim=1).mean()) > 0.2  # a real perturbation, not a rounding error


def test_gaussian_noise_is_seeded_fresh_per_query_and_resettable(table: torch.Tensor) -> None:
    x = _inputs(table)[:100]
    first = HardenedClassifier(TableClassifier(table), [GaussianNoise(0.1, seed=4)])
    second = HardenedClassifier(TableClassifier(table), [GaussianNoise(0.1, seed=4)])
    a, b = first.probabilities(x), second.probabilities(x)
    assert torch.equal(a, b)
    again = first.probabilities(x)
    assert not torch.equal(a, again)  # the stream advances: repeated queries get fresh noise
    first.reset()
    assert torch.equal(first.probabilities(x), a)
    assert not torch.allclose(a, table[:100], atol=1e-3)
    assert torch.allclose(a.sum(dim=1), torch.ones(100), atol=1e-5)


def test_label_only_refuses_scores_and_score_based_attacks(table: torch.Tensor) -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, CLASSES))
    inner = TorchClassifier(module, (1, 8, 8))
    hardened = HardenedClassifier(inner, [LabelOnly()])
    assert hardened.capabilities == frozenset({Capability.LABELS}) and hardened.label_only
    x = torch.rand(5, 1, 8, 8)
    with pytest.raises(MissingCapabilityError, match="scores"):
        hardened.probabilities(x)
    with pytest.raises(MissingCapabilityError, match="gradients"):
        hardened.logits(x)
    with pytest.raises(MissingCapabilityError, match="scores"):
        Square(hardened, max_queries=10)
    with pytest.raises(MissingCapabilityError, match="scores"):
        hardened.require(Capability.SCORES, by="score-based membership inference")
    assert torch.equal(hardened.predict(x), inner.predict(x))
    Square(inner, max_queries=10)  # the unhardened model is attackable


def test_score_hardening_drops_gradients_but_keeps_scores(table: torch.Tensor) -> None:
    hardened = HardenedClassifier(TableClassifier(table), [Rounding(2)])
    assert hardened.capabilities == frozenset({Capability.SCORES, Capability.LABELS})
    with pytest.raises(MissingCapabilityError, match="gradients"):
        hardened.logits(_inputs(table)[:3])


def test_queries_count_on_wrapper_and_inner_and_budgets_hold(table: torch.Tensor) -> None:
    inner = TableClassifier(table)
    hardened = HardenedClassifier(inner, [TopK(2)], query_budget=30)
    x = _inputs(table)[:10]
    hardened.probabilities(x)
    hardened.predict(x)
    assert hardened.queries == 20 and inner.queries == 20
    with pytest.raises(QueryBudgetExceeded):
        hardened.probabilities(_inputs(table)[:11])
    assert inner.queries == 20  # refused before reaching the model


def test_parse_steps_and_invalid_configurations(table: torch.Tensor) -> None:
    steps = parse_steps(
        [{"kind": "reverse_sigmoid", "beta": 0.5}, {"kind": "top_k", "k": 2}, {"kind": "rounding", "decimals": 3}]
    )
    assert [type(s) for s in steps] == [ReverseSigmoid, TopK, Rounding]
    assert steps[0] == ReverseSigmoid(beta=0.5, gamma=0.1)
    with pytest.raises(InputError, match="kind"):
        parse_steps([{"kind": "blur"}])
    with pytest.raises(InputError, match="top_k"):
        parse_steps([{"kind": "top_k", "k": 2, "j": 1}])
    for bad in (lambda: TopK(0), lambda: Rounding(-1), lambda: GaussianNoise(0.0), lambda: ReverseSigmoid(beta=0)):
        with pytest.raises(InputError):
            bad()
    with pytest.raises(InputError, match="label_only"):
        HardenedClassifier(TableClassifier(table), [LabelOnly(), TopK(2)])
    labels_only = TableClassifier(table, {Capability.LABELS})
    with pytest.raises(MissingCapabilityError, match="scores"):
        HardenedClassifier(labels_only, [TopK(2)])
    assert HardenedClassifier(labels_only, [LabelOnly()]).label_only
