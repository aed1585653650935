"""OWASP Risk Rating Methodology, exactly: 16 factors on 0-9 scales, levels and the 3x3 severity matrix.

Factors are layered (catalog defaults, then system-derived values, then triage overrides) with
:func:`merge`; a rating needs every likelihood factor and every technical-impact factor, and uses
the business impact instead when all four business factors are known (the OWASP page prefers it).
Missing factors are an error, never a silent zero: see ``docs/decisions/risk-rating-defaults.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from modelward.core.severity import Severity

__all__ = [
    "BUSINESS",
    "FACTORS",
    "FACTORS_BY_ABBREVIATION",
    "FACTORS_BY_NAME",
    "LIKELIHOOD",
    "TECHNICAL",
    "Factor",
    "Level",
    "RiskFactors",
    "RiskRating",
    "Score",
    "level_of",
    "merge",
    "parse_vector",
    "privacy_violation_for",
    "rate",
    "severity_for",
]

Group = Literal["threat-agent", "vulnerability", "technical-impact", "business-impact"]


@dataclass(frozen=True)
class Factor:
    """One OWASP factor: its field name, calculator abbreviation, group and named options."""

    name: str
    abbreviation: str
    title: str
    group: Group
    options: MappingProxyType[str, int]

    def score(self, value: int | str) -> int:
        """The 0-9 score of a number or a kebab-case option name; ValueError otherwise."""
        if isinstance(value, bool):  # ValueError, not TypeError: pydantic validators only turn ValueError into errors
            raise ValueError(f"{self.title}: expected a score 0-9 or an option name, got {value!r}")
        if isinstance(value, str):
            text = value.strip()
            if re.fullmatch(r"\d+", text):
                value = int(text)
            else:
                key = re.sub(r"[\s_]+", "-", text.lower())
                if key in self.options:
                    return self.options[key]
                names = ", ".join(f"{name} ({score})" for name, score in self.options.items())
                raise ValueError(f"{self.title}: unknown option {value!r} (expected 0-9 or one of: {names})")
        if not 0 <= value <= 9:
            raise ValueError(f"{self.title}: score {value} is out of range 0-9")
        return value


def _factor(name: str, abbreviation: str, title: str, group: Group, options: dict[str, int]) -> Factor:
    return Factor(name, abbreviation, title, group, MappingProxyType(options))


#: The 16 factors in the OWASP calculator's canonical vector order, with the option scores of the methodology.
FACTORS: tuple[Factor, ...] = (
    _factor(
        "skill_level",
        "SL",
        "skill level",
        "threat-agent",
        {
            "no-technical-skills": 1,
            "some-technical-skills": 3,
            "advanced-computer-user": 5,
            "network-and-programming-skills": 6,
            "security-penetration-skills": 9,
        },
    ),
    _factor(
        "motive",
        "M",
        "motive",
        "threat-agent",
        {
            "low-or-no-reward": 1,
            "possible-reward": 4,
            "high-reward": 9,
        },
    ),
    _factor(
        "opportunity",
        "O",
        "opportunity",
        "threat-agent",
        {
            "full-access-or-expensive-resources-required": 0,
            "special-access-or-resources-required": 4,
            "some-access-or-resources-required": 7,
            "no-access-or-resources-required": 9,
        },
    ),
    _factor(
        "size",
        "S",
        "size",
        "threat-agent",
        {
            "developers": 2,
            "system-administrators": 2,
            "intranet-users": 4,
            "partners": 5,
            "authenticated-users": 6,
            "anonymous-internet-users": 9,
        },
    ),
    _factor(
        "ease_of_discovery",
        "ED",
        "ease of discovery",
        "vulnerability",
        {
            "practically-impossible": 1,
            "difficult": 3,
            "easy": 7,
            "automated-tools-available": 9,
        },
    ),
    _factor(
        "ease_of_exploit",
        "EE",
        "ease of exploit",
        "vulnerability",
        {
            "theoretical": 1,
            "difficult": 3,
            "easy": 5,
            "automated-tools-available": 9,
        },
    ),
    _factor(
        "awareness",
        "A",
        "awareness",
        "vulnerability",
        {
            "unknown": 1,
            "hidden": 4,
            "obvious": 6,
            "public-knowledge": 9,
        },
    ),
    _factor(
        "intrusion_detection",
        "ID",
        "intrusion detection",
        "vulnerability",
        {
            "active-detection-in-application": 1,
            "logged-and-reviewed": 3,
            "logged-without-review": 8,
            "not-logged": 9,
        },
    ),
    _factor(
        "loss_of_confidentiality",
        "LC",
        "loss of confidentiality",
        "technical-impact",
        {
            "minimal-non-sensitive": 2,
            "minimal-critical": 6,
            "extensive-non-sensitive": 6,
            "extensive-critical": 7,
            "all-data": 9,
        },
    ),
    _factor(
        "loss_of_integrity",
        "LI",
        "loss of integrity",
        "technical-impact",
        {
            "minimal-slightly-corrupt": 1,
            "minimal-seriously-corrupt": 3,
            "extensive-slightly-corrupt": 5,
            "extensive-seriously-corrupt": 7,
            "all-data-totally-corrupt": 9,
        },
    ),
    _factor(
        "loss_of_availability",
        "LAV",
        "loss of availability",
        "technical-impact",
        {
            "minimal-secondary-services": 1,
            "minimal-primary": 5,
            "extensive-secondary": 5,
            "extensive-primary": 7,
            "all-services-lost": 9,
        },
    ),
    _factor(
        "loss_of_accountability",
        "LAC",
        "loss of accountability",
        "technical-impact",
        {
            "fully-traceable": 1,
            "possibly-traceable": 7,
            "completely-anonymous": 9,
        },
    ),
    _factor(
        "financial_damage",
        "FD",
        "financial damage",
        "business-impact",
        {
            "less-than-cost-to-fix": 1,
            "minor-effect-on-annual-profit": 3,
            "significant-effect-on-annual-profit": 7,
            "bankruptcy": 9,
        },
    ),
    _factor(
        "reputation_damage",
        "RD",
        "reputation damage",
        "business-impact",
        {
            "minimal": 1,
            "loss-of-major-accounts": 4,
            "loss-of-goodwill": 5,
            "brand-damage": 9,
        },
    ),
    _factor(
        "non_compliance",
        "NC",
        "non-compliance",
        "business-impact",
        {
            "minor-violation": 2,
            "clear-violation": 5,
            "high-profile-violation": 7,
        },
    ),
    _factor(
        "privacy_violation",
        "PV",
        "privacy violation",
        "business-impact",
        {
            "one-individual": 3,
            "hundreds": 5,
            "thousands": 7,
            "millions": 9,
        },
    ),
)

FACTORS_BY_NAME: MappingProxyType[str, Factor] = MappingProxyType({f.name: f for f in FACTORS})
FACTORS_BY_ABBREVIATION: MappingProxyType[str, Factor] = MappingProxyType({f.abbreviation: f for f in FACTORS})
#: The 8 likelihood factors (threat agent + vulnerability), the 4 technical and the 4 business impact factors.
LIKELIHOOD: tuple[Factor, ...] = FACTORS[:8]
TECHNICAL: tuple[Factor, ...] = FACTORS[8:12]
BUSINESS: tuple[Factor, ...] = FACTORS[12:]
#: The business factors every threat has; privacy violation applies only where personal data can be touched.
BUSINESS_CORE: tuple[Factor, ...] = FACTORS[12:15]

#: A factor score: an integer 0-9, or None when unknown.
Score = Annotated[int | None, Field(ge=0, le=9)]


class RiskFactors(BaseModel):
    """Any subset of the 16 OWASP factors, each 0-9 or unset (None).

    Input accepts snake_case names or calculator abbreviations as keys (``skill_level`` or ``SL``) and
    a number or a kebab-case option name as values (``security-penetration-skills`` -> 9).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    skill_level: Score = None
    motive: Score = None
    opportunity: Score = None
    size: Score = None
    ease_of_discovery: Score = None
    ease_of_exploit: Score = None
    awareness: Score = None
    intrusion_detection: Score = None
    loss_of_confidentiality: Score = None
    loss_of_integrity: Score = None
    loss_of_availability: Score = None
    loss_of_accountability: Score = None
    financial_damage: Score = None
    reputation_damage: Score = None
    non_compliance: Score = None
    privacy_violation: Score = None

    @model_validator(mode="before")
    @classmethod
    def _abbreviations(cls, data: Any) -> Any:
        """Rename abbreviation keys (``SL``) to field names; both spellings of one factor is an error."""
        if not isinstance(data, dict):
            return data
        renamed: dict[Any, Any] = {}
        spelled: dict[Any, Any] = {}
        for key, value in data.items():
            factor = FACTORS_BY_ABBREVIATION.get(key) if isinstance(key, str) else None
            name = factor.name if factor is not None else key
            if name in renamed:
                raise ValueError(f"factor {name!r} is given twice (as {spelled[name]!r} and {key!r})")
            renamed[name] = value
            spelled[name] = key
        return renamed

    @field_validator("*", mode="before")
    @classmethod
    def _option_names(cls, value: Any, info: ValidationInfo) -> Any:
        """Turn option names and numeric strings into scores; refuse booleans."""
        if value is None or info.field_name is None:
            return value
        if isinstance(value, (bool, str)):
            return FACTORS_BY_NAME[info.field_name].score(value)
        return value

    @classmethod
    def abbreviation(cls, name: str) -> str:
        """The calculator abbreviation of a factor field name (``skill_level`` -> ``SL``)."""
        return FACTORS_BY_NAME[name].abbreviation

    @classmethod
    def from_vector(cls, vector: str) -> RiskFactors:
        """Parse an OWASP calculator vector; see :func:`parse_vector`."""
        return parse_vector(vector)

    def get(self, factor: str) -> int | None:
        """The score of a factor given by field name or abbreviation."""
        spec = FACTORS_BY_NAME.get(factor) or FACTORS_BY_ABBREVIATION.get(factor)
        if spec is None:
            raise KeyError(factor)
        value: int | None = getattr(self, spec.name)
        return value

    def scores(self) -> dict[str, int]:
        """The set factors, by field name, in canonical order."""
        return {f.name: v for f in FACTORS if (v := getattr(self, f.name)) is not None}

    def missing(self, factors: tuple[Factor, ...] = FACTORS) -> list[Factor]:
        """Which of ``factors`` are unset."""
        return [f for f in factors if getattr(self, f.name) is None]

    def to_vector(self, *, parentheses: bool = False) -> str:
        """The OWASP calculator vector of the set factors, in canonical order (``SL:1/M:1/...``)."""
        text = "/".join(f"{f.abbreviation}:{v}" for f in FACTORS if (v := getattr(self, f.name)) is not None)
        return f"({text})" if parentheses else text

    def rate(self) -> RiskRating:
        """The OWASP rating of these factors; see :func:`rate`."""
        return rate(self)


