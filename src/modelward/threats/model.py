"""Catalog entries (threats) and their application to one element or flow (findings)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from modelward.core.severity import Severity
from modelward.system.vocabulary import DFD_KIND, Control, DfdKind, ElementType
from modelward.threats.conditions import Condition, SubjectKind, parse_condition
from modelward.threats.risk import LIKELIHOOD, TECHNICAL, RiskFactors
from modelward.threats.triage import TriageStatus

StrideCategory = Literal["S", "T", "R", "I", "D", "E"]
LinddunCategory = Literal["L", "I", "Nr", "D", "DD", "U", "Nc"]
TrimAspect = Literal["transfer", "retention", "inference", "minimisation"]

STRIDE_NAMES: dict[str, str] = {
    "S": "Spoofing",
    "T": "Tampering",
    "R": "Repudiation",
    "I": "Information disclosure",
    "D": "Denial of service",
    "E": "Elevation of privilege",
}
LINDDUN_NAMES: dict[str, str] = {
    "L": "Linking",
    "I": "Identifying",
    "Nr": "Non-repudiation",
    "D": "Detecting",
    "DD": "Data disclosure",
    "U": "Unawareness & unintervenability",
    "Nc": "Non-compliance",
}

_ATLAS = re.compile(r"^AML\.(T|M|TA)\d{4}(\.\d{3})?$")
_OWASP = re.compile(r"^(ML(0[1-9]|10)|LLM(0[1-9]|10)):20\d\d$")
_CWE = re.compile(r"^CWE-\d+$")
THREAT_ID = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$"
#: What a threat's ``targets`` may name: element types and DFD kinds (``data-flow`` for flows).
TARGET_NAMES = frozenset(t.value for t in ElementType) | frozenset(k.value for k in DfdKind)


class Mitigation(BaseModel):
    """A way to counter a threat: the controls that implement it and its ATLAS mitigation ids."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    title: str
    description: str | None = None
    controls: list[Control] = Field(default_factory=list)
    atlas: list[str] = Field(default_factory=list)

    @field_validator("atlas")
    @classmethod
    def _atlas_ids(cls, ids: list[str]) -> list[str]:
        for ident in ids:
            if not _ATLAS.match(ident) or not ident.startswith("AML.M"):
                raise ValueError(f"{ident!r} is not an ATLAS mitigation id (AML.M0000)")
        return ids


