"""LiRA against a model behind HTTP: every query is counted, by the client and by the server, exactly."""

from __future__ import annotations

import pytest
import torch
from membership_world import world

from modelward.attacks.inference.base import LossAttack
from modelward.attacks.inference.lira import LiRA
from modelward.classifiers.base import QueryBudgetExceeded
from modelward.classifiers.remote import RemoteClassifier
from modelward.classifiers.serve_local import LocalServer


def _remote(url: str, budget: int | None = None) -> RemoteClassifier:
    population = world().population
    return RemoteClassifier(
        url,
        output="scores",
        input_shape=population.input_shape,
        bounds=population.bounds,
        num_classes=population.num_classes,
        query_budget=budget,
        batch_size=128,
    )


def test_lira_against_a_remote_classifier_counts_queries_exactly() -> None:
    w = world()
    chosen = torch.arange(0, len(w.population), 5)  # 400 records, members and non-members
    x, y, members = w.population.x[chosen], w.population.y[chosen], w.members[chosen]
    with LocalServer(w.target(), output="scores") as server:
        remote = _remote(server.url, budget=len(chosen))
        result = LiRA(remote, w.references).evaluate(x, y, members, indices=chosen)
        assert result.queries == len(chosen)
        assert remote.queries == len(chosen)
        assert server.inputs == len(chosen)
        assert remote.requests_sent == server.requests == -(-len(chosen) // 128)
        # The same scores as the white-box target gives (float32 probabilities on the wire).
        local = LiRA(w.target(), w.references).infer(x, y, indices=chosen)
        assert torch.corrcoef(torch.stack([result.scores, local]))[0, 1] > 0.999
        assert result.auc > 0.6
        # The budget is spent: one more query is refused before it is sent.
        with pytest.raises(QueryBudgetExceeded):
            LossAttack(remote).infer(x[:1], y[:1])
        assert server.inputs == len(chosen)