class Level(StrEnum):
    """OWASP likelihood and impact levels: LOW <3, MEDIUM 3 to <6, HIGH >=6."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def level_of(score: float) -> Level:
    """The level of a 0-9 likelihood or impact score."""
    if not 0 <= score <= 9:
        raise ValueError(f"score {score} is out of range 0-9")
    if score < 3:
        return Level.LOW
    if score < 6:
        return Level.MEDIUM
    return Level.HIGH


_MATRIX: dict[tuple[Level, Level], Severity] = {
    (Level.HIGH, Level.LOW): Severity.MEDIUM,
    (Level.HIGH, Level.MEDIUM): Severity.HIGH,
    (Level.HIGH, Level.HIGH): Severity.CRITICAL,
    (Level.MEDIUM, Level.LOW): Severity.LOW,
    (Level.MEDIUM, Level.MEDIUM): Severity.MEDIUM,
    (Level.MEDIUM, Level.HIGH): Severity.HIGH,
    (Level.LOW, Level.LOW): Severity.NOTE,
    (Level.LOW, Level.MEDIUM): Severity.LOW,
    (Level.LOW, Level.HIGH): Severity.MEDIUM,
}


def severity_for(likelihood: Level, impact: Level) -> Severity:
    """Overall severity from the OWASP 3x3 matrix."""
    return _MATRIX[(impact, likelihood)]


class RiskRating(BaseModel):
    """The outcome of rating one set of factors, with every intermediate score for reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    factors: RiskFactors
    likelihood: float = Field(description="mean of the 8 threat-agent and vulnerability factors")
    technical_impact: float = Field(description="mean of the 4 technical-impact factors")
    business_impact: float | None = Field(description="mean of the 4 business factors; None unless all are known")
    impact: float = Field(description="the impact score used: business when known, else technical")
    impact_basis: Literal["business", "technical"]
    likelihood_level: Level
    impact_level: Level
    severity: Severity

    @property
    def vector(self) -> str:
        """The calculator vector of the rated factors."""
        return self.factors.to_vector()


