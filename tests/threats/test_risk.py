"""OWASP Risk Rating: factor tables, levels, the 3x3 matrix, vectors and layering."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from modelward.core.severity import Severity
from modelward.threats.risk import (
    BUSINESS,
    FACTORS,
    LIKELIHOOD,
    TECHNICAL,
    Factor,
    Level,
    RiskFactors,
    level_of,
    merge,
    parse_vector,
    privacy_violation_for,
    rate,
    severity_for,
)

# The OWASP page's worked example: likelihood 35/8, technical 29/4, business 9/4.
WORKED = "SL:5/M:2/O:7/S:1/ED:3/EE:6/A:9/ID:2/LC:9/LI:7/LAV:5/LAC:8/FD:1/RD:2/NC:1/PV:5"


def uniform(likelihood: int, technical: int, business: int | None = None) -> RiskFactors:
    scores = {f.name: likelihood for f in LIKELIHOOD} | {f.name: technical for f in TECHNICAL}
    if business is not None:
        scores |= {f.name: business for f in BUSINESS}
    return RiskFactors.model_validate(scores)


class TestTables:
    def test_sixteen_factors_in_calculator_order(self) -> None:
        assert [f.abbreviation for f in FACTORS] == [
            "SL", "M", "O", "S", "ED", "EE", "A", "ID", "LC", "LI", "LAV", "LAC", "FD", "RD", "NC", "PV",
        ]  # fmt: skip
        assert [f.name for f in FACTORS[:4]] == ["skill_level", "motive", "opportunity", "size"]
        assert {f.group for f in LIKELIHOOD} == {"threat-agent", "vulnerability"}
        assert {f.group for f in TECHNICAL} == {"technical-impact"}
        assert {f.group for f in BUSINESS} == {"business-impact"}
        assert RiskFactors.abbreviation("loss_of_availability") == "LAV"

    @pytest.mark.parametrize(
        ("abbreviation", "options"),
        [
            ("SL", {"no-technical-skills": 1, "some-technical-skills": 3, "advanced-computer-user": 5,
                    "network-and-programming-skills": 6, "security-penetration-skills": 9}),
            ("M", {"low-or-no-reward": 1, "possible-reward": 4, "high-reward": 9}),
            ("O", {"full-access-or-expensive-resources-required": 0, "special-access-or-resources-required": 4,
                   "some-access-or-resources-required": 7, "no-access-or-resources-required": 9}),
            ("S", {"developers": 2, "system-administrators": 2, "intranet-users": 4, "partners": 5,
                   "authenticated-users": 6, "anonymous-internet-users": 9}),
            ("ED", {"practically-impossible": 1, "difficult": 3, "easy": 7, "automated-tools-available": 9}),
            ("EE", {"theoretical": 1, "difficult": 3, "easy": 5, "automated-tools-available": 9}),
            ("A", {"unknown": 1, "hidden": 4, "obvious": 6, "public-knowledge": 9}),
            ("ID", {"active-detection-in-application": 1, "logged-and-reviewed": 3, "logged-without-review": 8,
                    "not-logged": 9}),
            ("LC", {"minimal-non-sensitive": 2, "minimal-critical": 6, "extensive-non-sensitive": 6,
                    "extensive-critical": 7, "all-data": 9}),
            ("LI", {"minimal-slightly-corrupt": 1, "minimal-seriously-corrupt": 3, "extensive-slightly-corrupt": 5,
                    "extensive-seriously-corrupt": 7, "all-data-totally-corrupt": 9}),
            ("LAV", {"minimal-secondary-services": 1, "minimal-primary": 5, "extensive-secondary": 5,
                     "extensive-primary": 7, "all-services-lost": 9}),
            ("LAC", {"fully-traceable": 1, "possibly-traceable": 7, "completely-anonymous": 9}),
            ("FD", {"less-than-cost-to-fix": 1, "minor-effect-on-annual-profit": 3,
                    "significant-effect-on-annual-profit": 7, "bankruptcy": 9}),
            ("RD", {"minimal": 1, "loss-of-major-accounts": 4, "loss-of-goodwill": 5, "brand-damage": 9}),
            ("NC", {"minor-violation": 2, "clear-violation": 5, "high-profile-violation": 7}),
            ("PV", {"one-individual": 3, "hundreds": 5, "thousands": 7, "millions": 9}),
        ],
    )  # fmt: skip
    def test_option_scores_match_the_methodology(self, abbreviation: str, options: dict[str, int]) -> None:
        factor = next(f for f in FACTORS if f.abbreviation == abbreviation)
        assert dict(factor.options) == options
        for name, score in options.items():
            assert RiskFactors.model_validate({abbreviation: name}).get(abbreviation) == score


class TestRating:
    def test_owasp_worked_example(self) -> None:
        rating = parse_vector(WORKED).rate()
        assert rating.likelihood == 4.375
        assert rating.likelihood_level is Level.MEDIUM
        assert rating.technical_impact == 7.25
        assert rating.business_impact == 2.25
        assert rating.impact == 2.25
        assert rating.impact_basis == "business"
        assert rating.impact_level is Level.LOW
        assert rating.severity is Severity.LOW
        assert rating.vector == WORKED

    def test_worked_example_without_business_impact_uses_technical(self) -> None:
        technical_only = parse_vector(WORKED.split("/FD:")[0])
        rating = rate(technical_only)
        assert rating.business_impact is None
        assert rating.impact_basis == "technical"
        assert rating.impact == 7.25
        assert rating.impact_level is Level.HIGH
        assert rating.severity is Severity.HIGH

    def test_business_impact_without_privacy_violation_is_the_mean_of_three(self) -> None:
        factors = merge(uniform(7, 7), RiskFactors(financial_damage=1, reputation_damage=1, non_compliance=2))
        rating = rate(factors)
        assert rating.business_impact == pytest.approx(4 / 3)
        assert rating.impact_basis == "business"
        assert rating.severity is Severity.MEDIUM

    def test_partial_business_impact_is_not_known(self) -> None:
        factors = merge(uniform(7, 7), RiskFactors(financial_damage=1, reputation_damage=1, privacy_violation=3))
        rating = rate(factors)
        assert rating.business_impact is None
        assert rating.impact_basis == "technical"
        assert rating.severity is Severity.CRITICAL

    @pytest.mark.parametrize(
        ("likelihood", "impact", "expected"),
        [
            (Level.LOW, Level.HIGH, Severity.MEDIUM),
            (Level.MEDIUM, Level.HIGH, Severity.HIGH),
            (Level.HIGH, Level.HIGH, Severity.CRITICAL),
            (Level.LOW, Level.MEDIUM, Severity.LOW),
            (Level.MEDIUM, Level.MEDIUM, Severity.MEDIUM),
            (Level.HIGH, Level.MEDIUM, Severity.HIGH),
            (Level.LOW, Level.LOW, Severity.NOTE),
            (Level.MEDIUM, Level.LOW, Severity.LOW),
            (Level.HIGH, Level.LOW, Severity.MEDIUM),
        ],
    )
    def test_matrix_every_cell(self, likelihood: Level, impact: Level, expected: Severity) -> None:
        assert severity_for(likelihood, impact) is expected
        score = {Level.LOW: 1, Level.MEDIUM: 4, Level.HIGH: 7}
        via_technical = rate(uniform(score[likelihood], score[impact]))
        assert via_technical.severity is expected
        # The same cell reached through business impact, with technical impact at the other extreme.
        other = 9 if impact is Level.LOW else 0
        via_business = rate(uniform(score[likelihood], other, business=score[impact]))
        assert via_business.impact_basis == "business"
        assert via_business.severity is expected

    @pytest.mark.parametrize(
        ("score", "level"),
        [(0, Level.LOW), (2.99, Level.LOW), (3, Level.MEDIUM), (5.99, Level.MEDIUM), (6, Level.HIGH), (9, Level.HIGH)],
    )
    def test_level_boundaries(self, score: float, level: Level) -> None:
        assert level_of(score) is level

    @pytest.mark.parametrize("score", [-0.1, 9.01])
    def test_level_out_of_range(self, score: float) -> None:
        with pytest.raises(ValueError, match="out of range"):
            level_of(score)

    def test_boundary_reached_by_means(self) -> None:
        just_under = merge(uniform(3, 6), RiskFactors(skill_level=2))  # likelihood 23/8 = 2.875
        assert rate(just_under).likelihood_level is Level.LOW
        assert rate(uniform(3, 6)).likelihood_level is Level.MEDIUM
        assert rate(uniform(3, 6)).impact_level is Level.HIGH

    def test_missing_factors_are_named(self) -> None:
        factors = merge(uniform(5, 5), RiskFactors())
        incomplete = RiskFactors.model_validate(
            {k: v for k, v in factors.scores().items() if k not in ("motive", "loss_of_accountability")}
        )
        with pytest.raises(ValueError, match=r"missing factors motive \(M\), loss_of_accountability \(LAC\)$"):
            rate(incomplete)
        with pytest.raises(ValueError, match="missing factors skill_level"):
            RiskFactors().rate()


class TestFactorsInput:
    def test_option_names_numbers_and_abbreviations(self) -> None:
        factors = RiskFactors.model_validate(
            {"SL": "security-penetration-skills", "motive": "Possible Reward", "O": "7", "size": 9, "PV": "millions"}
        )
        assert factors.to_vector() == "SL:9/M:4/O:7/S:9/PV:9"

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"SL": 10}, "less than or equal to 9"),
            ({"SL": -1}, "greater than or equal to 0"),
            ({"SL": "12"}, "out of range 0-9"),
            ({"SL": True}, "expected a score 0-9"),
            ({"SL": 4.5}, "fractional part"),
            ({"SL": "hacker"}, "unknown option 'hacker'.*security-penetration-skills \\(9\\)"),
            ({"SL": 1, "skill_level": 2}, "given twice \\(as 'SL' and 'skill_level'\\)"),
            ({"XX": 1}, "Extra inputs are not permitted"),
        ],
    )
    def test_bad_input_is_rejected(self, data: dict[str, object], message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            RiskFactors.model_validate(data)

    def test_merge_later_layers_win_and_unset_keeps(self) -> None:
        defaults = parse_vector("SL:1/M:1/O:1")
        merged = merge(defaults, None, parse_vector("M:9"), RiskFactors(opportunity=None, size=4))
        assert merged.to_vector() == "SL:1/M:9/O:1/S:4"
        assert defaults.to_vector() == "SL:1/M:1/O:1"  # layers are not modified
        assert merge(None).to_vector() == ""


class TestVectors:
    def test_parentheses_any_order_and_spaces(self) -> None:
        factors = parse_vector(" (PV:3 / SL:1/LAV:0) ")
        assert factors.skill_level == 1
        assert factors.loss_of_availability == 0
        assert factors.privacy_violation == 3
        assert factors.to_vector() == "SL:1/LAV:0/PV:3"
        assert factors.to_vector(parentheses=True) == "(SL:1/LAV:0/PV:3)"
        assert RiskFactors.from_vector("SL:1") == RiskFactors(skill_level=1)

    def test_calculator_example(self) -> None:
        text = "(SL:1/M:1/O:0/S:2/ED:1/EE:1/A:1/ID:1/LC:2/LI:1/LAV:1/LAC:1/FD:1/RD:1/NC:2/PV:3)"
        assert parse_vector(text).to_vector(parentheses=True) == text

    @pytest.mark.parametrize(
        ("vector", "message"),
        [
            ("SL:1/XX:3", "unknown factor 'XX'"),
            ("sl:1", "unknown factor 'sl'"),
            ("SL:1/SL:2", "factor 'SL' is given twice"),
            ("SL:10", "SL:10 is out of range 0-9"),
            ("SL:-1", "must be an integer 0-9, got '-1'"),
            ("SL:high", "must be an integer 0-9, got 'high'"),
            ("SL:", "must be an integer 0-9, got ''"),
            ("SL:1/", "malformed part ''"),
            ("SL=1", "malformed part 'SL=1'"),
            ("SL:1 M:2", "malformed part"),
            ("", "empty risk vector"),
            ("()", "empty risk vector"),
        ],
    )
    def test_errors(self, vector: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_vector(vector)

    def test_not_a_string(self) -> None:
        with pytest.raises(TypeError):
            parse_vector(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subjects", "score"),
    [(None, None), (0, None), (1, 3), (99, 3), (100, 5), (999, 5), (1_000, 7), (999_999, 7), (1_000_000, 9),
     (8_000_000_000, 9)],
)  # fmt: skip
def test_privacy_violation_cutoffs(subjects: int | None, score: int | None) -> None:
    assert privacy_violation_for(subjects) == score


def test_privacy_violation_rejects_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        privacy_violation_for(-5)


score = st.integers(min_value=0, max_value=9)
partial_factors = st.fixed_dictionaries({}, optional={f.name: score for f in FACTORS}).map(RiskFactors.model_validate)


def complete_factors(with_business: bool) -> st.SearchStrategy[RiskFactors]:
    group = LIKELIHOOD + TECHNICAL + (BUSINESS if with_business else ())
    return st.fixed_dictionaries({f.name: score for f in group}).map(RiskFactors.model_validate)


@given(partial_factors)
def test_vector_round_trip(factors: RiskFactors) -> None:
    vector = factors.to_vector()
    if factors.scores():
        assert parse_vector(vector) == factors
        assert parse_vector(f"({vector})") == factors
        assert parse_vector("/".join(reversed(vector.split("/")))) == factors
    else:
        assert vector == ""


@given(st.booleans().flatmap(complete_factors), st.sampled_from(FACTORS), st.data())
def test_severity_is_monotone_in_every_factor(factors: RiskFactors, factor: Factor, data: st.DataObject) -> None:
    name = factor.name
    current = factors.get(name)
    if current is None:  # a business factor of a technical-only set: raising it alone keeps business unknown
        current = 0
    higher = data.draw(st.integers(min_value=current, max_value=9))
    raised = merge(factors, RiskFactors.model_validate({name: higher}))
    before, after = rate(factors), rate(raised)
    assert after.severity >= before.severity
    assert after.likelihood >= before.likelihood


@given(st.text(max_size=60))
def test_vector_parser_only_raises_value_errors(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_vector(text)
