"""Privacy checks: measured leakage of a model (membership inference, extraction) and its DP guarantee.

``privacy.dp_epsilon`` reads the differential-privacy record a model was saved with (written by
``defend dp-train`` or the ``digits-cnn-dp`` recipe), recomputes ε from the recorded noise,
sampling rate and steps with Opacus' accountant, and passes when that ε is at most the threshold
and is a guarantee (Poisson sampling, finite ε). The membership and extraction checks attack the
model the way the catalog's threats describe.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from modelward.checks.base import Check, CheckContext, Evidence
from modelward.checks.model_recipes import resolve_model
from modelward.checks.registry import register
from modelward.core.errors import InputError

MEMBERSHIP_THREATS = ("ML-MEMBERSHIP-INFERENCE", "ML-ATTRIBUTE-INFERENCE", "ML-MEMORISATION-PII")
DP_THREATS = (*MEMBERSHIP_THREATS, "ML-MODEL-INVERSION")


def dp_record(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The DP training record of a saved model's metadata, or None when it was not trained with DP."""
    record = metadata.get("dp")
    return record if isinstance(record, dict) else None


@register
class DPEpsilon(Check):
    """The model was trained with differential privacy at an ε no larger than the threshold."""

    name = "privacy.dp_epsilon"
    title = "The model's differential-privacy ε (Opacus accountant) is at most the threshold"
    verifies = DP_THREATS
    default_threshold = 8.0

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        from modelward.defenses.dp import epsilon_for

        params = context.params
        resolved = resolve_model(params.get("model"), Path(context.base_dir), str(params.get("data", "digits")))
        threshold = self.threshold if self.threshold is not None else 8.0
        record = dp_record(resolved.metadata)
        failed = list(targets)
        if record is None:
            return Evidence(
                check=self.name,
                passed=False,
                message=f"no differential-privacy training recorded for {resolved.source}; required ε ≤ {threshold:g}",
                threshold=threshold,
                details=[f"model: {resolved.source}", "train it with `modelward defend dp-train` to record ε"],
                failed_targets=failed,
            )
        try:
            noise = float(record["noise_multiplier"])
            rate = float(record["sample_rate"])
            steps = int(record["steps"])
            delta = float(record["delta"])
            accountant = str(record.get("accountant", "prv"))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{resolved.source}: the DP record is incomplete or malformed", field="model") from None
        epsilon = epsilon_for(noise, rate, steps, delta, accountant)  # type: ignore[arg-type]
        recorded = float(record.get("epsilon", math.nan))
        poisson = bool(record.get("poisson_sampling", True))
        guarantee = poisson and math.isfinite(epsilon)
        passed = guarantee and epsilon <= threshold + 1e-9
        details = [
            f"model: {resolved.source}",
            f"noise multiplier {noise:.4g}, sample rate {rate:.4g}, {steps} steps, δ = {delta:.3g}, "
            f"accountant {accountant}, clipping norm {record.get('max_grad_norm', '?')}",
        ]
        if not math.isclose(epsilon, recorded, rel_tol=1e-6, abs_tol=1e-9):
            details.append(f"the saved record claims ε = {recorded:.4g}; the accountant says {epsilon:.4g}")
        if not poisson:
            details.append("trained without Poisson sampling: the accountant's ε is not a guarantee")
        return Evidence(
            check=self.name,
            passed=passed,
            message=f"ε = {epsilon:.3g} at δ = {delta:.2g} ({accountant}); required ε ≤ {threshold:g}",
            metrics={"epsilon": epsilon, "delta": delta, "noise_multiplier": noise, "steps": float(steps)},
            threshold=threshold,
            details=details,
            failed_targets=[] if passed else failed,
        )