def _mean(factors: RiskFactors, group: tuple[Factor, ...]) -> float:
    return sum(int(getattr(factors, f.name)) for f in group) / len(group)


def _business_impact(factors: RiskFactors) -> float | None:
    """Mean of the business factors that apply; None unless FD, RD and NC are all known."""
    if factors.missing(BUSINESS_CORE):
        return None
    applying = BUSINESS if factors.privacy_violation is not None else BUSINESS_CORE
    return _mean(factors, applying)


def rate(factors: RiskFactors) -> RiskRating:
    """Rate factors the OWASP way.

    Needs all 8 likelihood and all 4 technical factors (ValueError naming the missing ones). Uses the
    business impact when financial, reputation and non-compliance damage are all set, else the
    technical impact. Privacy violation joins the business mean when set; it is left unset for a
    threat that cannot touch personal data, where it does not apply (rather than counting as 0).
    """
    missing = factors.missing(LIKELIHOOD + TECHNICAL)
    if missing:
        names = ", ".join(f"{f.name} ({f.abbreviation})" for f in missing)
        raise ValueError(f"cannot rate risk: missing factor{'s' if len(missing) > 1 else ''} {names}")
    likelihood = _mean(factors, LIKELIHOOD)
    technical = _mean(factors, TECHNICAL)
    business = _business_impact(factors)
    impact = technical if business is None else business
    likelihood_level = level_of(likelihood)
    impact_level = level_of(impact)
    return RiskRating(
        factors=factors,
        likelihood=likelihood,
        technical_impact=technical,
        business_impact=business,
        impact=impact,
        impact_basis="technical" if business is None else "business",
        likelihood_level=likelihood_level,
        impact_level=impact_level,
        severity=severity_for(likelihood_level, impact_level),
    )


