"""The triage file: loading with located errors, precedence, expiry, orphans and writing back."""

from __future__ import annotations

import contextlib
import inspect
import textwrap
from datetime import date
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from modelward.core.errors import InputError
from modelward.threats import triage as triage_module
from modelward.threats.triage import (
    TRIAGE_FILE,
    Triage,
    TriageEntry,
    TriageFile,
    TriageStatus,
    dump_triage,
    load_triage,
    parse_triage,
    triage_path_for,
)

TODAY = date(2026, 6, 1)

EXAMPLE = """\
modelward-triage: 1
findings:
  ML-CONFIDENCE-DISCLOSURE@moderation-model:
    status: accepted
    justification: "scores are only shown to moderators"
    owner: alice@example.com
    ticket: SEC-123
    review_by: 2027-01-31
    rating: "SL:5/M:9"
  ML-EVASION-*@moderation-model:
    status: in-progress
    owner: bob@example.com
  "*@legacy-api":
    status: not-applicable
    justification: legacy API is switched off
    review_by: 2026-01-01
  ML-POISONING@retired-pipeline:
    status: mitigated
    justification: pipeline deleted
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / TRIAGE_FILE
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(text: str) -> InputError:
    with pytest.raises(InputError) as caught:
        parse_triage(textwrap.dedent(text), "t.yaml")
    return caught.value


class TestLoad:
    def test_example_loads(self, tmp_path: Path) -> None:
        triage_file = load_triage(write(tmp_path, EXAMPLE))
        assert list(triage_file.findings) == [
            "ML-CONFIDENCE-DISCLOSURE@moderation-model",
            "ML-EVASION-*@moderation-model",
            "*@legacy-api",
            "ML-POISONING@retired-pipeline",
        ]
        entry = triage_file.findings["ML-CONFIDENCE-DISCLOSURE@moderation-model"]
        assert entry.status is TriageStatus.ACCEPTED
        assert entry.review_by == date(2027, 1, 31)
        assert entry.ticket == "SEC-123"
        rating = entry.rating_factors()
        assert rating is not None
        assert rating.to_vector() == "SL:5/M:9"
        assert triage_file.findings["ML-EVASION-*@moderation-model"].justification is None

    def test_defaults_and_coercions(self) -> None:
        triage_file = parse_triage(
            "modelward-triage: 1\nfindings:\n  T@e@f:\n    ticket: 4711\n    review_by: '2027-02-01'\n"
        )
        entry = triage_file.findings["T@e@f"]
        assert entry.status is TriageStatus.OPEN
        assert entry.ticket == "4711"
        assert entry.review_by == date(2027, 2, 1)
        assert parse_triage("modelward-triage: 1\nfindings:\n").findings == {}
        assert parse_triage("modelward-triage: 1\n").findings == {}

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="file not found") as caught:
            load_triage(tmp_path / "nope.yaml")
        assert caught.value.file == str(tmp_path / "nope.yaml")

    def test_path_beside_system_file(self, tmp_path: Path) -> None:
        assert triage_path_for(tmp_path) == tmp_path / TRIAGE_FILE
        assert triage_path_for(tmp_path / "modelward.yaml") == tmp_path / TRIAGE_FILE

    @pytest.mark.parametrize(
        ("text", "line", "field", "message"),
        [
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    status: accepted
                    justification: ok
                    reviewer: carol
                """,
                6, "findings.T@e.reviewer", "unknown field 'reviewer'",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    status: wontfix
                """,
                4, "findings.T@e.status", "Input should be 'open'",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    owner: a
                  T@x:
                    status: accepted
                """,
                5, "findings.T@x.justification", "a justification is required when status is 'accepted'",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@x:
                    status: false-positive
                    justification: "   "
                """,
                5, "findings.T@x.justification", "a justification is required when status is 'false-positive'",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    owner: a

                    rating: "SL:5/XX:1"
                """,
                6, "findings.T@e.rating", "unknown factor 'XX'",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    rating: "SL:10"
                """,
                4, "findings.T@e.rating", "SL:10 is out of range 0-9",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    owner: a
                  not a finding id:
                    owner: b
                """,
                5, "findings['not a finding id']", "invalid finding id 'not a finding id'",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  JUSTTHREAT:
                    owner: b
                """,
                3, "findings.JUSTTHREAT", "invalid finding id 'JUSTTHREAT'",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    review_by: 20270131
                """,
                4, "findings.T@e.review_by", "expected a date YYYY-MM-DD, got 20270131",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    review_by: 2027-01-31T10:00:00
                """,
                4, "findings.T@e.review_by", "expected a date YYYY-MM-DD",
            ),
            (
                """\
                # comment
                modelward-triage: 2
                findings: {}
                """,
                2, "modelward-triage", "unsupported triage format version 2 (expected 1)",
            ),
            (
                """\
                modelward-triage: 1
                findings: {}
                finding: {}
                """,
                3, "finding", "unknown field 'finding' (did you mean 'findings'?)",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  T@e:
                    justificaton: typo
                """,
                4, "findings.T@e.justificaton", "unknown field 'justificaton' (did you mean 'justification'?)",
            ),
            (
                """\
                modelward-triage: 1
                findings:
                  - T@e
                """,
                2, "findings", "valid dictionary",
            ),
        ],
    )  # fmt: skip
    def test_errors_name_file_line_and_field(self, text: str, line: int, field: str, message: str) -> None:
        error = error_of(text)
        assert error.file == "t.yaml"
        assert error.line == line
        assert error.field == field
        assert message in error.message
        assert "\n" not in str(error)
        assert str(error).startswith(f"t.yaml:{line}: {field}: ")

    def test_several_errors_report_the_first_and_count_the_rest(self) -> None:
        error = error_of(
            """\
            modelward-triage: 1
            findings:
              T@e:
                status: accepted
              T@f:
                status: bogus
              T@g:
                colour: red
            """
        )
        assert error.line == 3
        assert error.field == "findings.T@e.justification"
        assert error.message.endswith("(and 2 more problems)")

    @pytest.mark.parametrize("text", ["", "- a\n- b\n", "findings: {}\n", "just text\n"])
    def test_not_a_triage_file(self, text: str) -> None:
        error = error_of(text)
        assert "not a triage file" in error.message
        assert error.line == 1

    def test_unquoted_star_key_is_a_located_yaml_error(self) -> None:
        error = error_of("modelward-triage: 1\nfindings:\n  *@legacy-api:\n    status: open\n")
        assert error.line == 3


