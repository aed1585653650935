"""Input-sanitation defenses as classifiers: bit-depth reduction, median smoothing, a MagNet-style autoencoder.

Each sanitiser wraps another :class:`~modelward.classifiers.base.Classifier` and is itself one, so
every attack runs against "defense + model" through the same protocol (bounds, capabilities,
query counting). Two views of the same defense exist, and the difference is the whole point:

* **The defense itself** (``defense.logits`` / ``probabilities`` / ``predict``): what a deployed
  system computes. Its gradient is the *real* end-to-end autograd gradient of
  ``model(sanitise(x))``. For bit-depth reduction that gradient is zero almost everywhere
  (rounding is flat), so a plain gradient attack run against it stalls: **its gradients are masked**
  and any robustness it reports is an artefact, not security. For a randomised variant
  (``noise > 0``) it is the gradient of one random draw, which is noisy.
* **The adaptive view** (``defense.adaptive()``): what an attacker who knows the defense uses, and
  what every robustness claim about a sanitiser must be measured with. Its forward values are the
  defense's own (the same sanitised input reaches the model); its backward pass is BPDA (Athalye
  et al., 2018): ``backward="identity"`` passes the gradient straight through the sanitiser (the
  default for bit-depth reduction, whose real gradient is useless); ``backward="exact"``
  differentiates the real transform (the default for median smoothing and the autoencoder, whose
  gradients are informative). For a randomised sanitiser it applies EOT: the logits are the log of
  the class probabilities averaged over ``eot_samples`` independent draws, so the gradient is that
  of the expected classifier.

The autoencoder's reconstruction error is also a detector score (see ``defenses/detection.py``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal, cast

import torch
from torch import nn
from torch.nn import functional as F

from modelward.classifiers.base import Capability, Classifier, ClassifierError, InputSpec

Backward = Literal["identity", "exact"]


class InputSanitizer(Classifier, ABC):
    """Defense + model as one classifier: every input is sanitised, then the wrapped classifier answers.

    ``noise > 0`` makes the defense randomised: uniform noise in ``[-noise, noise]`` (clipped to the
    bounds) is added before sanitising, drawn afresh on every call from a seeded generator. The
    wrapper offers the wrapped classifier's capabilities; queries are counted here *and* by the
    wrapped classifier (whose budget, if any, applies).
    """

    name: ClassVar[str] = "sanitizer"
    default_backward: ClassVar[Backward] = "identity"

    def __init__(
        self, classifier: Classifier, *, noise: float = 0.0, seed: int = 0, query_budget: int | None = None
    ) -> None:
        if noise < 0:
            raise ClassifierError(f"noise must be >= 0, got {noise}")
        super().__init__(classifier.input_spec, classifier.num_classes, classifier.capabilities, query_budget)
        self.classifier = classifier
        self.noise = float(noise)
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def randomised(self) -> bool:
        """Whether the defense draws fresh randomness on every call (EOT applies)."""
        return self.noise > 0

    @abstractmethod
    def sanitize(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic transform, in bounds; autograd through it is the defense's real gradient."""

    def randomise(self, x: torch.Tensor) -> torch.Tensor:
        """One random draw of the defense's input noise (identity when ``noise == 0``)."""
        if not self.randomised:
            return x
        spec = self.input_spec
        uniform = torch.rand(x.shape, generator=self._generator, dtype=x.dtype).to(x.device)
        return (x + (2.0 * uniform - 1.0) * self.noise).clamp(spec.lower, spec.upper)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """What reaches the model: ``sanitize(randomise(x))`` with its real (possibly masked) gradient."""
        return self.sanitize(self.randomise(x))

    def bpda(self, x: torch.Tensor, backward: Backward | None = None) -> torch.Tensor:
        """The transform's forward value with a BPDA backward pass (identity, or the exact transform).

        The random noise, if any, is passed straight through (its clipping does not cut the
        gradient), so both modes see through the randomisation; EOT is applied by the adaptive view.
        """
        mode = backward or self.default_backward
        with torch.no_grad():
            noisy = self.randomise(x)
        through = x + (noisy - x).detach()
        if mode == "exact":
            return self.sanitize(through)
        if mode != "identity":
            raise ClassifierError(f"unknown BPDA backward mode {mode!r}; use 'identity' or 'exact'")
        with torch.no_grad():
            target = self.sanitize(noisy)
        return through + (target - through).detach()

    def adaptive(self, *, eot_samples: int = 16, backward: Backward | None = None) -> AdaptiveView:
        """The attacker's view of this defense (BPDA backward, EOT over randomness); see the module doc."""
        return AdaptiveView(self, eot_samples=eot_samples, backward=backward)

    # --- the defense's real answers --------------------------------------------------
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.logits(self.transform(x))

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.probabilities(self.transform(x))

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.predict(self.transform(x))