def merge(defaults: RiskFactors | None, *overrides: RiskFactors | None) -> RiskFactors:
    """Layer factor sets: each set factor of a later layer replaces the earlier value; unset ones keep it."""
    scores: dict[str, int] = {}
    for layer in (defaults, *overrides):
        if layer is not None:
            scores.update(layer.scores())
    return RiskFactors.model_validate(scores)


_VECTOR_PART = re.compile(r"([A-Za-z]+):(\S*)")


def parse_vector(vector: str) -> RiskFactors:
    """Parse an OWASP calculator vector such as ``(SL:1/M:1/O:0/.../PV:3)``.

    Parentheses are optional, parts may come in any order and any subset may be given (for
    overrides). Unknown keys, duplicates, values that are not integers 0-9 and empty parts are a
    ValueError naming the problem.
    """
    if not isinstance(vector, str):
        raise TypeError(f"risk vector must be a string, got {type(vector).__name__}")
    text = vector.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if not text:
        raise ValueError(f"empty risk vector {vector!r}")
    scores: dict[str, int] = {}
    for part in text.split("/"):
        match = _VECTOR_PART.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"risk vector {vector!r}: malformed part {part!r} (expected KEY:SCORE, e.g. SL:5)")
        key, raw = match.groups()
        factor = FACTORS_BY_ABBREVIATION.get(key)
        if factor is None:
            keys = "/".join(FACTORS_BY_ABBREVIATION)
            raise ValueError(f"risk vector {vector!r}: unknown factor {key!r} (expected one of {keys})")
        if factor.name in scores:
            raise ValueError(f"risk vector {vector!r}: factor {key!r} is given twice")
        if not re.fullmatch(r"\d+", raw):
            raise ValueError(f"risk vector {vector!r}: {key} must be an integer 0-9, got {raw!r}")
        score = int(raw)
        if score > 9:
            raise ValueError(f"risk vector {vector!r}: {key}:{score} is out of range 0-9")
        scores[factor.name] = score
    return RiskFactors.model_validate(scores)


#: Upper bounds (exclusive) of data-subject counts for privacy-violation scores 3, 5 and 7; 9 above.
_PRIVACY_CUTOFFS: tuple[tuple[int, int], ...] = ((100, 3), (1_000, 5), (1_000_000, 7))


def privacy_violation_for(data_subjects: int | None) -> int | None:
    """Privacy-violation score (PV) from how many people the data is about.

    1-99 -> 3 (one individual), 100-999 -> 5 (hundreds), 1,000-999,999 -> 7 (thousands),
    1,000,000 and more -> 9 (millions); None or 0 -> None (no personal data, factor unknown).
    """
    if data_subjects is None or data_subjects == 0:
        return None
    if isinstance(data_subjects, bool) or data_subjects < 0:
        raise ValueError(f"number of data subjects must be a non-negative integer, got {data_subjects!r}")
    for bound, score in _PRIVACY_CUTOFFS:
        if data_subjects < bound:
            return score
    return 9