@pytest.mark.parametrize("key", ["T@e", "T@e@f", "ML-01.a:b_c@e-1@f.2", "*", "*@e", "T*", "ML-*@m*@*"])
def test_valid_keys(key: str) -> None:
    assert key in TriageFile.model_validate({"findings": {key: {}}}).findings


@pytest.mark.parametrize("key", ["T", "T@e@f@g", "*@*@*@*", "T@", "@e", "T@@e", "-T@e", "T@e f", "T?@e", "T[ab]@e", ""])
def test_invalid_keys(key: str) -> None:
    with pytest.raises(ValidationError, match="invalid finding id"):
        TriageFile.model_validate({"findings": {key: {}}})


class TestMatch:
    def test_exact_beats_wildcard_and_specific_beats_general(self) -> None:
        triage = Triage(
            parse_triage(
                """\
modelward-triage: 1
findings:
  "*@moderation-model":
    status: in-progress
  ML-EVASION-*@moderation-model:
    status: needs-investigation
  ML-EVASION-PGD@moderation-model:
    status: mitigated
    justification: adversarial training, checked by robust-accuracy
"""
            )
        )
        result = triage.match(
            ["ML-EVASION-PGD@moderation-model", "ML-EVASION-HSJ@moderation-model", "ML-POISON@moderation-model"],
            TODAY,
        )
        assert result["ML-EVASION-PGD@moderation-model"].key == "ML-EVASION-PGD@moderation-model"
        assert result["ML-EVASION-PGD@moderation-model"].status is TriageStatus.MITIGATED
        assert result["ML-EVASION-HSJ@moderation-model"].key == "ML-EVASION-*@moderation-model"
        assert result["ML-EVASION-HSJ@moderation-model"].status is TriageStatus.NEEDS_INVESTIGATION
        assert result["ML-POISON@moderation-model"].key == "*@moderation-model"
        assert result["ML-POISON@moderation-model"].status is TriageStatus.IN_PROGRESS
        assert result.orphans == []

    def test_wildcard_specificity_counts_only_literal_characters(self) -> None:
        triage = Triage(
            parse_triage(
                """\
modelward-triage: 1
findings:
  "ML-*@m*":
    owner: first
  "***ML-EV*@*":
    owner: longer-without-stars
  "*@model":
    owner: six
  "ML-*@*":
    owner: four
  "ML*@mode*":
    owner: seven
"""
            )
        )
        # Literal lengths: "ML-@m" 5, "ML-EV@" 6, "@model" 6, "ML-@" 4, "ML@mode" 7.
        assert triage.lookup("ML-EVASION@model") == "ML*@mode*"
        assert triage.lookup("ML-EVASION@other") == "***ML-EV*@*"
        assert triage.lookup("ML-POISON@mx") == "ML-*@m*"
        assert triage.lookup("XX@model") == "*@model"
        assert triage.lookup("XX@other") is None

    def test_equal_specificity_first_in_file_wins(self) -> None:
        triage = Triage(
            parse_triage('modelward-triage: 1\nfindings:\n  "A*@e":\n    owner: x\n  "*A@e":\n    owner: y\n')
        )
        assert triage.lookup("AA@e") == "A*@e"
        reordered = Triage(
            parse_triage('modelward-triage: 1\nfindings:\n  "*A@e":\n    owner: y\n  "A*@e":\n    owner: x\n')
        )
        assert reordered.lookup("AA@e") == "*A@e"

    def test_star_matches_across_parts(self) -> None:
        triage = Triage(parse_triage('modelward-triage: 1\nfindings:\n  "*@legacy-api":\n    owner: x\n'))
        assert triage.lookup("T@client@legacy-api") == "*@legacy-api"
        assert triage.lookup("T@legacy-api@flow") is None
        assert triage.lookup("T@Legacy-API") is None  # case-sensitive, like ids

    def test_expiry_reopens(self) -> None:
        triage = Triage(parse_triage(EXAMPLE))
        result = triage.match(["T@legacy-api", "ML-CONFIDENCE-DISCLOSURE@moderation-model"], TODAY)
        expired = result["T@legacy-api"]
        assert expired.expired
        assert expired.status is TriageStatus.OPEN
        assert expired.entry is not None
        assert expired.entry.status is TriageStatus.NOT_APPLICABLE
        assert expired.reason == "review-by 2026-01-01 passed"
        assert expired.triaged
        assert not expired.resolved
        current = result["ML-CONFIDENCE-DISCLOSURE@moderation-model"]
        assert not current.expired
        assert current.status is TriageStatus.ACCEPTED
        assert current.reason is None
        assert current.resolved
        rating = current.rating_factors()
        assert rating is not None
        assert rating.skill_level == 5
        assert result.expired == [expired]

    def test_review_by_today_is_still_valid(self) -> None:
        triage = Triage(parse_triage(EXAMPLE))
        assert not triage.match(["T@legacy-api"], date(2026, 1, 1))["T@legacy-api"].expired
        assert triage.match(["T@legacy-api"], date(2026, 1, 2))["T@legacy-api"].expired

    def test_orphans_and_untriaged(self) -> None:
        triage = Triage(parse_triage(EXAMPLE))
        result = triage.match(["ML-EVASION-FGSM@moderation-model", "NEW@thing", "NEW@thing"], TODAY)
        assert list(result.decisions) == ["ML-EVASION-FGSM@moderation-model", "NEW@thing"]
        untriaged = result["NEW@thing"]
        assert untriaged.status is TriageStatus.OPEN
        assert untriaged.key is None
        assert not untriaged.triaged
        assert untriaged.rating_factors() is None
        assert result.orphans == [
            "ML-CONFIDENCE-DISCLOSURE@moderation-model",
            "*@legacy-api",
            "ML-POISONING@retired-pipeline",
        ]

    def test_shadowed_pattern_that_matches_is_not_an_orphan(self) -> None:
        triage = Triage(
            parse_triage('modelward-triage: 1\nfindings:\n  "T*@e":\n    owner: x\n  T1@e:\n    owner: y\n')
        )
        result = triage.match(["T1@e"], TODAY)
        assert result["T1@e"].key == "T1@e"
        assert result.orphans == []

    def test_empty_triage(self) -> None:
        result = Triage().match(["A@b"], TODAY)
        assert result["A@b"].status is TriageStatus.OPEN
        assert result.orphans == []
        assert len(result) == 1

    def test_load_classmethod(self, tmp_path: Path) -> None:
        triage = Triage.load(write(tmp_path, EXAMPLE))
        assert triage.lookup("ML-POISONING@retired-pipeline") == "ML-POISONING@retired-pipeline"


