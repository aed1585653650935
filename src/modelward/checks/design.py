"""Design rules: checks over the system description itself, the first evidence an audit has.

Each rule is the executable form of one mitigation a reviewer would ask for. Targets narrow a rule
to the element and flow ids a requirement names; with no targets it covers the whole system.
The threshold is the number of violations tolerated (0 by default).
"""

from __future__ import annotations

from collections.abc import Iterable

from modelward.checks.base import Check, CheckContext, Evidence
from modelward.checks.registry import register
from modelward.system.graph import SystemGraph
from modelward.system.model import Element, Flow, System
from modelward.system.vocabulary import (
    MODEL_TYPES,
    PICKLE_FORMATS,
    Control,
    DfdKind,
    ElementType,
    ModelOutput,
    TrustLevel,
)

#: Outputs that reveal the model's confidence (what extraction, inversion and membership inference feed on).
RAW_SCORE_OUTPUTS = frozenset({ModelOutput.SCORES, ModelOutput.LOGITS, ModelOutput.EMBEDDINGS})
SANITATION_CONTROLS = frozenset({Control.DATA_SANITIZATION, Control.LABEL_REVIEW, Control.OUTLIER_DETECTION})


class DesignRule(Check):
    """A rule over the system: collects violations, passes when they are within the threshold."""

    default_threshold = 0.0

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        graph = SystemGraph(context.system)
        scope = set(targets)
        checked, violations = self.evaluate(graph, scope)
        allowed = self.threshold if self.threshold is not None else 0.0
        passed = len(violations) <= allowed
        failed_targets = list(dict.fromkeys(target for target, _ in violations))
        if violations:
            message = f"{len(violations)} violation(s) in {checked} checked (tolerated: {allowed:g})"
        else:
            message = f"{checked} checked, no violation"
        return Evidence(
            check=self.name,
            passed=passed,
            message=message,
            metrics={"violations": float(len(violations)), "checked": float(checked)},
            threshold=allowed,
            details=[text for _, text in violations],
            failed_targets=failed_targets if not passed else [],
        )

    def evaluate(self, graph: SystemGraph, scope: set[str]) -> tuple[int, list[tuple[str, str]]]:
        """Return how many items were checked and the ``(target id, explanation)`` of each violation."""
        raise NotImplementedError


def _elements_in_scope(system: System, scope: set[str], types: Iterable[ElementType] | None = None) -> list[Element]:
    wanted = set(types) if types is not None else None
    return [
        e
        for e in system.elements
        if e.in_scope and (not scope or e.id in scope) and (wanted is None or e.type in wanted)
    ]


@register
class EncryptedBoundaryFlows(DesignRule):
    """Every flow that crosses a trust boundary is encrypted."""

    name = "design.encrypted_boundary_flows"
    title = "No unencrypted flow crosses a trust boundary"
    verifies = ("STRIDE-I-FLOW", "STRIDE-T-FLOW")

    def evaluate(self, graph: SystemGraph, scope: set[str]) -> tuple[int, list[tuple[str, str]]]:
        checked = 0
        violations = []
        for flow in graph.system.flows:
            touches = flow.fid in scope or flow.source in scope or flow.target in scope
            if (scope and not touches) or not graph.crosses_boundary(flow.fid):
                continue
            checked += 1
            if not graph.flow_encrypted(flow.fid):
                violations.append(
                    (flow.fid, f"flow {flow.fid!r} ({flow.source} → {flow.target}) crosses a boundary unencrypted")
                )
        return checked, violations


@register
class ScoreExposure(DesignRule):
    """No model returns raw scores to untrusted callers without a rate limit on every query path."""

    name = "design.score_exposure"
    title = "No model returns raw scores to untrusted callers without a rate limit"
    verifies = (
        "ML-CONFIDENCE-DISCLOSURE",
        "ML-EXTRACTION",
        "ML-MEMBERSHIP-INFERENCE",
        "ML-MODEL-INVERSION",
        "ML-EVASION-BLACKBOX-SCORE",
    )

    def evaluate(self, graph: SystemGraph, scope: set[str]) -> tuple[int, list[tuple[str, str]]]:
        checked = 0
        violations = []

        # Queries travel through processes (APIs, services, models), not through stores or training:
        # a public dataset that feeds the training pipeline does not query the deployed model.
        def forwards(flow: Flow) -> bool:
            target = graph.elements[flow.target]
            return target.kind is DfdKind.PROCESS and target.type is not ElementType.TRAINING_PIPELINE

        queryable = graph.reach(graph.untrusted, passable=forwards)
        # Every query chain that never passes a rate-limited element (all of them, not only the
        # shortest: one unthrottled side door is enough to harvest scores).
        unthrottled = graph.reach(
            graph.untrusted, passable=lambda flow: forwards(flow) and not _rate_limited(graph.elements[flow.target])
        )
        for element in _elements_in_scope(graph.system, scope, MODEL_TYPES):
            if element.model is None or element.model.outputs not in RAW_SCORE_OUTPUTS:
                continue
            if element.id not in queryable:
                continue
            checked += 1
            path = unthrottled.path(element.id)
            if path is not None:
                chain = " → ".join(path)
                violations.append(
                    (
                        element.id,
                        f"{element.id!r} returns {element.model.outputs.value} to untrusted callers "
                        f"({chain}) with no rate limit on the way",
                    )
                )
        return checked, violations


