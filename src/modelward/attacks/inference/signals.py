"""Per-example membership signals, read from a model only through the :class:`Classifier` protocol.

Score-based signals start from the log-probabilities of every class: exact ``log_softmax`` of the
logits when the classifier offers gradients (a local model), else the logarithm of the returned
probabilities (a remote black box). From those come

* ``loss``: cross-entropy of the true class (LOSS attack, Yeom et al. 2018);
* ``confidence``: probability of the true class;
* ``phi``: LiRA's logit-scaled confidence φ = log p_y − log Σ_{j≠y} p_j (Carlini et al. 2022),
  computed as a difference of log-sum-exps so a confidence of 0.9999999 neither rounds to 1 nor
  loses its tail: its distribution over models is close to Gaussian, which LiRA relies on.

Label-only signals need only predicted labels: correctness, and the fraction of small
noise-perturbed copies still classified correctly (a robustness score that separates memorised
records from merely correct ones; Choquette-Choo et al. 2021). Every model call goes through the
classifier, so query budgets and counts (remote endpoints included) apply.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from modelward.classifiers.base import Capability, Classifier
from modelward.core.errors import InputError

SignalName = Literal["loss", "confidence", "phi"]
SIGNALS: tuple[SignalName, ...] = ("loss", "confidence", "phi")

# Log of the smallest positive float32 (2**-149): a returned probability of 0 is read as this, not -inf.
_TINY_LOG = -149 * math.log(2.0)


def check_labels(classifier: Classifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` as a long tensor of shape ``(N,)`` with valid class indices for ``x``, or an InputError."""
    labels = torch.as_tensor(y, device=x.device).long()
    if tuple(labels.shape) != (x.shape[0],):
        raise InputError(f"labels must have shape ({x.shape[0]},), got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classifier.num_classes):
        raise InputError(f"labels must lie in [0, {classifier.num_classes - 1}]")
    return labels


def log_probabilities(classifier: Classifier, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Log-probabilities ``(N, C)`` in float64: exact log-softmax of logits when available, else log of scores.

    Needs ``scores`` (or ``gradients``); counts N queries. Zero probabilities become the log of the
    smallest float32 (never -inf), so every later difference stays finite.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    use_logits = Capability.GRADIENTS in classifier.capabilities
    if not use_logits:
        classifier.require(Capability.SCORES, by="score-based membership signals")
    parts: list[torch.Tensor] = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size]
        if use_logits:
            with torch.no_grad():
                parts.append(torch.log_softmax(classifier.logits(chunk).double(), dim=1))
        else:
            probabilities = classifier.probabilities(chunk).double()
            parts.append(torch.log(probabilities).clamp_min(_TINY_LOG))
    if not parts:
        return torch.empty((0, classifier.num_classes), dtype=torch.float64)
    return torch.cat(parts)


def signal_from_log_probabilities(log_probs: torch.Tensor, y: torch.Tensor, signal: SignalName) -> torch.Tensor:
    """One signal per example from log-probabilities ``(..., N, C)`` and labels ``(N,)``; float64 ``(..., N)``."""
    index = y.long().view(*([1] * (log_probs.dim() - 2)), -1, 1).expand(*log_probs.shape[:-1], 1)
    true = log_probs.gather(-1, index).squeeze(-1)
    if signal == "loss":
        return -true
    if signal == "confidence":
        return true.exp()
    if signal == "phi":
        others = log_probs.scatter(-1, index, float("-inf"))
        return true - torch.logsumexp(others, dim=-1)
    raise InputError(f"unknown signal {signal!r}; known: {', '.join(SIGNALS)}")


def phi_from_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LiRA's φ straight from logits: z_y − logsumexp_{j≠y} z_j (identical to log p_y − log Σ_{j≠y} p_j)."""
    logits = logits.double()
    index = y.long().view(-1, 1)
    others = logits.scatter(1, index, float("-inf"))
    return logits.gather(1, index).squeeze(1) - torch.logsumexp(others, dim=1)


def score_signal(
    classifier: Classifier, x: torch.Tensor, y: torch.Tensor, signal: SignalName, *, batch_size: int = 1024
) -> torch.Tensor:
    """One score-based signal (``loss``, ``confidence`` or ``phi``) per example; counts N queries."""
    labels = check_labels(classifier, x, y)
    return signal_from_log_probabilities(log_probabilities(classifier, x, batch_size=batch_size), labels, signal)


def loss_signal(classifier: Classifier, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Cross-entropy of the true class per example (lower for members of an overfit model)."""
    return score_signal(classifier, x, y, "loss", batch_size=batch_size)


def confidence_signal(
    classifier: Classifier, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024
) -> torch.Tensor:
    """Probability of the true class per example."""
    return score_signal(classifier, x, y, "confidence", batch_size=batch_size)


def logit_scaled_confidence(
    classifier: Classifier, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024
) -> torch.Tensor:
    """LiRA's φ = log p_y − log Σ_{j≠y} p_j per example, computed stably."""
    return score_signal(classifier, x, y, "phi", batch_size=batch_size)


def correctness_signal(
    classifier: Classifier, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024
) -> torch.Tensor:
    """1.0 where the predicted label is the true one, else 0.0 (labels only; N queries)."""
    labels = check_labels(classifier, x, y)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    parts = [classifier.predict(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    predicted = torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
    return (predicted == labels).double()


def noisy_correctness_signal(
    classifier: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    queries: int = 10,
    sigma: float = 0.1,
    seed: int = 0,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Fraction of the clean input and ``queries`` Gaussian-perturbed copies (clipped to bounds) labelled correctly.

    Labels only; N × (1 + ``queries``) queries. Seeded: same call, same noise.
    """
    if queries < 0:
        raise InputError(f"queries must be >= 0, got {queries}")
    if not sigma > 0:
        raise InputError(f"sigma must be > 0, got {sigma}")
    total = correctness_signal(classifier, x, y, batch_size=batch_size)
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    spec = classifier.input_spec
    for _ in range(queries):
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        noisy = (x + sigma * noise).clamp(spec.lower, spec.upper)
        total = total + correctness_signal(classifier, noisy, y, batch_size=batch_size)
    return total / (1 + queries)