class AdaptiveView(Classifier):
    """A sanitiser as an adaptive attacker sees it: the defense's forward values, BPDA gradients, EOT.

    For a deterministic sanitiser its predictions are exactly the defense's, so an attack's success
    mask against this view holds against the defense. For a randomised one its logits are
    ``log mean_k softmax(model(T_k(x)))`` over ``eot_samples`` draws (the expected classifier); re-score
    adversarial inputs with the defense itself (``defense.predict``) to report robust accuracy.
    Each call of N inputs counts N queries here and ``eot_samples × N`` on the wrapped model.
    """

    def __init__(self, defense: InputSanitizer, *, eot_samples: int = 16, backward: Backward | None = None) -> None:
        if eot_samples < 1:
            raise ClassifierError(f"eot_samples must be >= 1, got {eot_samples}")
        if backward not in (None, "identity", "exact"):
            raise ClassifierError(f"unknown BPDA backward mode {backward!r}; use 'identity' or 'exact'")
        defense.classifier.require(Capability.GRADIENTS, by=f"the adaptive (BPDA) view of {defense.name}")
        capabilities = {Capability.GRADIENTS, Capability.SCORES, Capability.LABELS}
        super().__init__(defense.input_spec, defense.num_classes, capabilities)
        self.defense = defense
        self.eot_samples = eot_samples if defense.randomised else 1
        self.backward: Backward = backward or defense.default_backward

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        k = self.eot_samples
        batch = x if k == 1 else x.repeat(k, *([1] * (x.dim() - 1)))
        logits = self.defense.classifier.logits(self.defense.bpda(batch, self.backward))
        if k == 1:
            return logits
        log_probs = torch.log_softmax(logits, dim=1).view(k, x.shape[0], -1)
        return torch.logsumexp(log_probs, dim=0) - math.log(k)

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x).argmax(dim=1)


# --- the sanitisers ---------------------------------------------------------------------


def reduce_bit_depth(x: torch.Tensor, bits: int, lower: float = 0.0, upper: float = 1.0) -> torch.Tensor:
    """Quantise values in ``[lower, upper]`` to ``2**bits`` evenly spaced levels (Xu et al., 2018)."""
    levels = (1 << bits) - 1
    unit = (x - lower) / (upper - lower)
    return (torch.round(unit * levels) / levels * (upper - lower) + lower).clamp(lower, upper)