class Threat(BaseModel):
    """One catalog entry: taxonomy tags, default risk factors, mitigations and conditions."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=THREAT_ID)
    title: str
    description: str
    pack: str
    targets: list[str] = Field(description="element types or DFD kinds (data-flow for flows)")
    stride: list[StrideCategory] = Field(default_factory=list)
    linddun: list[LinddunCategory] = Field(default_factory=list)
    trim: list[TrimAspect] = Field(default_factory=list)
    atlas: list[str] = Field(default_factory=list)
    owasp: list[str] = Field(default_factory=list)
    cwe: list[str] = Field(default_factory=list)
    risk: dict[str, Any] = Field(default_factory=dict, description="default OWASP factors, by abbreviation")
    mitigations: list[Mitigation] = Field(default_factory=list)
    applies_when: Any = None
    mitigated_when: Any = None
    references: list[str] = Field(default_factory=list)

    @field_validator("atlas")
    @classmethod
    def _atlas_ids(cls, ids: list[str]) -> list[str]:
        for ident in ids:
            if not _ATLAS.match(ident):
                raise ValueError(f"{ident!r} is not an ATLAS id (AML.T0000 or AML.T0000.000)")
        return ids

    @field_validator("owasp")
    @classmethod
    def _owasp_ids(cls, ids: list[str]) -> list[str]:
        for ident in ids:
            if not _OWASP.match(ident):
                raise ValueError(f"{ident!r} is not an OWASP id with its year (ML01:2023, LLM01:2025)")
        return ids

    @field_validator("cwe")
    @classmethod
    def _cwe_ids(cls, ids: list[str]) -> list[str]:
        for ident in ids:
            if not _CWE.match(ident):
                raise ValueError(f"{ident!r} is not a CWE id (CWE-502)")
        return ids

    # --- typed views, built once at validation ------------------------------------------
    _applies: Condition | None = PrivateAttr(default=None)
    _mitigated: Condition | None = PrivateAttr(default=None)
    _factors: RiskFactors | None = PrivateAttr(default=None)

    @field_validator("targets")
    @classmethod
    def _target_names(cls, targets: list[str]) -> list[str]:
        if not targets:
            raise ValueError("a threat needs at least one target (an element type, DFD kind or data-flow)")
        for target in targets:
            if target not in TARGET_NAMES:
                close = difflib.get_close_matches(target, sorted(TARGET_NAMES), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown target {target!r}{hint}: expected an element type, DFD kind or data-flow")
        return targets

    @field_validator("risk")
    @classmethod
    def _risk_factors(cls, risk: dict[str, Any]) -> dict[str, Any]:
        """Default factors must name known factors and give all 8 likelihood and 4 technical ones."""
        try:
            factors = RiskFactors.model_validate(risk)
        except ValueError as exc:
            first = exc.errors()[0] if hasattr(exc, "errors") else None  # pydantic ValidationError
            raise ValueError(_risk_problem(first) if first else str(exc)) from None
        missing = factors.missing(LIKELIHOOD + TECHNICAL)
        if missing:
            names = ", ".join(f.abbreviation for f in missing)
            raise ValueError(
                f"default risk factors must give all 8 likelihood and 4 technical factors; missing {names}"
            )
        return risk

    @model_validator(mode="after")
    def _compile(self, info: ValidationInfo) -> Threat:
        """Parse both conditions into their AST (CatalogError with file and line when a document is given)."""
        context = info.context or {}
        document = context.get("document")
        base = tuple(context.get("loc", ()))
        subject = self.subject_kind
        if self.applies_when is not None:
            self._applies = parse_condition(self.applies_when, subject, document=document, loc=(*base, "applies_when"))
        if self.mitigated_when is not None:
            self._mitigated = parse_condition(
                self.mitigated_when, subject, document=document, loc=(*base, "mitigated_when")
            )
        self._factors = RiskFactors.model_validate(self.risk)
        return self

    @property
    def subject_kind(self) -> SubjectKind:
        """What the conditions are evaluated on: elements, flows, or both (from ``targets``)."""
        flows = DfdKind.DATA_FLOW.value in self.targets
        if flows and len(self.targets) == 1:
            return "flow"
        return "any" if flows else "element"

    @property
    def applies_condition(self) -> Condition | None:
        """The parsed ``applies_when`` (None: applies to every target)."""
        return self._applies

    @property
    def mitigated_condition(self) -> Condition | None:
        """The parsed ``mitigated_when`` (None: never mitigated by declaration)."""
        return self._mitigated

    @property
    def risk_factors(self) -> RiskFactors:
        """The default OWASP factors as a typed value."""
        if self._factors is None:
            self._factors = RiskFactors.model_validate(self.risk)
        return self._factors

    def targets_element_type(self, element_type: ElementType) -> bool:
        """Whether an element of this type (or of its DFD kind) is a target."""
        return element_type.value in self.targets or DFD_KIND[element_type].value in self.targets

    @property
    def targets_flows(self) -> bool:
        """Whether data flows are targets."""
        return DfdKind.DATA_FLOW.value in self.targets


def _risk_problem(error: Any) -> str:
    """One pydantic error about risk factors as a short sentence."""
    loc = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        return f"unknown risk factor {loc!r} (expected OWASP abbreviations such as SL, M, O, S, ED, EE, A, ID)"
    return f"{loc}: {message}" if loc else message


#: Where a finding stands: derived by the engine, set by triage, or re-opened by evidence.
Status = TriageStatus


@dataclass
class Finding:
    """A threat applied to one element (or one flow, named with its source element)."""

    threat: Threat
    element: str
    flow: str | None = None
    applies_because: list[str] = field(default_factory=list)
    mitigated_because: list[str] = field(default_factory=list)
    unmitigated_because: list[str] = field(default_factory=list)
    status: Status = Status.OPEN
    severity: Severity = Severity.MEDIUM
    likelihood: float = 0.0
    impact: float = 0.0
    rating_vector: str = ""
    triage: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    verified: bool | None = None

    @property
    def id(self) -> str:
        base = f"{self.threat.id}@{self.element}"
        return f"{base}@{self.flow}" if self.flow else base

    @property
    def why(self) -> list[str]:
        """Why it applies and why it is, or is not, mitigated, in reading order."""
        return list(dict.fromkeys([*self.applies_because, *self.mitigated_because, *self.unmitigated_because]))


@dataclass
class Register:
    """The threat register of one system: every finding, plus what triage could not match."""

    system_name: str
    findings: list[Finding]
    catalog_version: str
    orphan_triage: list[str] = field(default_factory=list)
    not_applicable: int = 0
    out_of_scope: list[str] = field(default_factory=list)

    def by_id(self) -> dict[str, Finding]:
        return {finding.id: finding for finding in self.findings}