def _rate_limited(element: Element) -> bool:
    return element.rate_limit is not None or Control.RATE_LIMITING in element.controls


@register
class TrainingDataSanitation(DesignRule):
    """Training data from untrusted sources passes a sanitation or label-review step."""

    name = "design.training_data_sanitation"
    title = "Training data from untrusted sources is sanitised before training"
    verifies = (
        "ML-POISON-TELEMETRY",
        "ML-POISON-USER-REPORTS",
        "ML-POISON-CROWDSOURCED-LABELS",
        "ML-POISON-PUBLIC-DATASET",
        "ML-BACKDOOR",
    )

    def evaluate(self, graph: SystemGraph, scope: set[str]) -> tuple[int, list[tuple[str, str]]]:
        checked = 0
        violations = []
        for element in _elements_in_scope(graph.system, scope, MODEL_TYPES):
            untrusted = [a for a in graph.training_data(element.id) if a.effective_trust is TrustLevel.UNTRUSTED]
            if not untrusted:
                continue
            checked += 1
            guards = [element.id, *(e for e in graph.upstream(element.id) if _is_pipeline(graph, e))]
            if not any(SANITATION_CONTROLS & set(graph.elements[g].controls) for g in guards):
                names = ", ".join(a.id for a in untrusted)
                violations.append(
                    (
                        element.id,
                        f"{element.id!r} trains on untrusted data ({names}) with no data-sanitization, "
                        "label-review or outlier-detection on the model or its training pipeline",
                    )
                )
        return checked, violations


def _is_pipeline(graph: SystemGraph, element_id: str) -> bool:
    return graph.elements[element_id].type is ElementType.TRAINING_PIPELINE


@register
class PersonalDataRetention(DesignRule):
    """Personal data declares both its purpose and its retention."""

    name = "design.personal_data_retention"
    title = "Personal data declares its purpose and retention"
    verifies = ("LINDDUN-NC-STORE", "LINDDUN-NC-PROCESS", "LINDDUN-NC-FLOW", "LINDDUN-DD-STORE")

    def evaluate(self, graph: SystemGraph, scope: set[str]) -> tuple[int, list[tuple[str, str]]]:
        checked = 0
        violations = []
        holders: dict[str, list[str]] = {}
        for element in graph.system.elements:
            for asset in graph.data_of(element.id):
                holders.setdefault(asset.id, []).append(element.id)
        for asset in graph.system.data:
            if not asset.personal:
                continue
            where = holders.get(asset.id, [])
            if scope and not scope.intersection(where):
                continue
            checked += 1
            missing = [
                name for name, value in (("purpose", asset.purpose), ("retention", asset.retention)) if not value
            ]
            if missing:
                for holder in [h for h in where if not scope or h in scope] or [asset.id]:
                    violations.append(
                        (holder, f"personal data {asset.id!r} held by {holder!r} has no {' or '.join(missing)}")
                    )
        return checked, violations


@register
class SafeModelArtifacts(DesignRule):
    """No model artifact uses a pickle-family format (loading it runs arbitrary code)."""

    name = "design.safe_model_artifacts"
    title = "No model artifact in a pickle-family format"
    verifies = ("ML-UNSAFE-ARTIFACT",)

    def evaluate(self, graph: SystemGraph, scope: set[str]) -> tuple[int, list[tuple[str, str]]]:
        checked = 0
        violations = []
        for element in _elements_in_scope(graph.system, scope, MODEL_TYPES):
            if element.model is None or element.model.artifact_format is None:
                continue
            checked += 1
            if element.model.artifact_format in PICKLE_FORMATS:
                violations.append(
                    (
                        element.id,
                        f"{element.id!r} is stored as {element.model.artifact_format.value}, "
                        "which runs code when loaded",
                    )
                )
        return checked, violations