class TestStatus:
    def test_which_statuses_need_a_justification(self) -> None:
        needs = {s for s in TriageStatus if s.requires_justification}
        assert {s.value for s in needs} == {
            "mitigated", "accepted", "transferred", "avoided", "false-positive", "not-applicable",
        }  # fmt: skip
        assert {s for s in TriageStatus if s.is_open} == set(TriageStatus) - needs

    def test_python_construction_enforces_justification(self) -> None:
        with pytest.raises(ValueError, match="justification is required"):
            TriageEntry(status=TriageStatus.AVOIDED)


class TestDump:
    def test_round_trip(self) -> None:
        original = parse_triage(EXAMPLE)
        text = dump_triage(original)
        assert text.startswith("modelward-triage: 1\nfindings:\n")
        assert "'*@legacy-api':" in text
        assert "review_by: 2027-01-31\n" in text
        assert parse_triage(text) == original

    def test_tool_written_entries(self) -> None:
        triage_file = TriageFile(
            findings={
                "T@e": TriageEntry(status=TriageStatus.ACCEPTED, justification="x: y # not a comment"),
                "T@e@f": TriageEntry(),
            }
        )
        text = dump_triage(triage_file)
        assert "status: open" in text
        assert parse_triage(text) == triage_file

    def test_characters_yaml_reads_as_line_breaks_survive(self) -> None:
        triage_file = TriageFile(findings={"T@e": TriageEntry(owner="a\x85b\u2028c", ticket="Jürgen")})
        assert parse_triage(dump_triage(triage_file)) == triage_file
        assert "Jürgen" in dump_triage(TriageFile(findings={"T@e": TriageEntry(owner="Jürgen")}))

    def test_only_the_safe_yaml_api(self) -> None:
        source = inspect.getsource(triage_module)
        assert "yaml.load(" not in source
        assert "yaml.dump(" not in source