def median_smooth(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """k×k median filter over the last two axes of ``(N, C, H, W)``, edges replicated, via ``Tensor.unfold``.

    An even kernel covers ``k//2`` pixels below/right and ``(k-1)//2`` above/left and averages the
    two middle values (the true median).
    """
    if x.dim() != 4:
        raise ClassifierError(f"median smoothing needs (N, C, H, W) images, got shape {tuple(x.shape)}")
    before, after = (kernel - 1) // 2, kernel // 2
    padded = F.pad(x, (before, after, before, after), mode="replicate") if kernel > 1 else x
    patches = padded.unfold(2, kernel, 1).unfold(3, kernel, 1)  # (N, C, H, W, k, k), a view
    flat = patches.reshape(*x.shape, kernel * kernel)
    if kernel % 2 == 1:
        return flat.median(dim=-1).values
    ordered = flat.sort(dim=-1).values
    middle = kernel * kernel // 2
    return (ordered[..., middle - 1] + ordered[..., middle]) / 2


class BitDepthReduction(InputSanitizer):
    """Feature squeezing by colour-depth reduction; its real gradient is zero almost everywhere (masked).

    Adaptive view: BPDA with the identity (the straight-through estimator).
    """

    name: ClassVar[str] = "bit-depth reduction"
    default_backward: ClassVar[Backward] = "identity"

    def __init__(self, classifier: Classifier, bits: int = 3, *, noise: float = 0.0, seed: int = 0) -> None:
        if not 1 <= bits <= 16:
            raise ClassifierError(f"bits must be in 1..16, got {bits}")
        super().__init__(classifier, noise=noise, seed=seed)
        self.bits = bits

    def sanitize(self, x: torch.Tensor) -> torch.Tensor:
        """Quantise to ``2**bits`` levels within the classifier's bounds."""
        return reduce_bit_depth(x, self.bits, self.input_spec.lower, self.input_spec.upper)


class MedianSmoothing(InputSanitizer):
    """Spatial k×k median smoothing of images; its real gradient is sparse (routed to each window's median).

    The median is piecewise linear, so its real gradient is informative, not masked: the adaptive
    view differentiates it exactly by default. On the digits SmallCNN the exact gradient beat BPDA
    with the identity (``backward="identity"``) at every epsilon tried, so exact is the stronger
    default; a careful evaluation still takes the per-sample worst case of both.
    """

    name: ClassVar[str] = "median smoothing"
    default_backward: ClassVar[Backward] = "exact"

    def __init__(self, classifier: Classifier, kernel: int = 2, *, noise: float = 0.0, seed: int = 0) -> None:
        if len(classifier.input_spec.shape) != 3:
            raise ClassifierError(f"median smoothing needs (C, H, W) images, got {classifier.input_spec.shape}")
        if not 1 <= kernel <= min(classifier.input_spec.shape[1:]):
            raise ClassifierError(f"kernel must be in 1..{min(classifier.input_spec.shape[1:])}, got {kernel}")
        super().__init__(classifier, noise=noise, seed=seed)
        self.kernel = kernel

    def sanitize(self, x: torch.Tensor) -> torch.Tensor:
        """Median of each k×k window."""
        return median_smooth(x, self.kernel)


# --- the MagNet-style autoencoder -----------------------------------------------------


class ConvAutoencoder(nn.Module):
    """A small convolutional autoencoder for ``(C, H, W)`` images in ``[lower, upper]`` (H, W even).

    Encoder: conv, ReLU, 2×2 average pooling, conv to a ``code_channels`` × H/2 × W/2 code;
    decoder: nearest upsampling, conv, ReLU, conv, sigmoid rescaled to the bounds.
    """

    def __init__(
        self, in_channels: int = 1, *, width: int = 32, code_channels: int = 8, lower: float = 0.0, upper: float = 1.0
    ) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "width": width, "code_channels": code_channels}
        self.lower, self.upper = float(lower), float(upper)
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(width, code_channels, 3, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(code_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, in_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct raw inputs (in bounds) as raw outputs (in bounds)."""
        span = self.upper - self.lower
        code = self.encoder((x - self.lower) / span)
        return torch.sigmoid(self.decoder(code)) * span + self.lower


class DenseAutoencoder(nn.Module):
    """A small fully connected autoencoder for flat ``(F,)`` records in ``[lower, upper]``."""

    def __init__(self, in_features: int, *, hidden: int = 32, code: int = 8, lower: float = 0.0, upper: float = 1.0):
        super().__init__()
        self.config = {"in_features": in_features, "hidden": hidden, "code": code}
        self.lower, self.upper = float(lower), float(upper)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, code),
            nn.ReLU(),
            nn.Linear(code, hidden),
            nn.ReLU(),
            nn.Linear(hidden, in_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct raw records (in bounds) as raw outputs (in bounds)."""
        span = self.upper - self.lower
        return torch.sigmoid(self.net((x - self.lower) / span)) * span + self.lower


def build_autoencoder(input_spec: InputSpec) -> nn.Module:
    """The default autoencoder for an input spec: convolutional for even-sided images, dense for records."""
    shape = input_spec.shape
    if len(shape) == 3 and shape[1] % 2 == 0 and shape[2] % 2 == 0:
        return ConvAutoencoder(shape[0], lower=input_spec.lower, upper=input_spec.upper)
    if len(shape) == 1:
        return DenseAutoencoder(shape[0], lower=input_spec.lower, upper=input_spec.upper)
    raise ClassifierError(f"no default autoencoder for inputs of shape {shape}; pass your own module")


def train_autoencoder(
    x: torch.Tensor,
    input_spec: InputSpec,
    *,
    module: nn.Module | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-2,
    noise: float = 0.05,
    seed: int = 0,
) -> nn.Module:
    """Train an autoencoder on clean inputs (MSE; Gaussian ``noise`` std on the input makes it denoise).

    Trains only on clean data, as MagNet does: it never sees an adversarial example. Returns the
    module in evaluation mode.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    autoencoder = module if module is not None else build_autoencoder(input_spec)
    optimiser = torch.optim.Adam(autoencoder.parameters(), lr=lr)
    span = input_spec.upper - input_spec.lower
    autoencoder.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch_size):
            clean = x[order[start : start + batch_size]]
            noisy = clean
            if noise > 0:
                jitter = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
                noisy = (clean + noise * span * jitter).clamp(input_spec.lower, input_spec.upper)
            optimiser.zero_grad()
            loss = F.mse_loss(autoencoder(noisy), clean)
            torch.autograd.backward(loss)
            optimiser.step()
    return autoencoder.eval()


class AutoencoderReformer(InputSanitizer):
    """MagNet's reformer: the autoencoder reconstructs every input before the model sees it.

    The autoencoder is smooth, so its real gradient is not masked: the adaptive view's BPDA
    backward is the exact gradient through the autoencoder (``backward="exact"``), and plain and
    adaptive attacks see the same gradient unless noise is added. Its reconstruction error is a
    detector score (MagNet's detector), exposed as :meth:`reconstruction_error`.
    """

    name: ClassVar[str] = "autoencoder reformer"
    default_backward: ClassVar[Backward] = "exact"

    def __init__(self, classifier: Classifier, autoencoder: nn.Module, *, noise: float = 0.0, seed: int = 0) -> None:
        super().__init__(classifier, noise=noise, seed=seed)
        self.autoencoder = autoencoder.eval()

    def sanitize(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder's reconstruction, clipped to the bounds against float drift."""
        out = cast(torch.Tensor, self.autoencoder(x))
        return out.clamp(self.input_spec.lower, self.input_spec.upper)

    def reconstruction_error(self, x: torch.Tensor, *, p: int = 1) -> torch.Tensor:
        """Per-sample mean ``|x - AE(x)|^p`` ``(N,)``, without gradients; queries no model.

        Inputs are checked against the bounds like any query.
        """
        self.check_input(x)
        with torch.no_grad():
            diff = (x - self.sanitize(x)).abs().flatten(1)
            return (diff**p).mean(dim=1)


def sanitizers_for(
    classifier: Classifier, *, bits: int = 3, kernel: int = 2, autoencoder: nn.Module | None = None
) -> Sequence[InputSanitizer]:
    """The standard set of sanitisers in front of one classifier (the autoencoder only when given)."""
    defenses: list[InputSanitizer] = [BitDepthReduction(classifier, bits)]
    if len(classifier.input_spec.shape) == 3:
        defenses.append(MedianSmoothing(classifier, kernel))
    if autoencoder is not None:
        defenses.append(AutoencoderReformer(classifier, autoencoder))
    return defenses
