"""The model linter: what makes a system description incomplete or suspicious, short of invalid."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from modelward.system.model import System
from modelward.system.references import Path, format_path, reference_problems
from modelward.system.vocabulary import DfdKind


class LintLevel(StrEnum):
    """How serious a lint message is; errors make ``modelward lint`` exit non-zero."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class LintMessage:
    """One lint finding with a stable rule code and its place in the document."""

    code: str
    level: LintLevel
    path: Path
    message: str

    @property
    def path_text(self) -> str:
        return format_path(self.path)


Rule = Callable[[System], Iterator[LintMessage]]


def lint_system(system: System, known_checks: set[str] | None = None) -> list[LintMessage]:
    """Run every lint rule; ``known_checks`` lets requirements naming unknown checks be reported."""
    messages = [LintMessage("MW001", LintLevel.ERROR, p.path, p.message) for p in reference_problems(system)]
    for rule in _RULES:
        messages.extend(rule(system))
    if known_checks is not None:
        for i, requirement in enumerate(system.requirements):
            if requirement.check not in known_checks:
                messages.append(
                    LintMessage(
                        "MW010", LintLevel.ERROR, ("requirements", i, "check"), f"unknown check {requirement.check!r}"
                    )
                )
    return messages


def _isolated_elements(system: System) -> Iterator[LintMessage]:
    connected = {f.source for f in system.flows} | {f.target for f in system.flows}
    for i, element in enumerate(system.elements):
        if element.id not in connected:
            yield LintMessage("MW002", LintLevel.WARNING, ("elements", i), f"element {element.id!r} has no flows")


def _personal_data_terms(system: System) -> Iterator[LintMessage]:
    for i, asset in enumerate(system.data):
        if not asset.personal:
            continue
        if not asset.purpose:
            yield LintMessage(
                "MW003", LintLevel.WARNING, ("data", i), f"personal data {asset.id!r} declares no purpose"
            )
        if not asset.retention:
            yield LintMessage(
                "MW004", LintLevel.WARNING, ("data", i), f"personal data {asset.id!r} declares no retention"
            )
        if asset.data_subjects is None:
            yield LintMessage(
                "MW005",
                LintLevel.WARNING,
                ("data", i),
                f"personal data {asset.id!r} does not say how many data subjects",
            )


def _classification(system: System) -> Iterator[LintMessage]:
    for i, asset in enumerate(system.data):
        if asset.classification is None:
            yield LintMessage("MW006", LintLevel.WARNING, ("data", i), f"data asset {asset.id!r} has no classification")


def _unused_data(system: System) -> Iterator[LintMessage]:
    used: set[str] = set()
    for element in system.elements:
        used.update(element.data)
        if element.model is not None:
            used.update(element.model.trained_on)
    for flow in system.flows:
        used.update(flow.data)
    for i, asset in enumerate(system.data):
        if asset.id not in used:
            yield LintMessage("MW007", LintLevel.WARNING, ("data", i), f"data asset {asset.id!r} is never used")


def _unplaced_elements(system: System) -> Iterator[LintMessage]:
    if not system.boundaries:
        return
    for i, element in enumerate(system.elements):
        if element.boundary is None:
            yield LintMessage(
                "MW008", LintLevel.WARNING, ("elements", i), f"element {element.id!r} is in no trust boundary"
            )


def _empty_boundaries(system: System) -> Iterator[LintMessage]:
    used = {e.boundary for e in system.elements} | {b.parent for b in system.boundaries}
    for i, boundary in enumerate(system.boundaries):
        if boundary.id not in used:
            yield LintMessage("MW009", LintLevel.WARNING, ("boundaries", i), f"boundary {boundary.id!r} holds nothing")


def _models_without_training_data(system: System) -> Iterator[LintMessage]:
    for i, element in enumerate(system.elements):
        if element.type.value == "model" and (element.model is None or not element.model.trained_on):
            yield LintMessage(
                "MW011", LintLevel.WARNING, ("elements", i), f"model {element.id!r} does not say what it is trained on"
            )


def _flows_without_data(system: System) -> Iterator[LintMessage]:
    for i, flow in enumerate(system.flows):
        if not flow.data:
            yield LintMessage("MW012", LintLevel.WARNING, ("flows", i), f"flow {flow.fid!r} carries no declared data")


def _external_stores(system: System) -> Iterator[LintMessage]:
    kinds = {e.id: e.kind for e in system.elements}
    for i, flow in enumerate(system.flows):
        ends = {kinds.get(flow.source), kinds.get(flow.target)}
        if DfdKind.EXTERNAL_ENTITY in ends and DfdKind.DATA_STORE in ends:
            yield LintMessage(
                "MW013",
                LintLevel.WARNING,
                ("flows", i),
                f"flow {flow.fid!r} links an external entity straight to a data store (no process in between)",
            )


_RULES: tuple[Rule, ...] = (
    _isolated_elements,
    _personal_data_terms,
    _classification,
    _unused_data,
    _unplaced_elements,
    _empty_boundaries,
    _models_without_training_data,
    _flows_without_data,
    _external_stores,
)