@given(st.text(max_size=200))
def test_parser_only_raises_input_errors(text: str) -> None:
    with contextlib.suppress(InputError):
        parse_triage(text)


@given(
    st.dictionaries(
        st.from_regex(r"[A-Z][A-Z0-9-]{0,8}@[a-z][a-z0-9-]{0,8}(@[a-z][a-z0-9.]{0,5})?", fullmatch=True),
        st.builds(
            TriageEntry,
            status=st.sampled_from([TriageStatus.OPEN, TriageStatus.IN_PROGRESS]),
            owner=st.none() | st.text(max_size=20),
            ticket=st.none() | st.text(max_size=10),
            review_by=st.none() | st.dates(),
        ),
        max_size=5,
    )
)
def test_dump_round_trip_property(findings: dict[str, TriageEntry]) -> None:
    triage_file = TriageFile(findings=findings)
    assert parse_triage(dump_triage(triage_file)) == triage_file


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12) | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
entry_fields = st.sampled_from(["status", "justification", "owner", "ticket", "review_by", "rating", "other"])


@given(
    st.dictionaries(
        st.text(max_size=12) | st.sampled_from(["T@e", "*@e", "T@e@f"]),
        st.dictionaries(entry_fields, yaml_values | st.sampled_from(["accepted", "SL:3", "2027-01-01"]), max_size=4)
        | yaml_values,
        max_size=4,
    )
)
def test_structured_fuzz_only_raises_input_errors(findings: dict[str, object]) -> None:
    text = yaml.safe_dump({"modelward-triage": 1, "findings": findings})
    try:
        parse_triage(text)
    except InputError as error:
        assert "\n" not in str(error)
