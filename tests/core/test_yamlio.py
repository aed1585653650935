"""The safe YAML reader keeps lines and refuses what the plain safe loader lets through."""

from __future__ import annotations

import pytest

from modelward.core.errors import InputError
from modelward.core.severity import Severity
from modelward.core.yamlio import line_of, parse_yaml


def test_lines_of_keys_and_items() -> None:
    document = parse_yaml("a: 1\nb:\n  - x: 2\n    y: [3, 4]\n", "f.yaml")
    assert document.data == {"a": 1, "b": [{"x": 2, "y": [3, 4]}]}
    assert document.line(("a",)) == 1
    assert document.line(("b", 0)) == 3
    assert document.line(("b", 0, "y")) == 4
    assert document.line(("b", 0, "missing", 7)) == 3  # nearest known ancestor


def test_line_of_empty_map() -> None:
    assert line_of({}, ("a",)) is None


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("a: 1\nb: 2\na: 3\n", "duplicate key 'a'", 3),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "merge keys", 3),
        ("a: !!set {x, y}\n", "unsupported YAML tag", 1),
        ("a: !!binary aGVsbG8=\nb: !!python/bytes x\n", "unsupported YAML value", 2),
        ("a:\n  - b\n - c\n", "YAML syntax error", 3),
        ("? [1, 2]\n: x\n", "mapping keys must be plain values", 1),
    ],
)
def test_refusals_are_located(text: str, message: str, line: int) -> None:
    with pytest.raises(InputError) as info:
        parse_yaml(text, "f.yaml")
    assert message in str(info.value)
    assert info.value.line == line
    assert str(info.value).startswith(f"f.yaml:{line}: ")


def test_dates_and_scalars_are_typed() -> None:
    data = parse_yaml("d: 2027-01-31\nn: 3\nf: 0.5\nb: yes\nz: null\n").data
    assert str(data["d"]) == "2027-01-31"
    assert data["n"] == 3 and data["f"] == 0.5 and data["b"] is True and data["z"] is None


def test_severity_order_and_parse() -> None:
    assert Severity.NOTE < Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert Severity.parse(" High ") is Severity.HIGH
    with pytest.raises(ValueError, match="unknown severity"):
        Severity.parse("urgent")


def test_anchors_and_aliases_are_shared_values() -> None:
    document = parse_yaml("base: &b {x: 1}\ncopy: *b\nname: &n hi\nagain: *n\n")
    assert document.data == {"base": {"x": 1}, "copy": {"x": 1}, "name": "hi", "again": "hi"}
    assert document.line(("copy",)) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\n---\nb: 2\n", "one YAML document"),
        ("a: *nowhere\n", "nowhere"),
        ("a: 1\nday: 2020-02-30\n", "invalid timestamp value '2020-02-30'"),
        ("a: !!int abc\n", "invalid int value 'abc'"),
        ("a: !!float abc\n", "invalid float value 'abc'"),
        ("? {k: v}\n: x\n", "mapping keys must be plain values"),
        ("a: " + "[" * 150 + "]" * 150 + "\n", "nested too deeply"),
    ],
)
def test_more_refusals(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_yaml(text)
