"""The system loader: valid files round-trip; every bad file gets a located one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelward.core.errors import InputError
from modelward.system.loader import dump_system, load_system, parse_system
from modelward.system.model import DataAsset, Element, Flow, ModelAttributes, System
from modelward.system.vocabulary import ElementType, ModelOutput

SMALL = """\
name: shop
boundaries:
  - {id: internet, trust: untrusted}
  - {id: cloud, trust: internal}
  - {id: vpc, parent: cloud}
data:
  - {id: photos, classification: confidential, personal: true, data_subjects: 1000, origin: user-supplied}
elements:
  - id: user
    type: end-user
    boundary: internet
  - id: api
    type: api
    boundary: cloud
    authentication: api-key
    rate_limit: 10/minute
  - id: clf
    type: model
    boundary: vpc
    model:
      outputs: scores
      trained_on: [photos]
flows:
  - {from: user, to: api, data: [photos], protocol: https, encrypted: true}
  - {id: score, from: api, to: clf, data: [photos]}
"""


def error_of(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_system(text, "sys.yaml")
    return info.value


def test_valid_file_loads_with_defaults() -> None:
    system = parse_system(SMALL)
    assert [e.id for e in system.elements] == ["user", "api", "clf"]
    assert system.flows[0].fid == "user-to-api"
    assert system.flows[1].fid == "score"
    assert system.element("clf").model is not None
    assert system.element("clf").model.outputs is ModelOutput.SCORES
    assert system.data_asset("photos").effective_trust.value == "untrusted"


def test_round_trip_through_yaml_is_lossless() -> None:
    system = parse_system(SMALL)
    again = parse_system(dump_system(system))
    assert again == system
    assert dump_system(again) == dump_system(system)


def test_python_api_equals_yaml() -> None:
    built = System(
        name="shop",
        data=[DataAsset(id="photos")],
        elements=[
            Element(id="user", type=ElementType.END_USER),
            Element(
                id="clf",
                type=ElementType.MODEL,
                model=ModelAttributes(outputs=ModelOutput.SCORES, trained_on=["photos"]),
            ),
        ],
        flows=[Flow(source="user", target="clf", data=["photos"])],
    )
    assert parse_system(dump_system(built)) == built
    assert yaml.safe_load(dump_system(built))["flows"][0] == {"from": "user", "to": "clf", "data": ["photos"]}


def test_python_api_rejects_dangling_reference() -> None:
    with pytest.raises(ValueError, match="unknown element 'ghost'"):
        System(name="x", elements=[Element(id="a", type=ElementType.API)], flows=[Flow(source="a", target="ghost")])


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (SMALL.replace("rate_limit: 10/minute", "rate_limit: fast"), 16, "elements[1].rate_limit", "60/minute"),
        (
            SMALL.replace("outputs: scores", "outputz: scores"),
            21,
            "elements[2].model.outputz",
            "did you mean 'outputs'",
        ),
        (SMALL.replace("type: api", "type: apii"), 13, "elements[1].type", "Input should be"),
        (
            SMALL.replace("{id: vpc, parent: cloud}", "{id: vpc, parent: clouds}"),
            5,
            "boundaries[2].parent",
            "unknown boundary",
        ),
        (SMALL.replace("to: clf, data", "to: clff, data"), 25, "flows[1].to", "unknown element 'clff'"),
        (
            SMALL.replace("trained_on: [photos]", "trained_on: [photo]"),
            22,
            "elements[2].model.trained_on[0]",
            "unknown data",
        ),
        (SMALL.replace("id: clf", "id: api"), 17, "elements[2].id", "duplicate id 'api'"),
        (
            SMALL.replace("id: api\n    type: api", "id: api\n    type: end-user\n    model: {}"),
            12,
            "elements[1]",
            "model",
        ),
    ],
)
def test_errors_name_file_line_and_field(text: str, line: int, field: str, message: str) -> None:
    error = error_of(text)
    assert error.file == "sys.yaml"
    assert error.line == line
    assert error.field == field
    assert message in str(error)
    assert "\n" not in str(error).split("\n")[0]


def test_boundary_cycle_is_an_error() -> None:
    text = SMALL.replace("{id: cloud, trust: internal}", "{id: cloud, trust: internal, parent: vpc}")
    assert "cycle" in str(error_of(text))


def test_boundaries_nested_too_deep_are_refused() -> None:
    boundaries = "\n".join(f"  - {{id: b{i}, parent: b{i - 1}}}" if i else "  - {id: b0}" for i in range(40))
    error = error_of(f"name: deep\nboundaries:\n{boundaries}\n")
    assert "nested 33 deep (at most 32)" in str(error)
    assert error.field == "boundaries[32].parent"


def test_self_flow_and_duplicate_default_flow_id() -> None:
    assert "to itself" in str(error_of(SMALL.replace("{from: user, to: api,", "{from: api, to: api,")))
    doubled = SMALL + "  - {from: user, to: api}\n"
    assert "explicit id" in str(error_of(doubled))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed", "YAML syntax error"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: a\nname: b\n", "duplicate key 'name'"),
        ("name: !!python/object/apply:os.system [ls]\n", "unsupported YAML tag"),
        ("name: !!python/name:os.system ''\n", "unsupported YAML value"),
        ("name: x\nelements: 3\n", "Input should be a valid list"),
        ("name: x\nmodelward: 2\n", "Input should be 1"),
        ("", "expected a mapping"),
    ],
)
def test_malformed_documents(text: str, message: str) -> None:
    assert message in str(error_of(text))


def test_missing_and_huge_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_system(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match=r"no modelward\.yaml"):
        load_system(tmp_path)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (17 * 1024 * 1024))
    with pytest.raises(InputError, match="limit"):
        load_system(huge)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        load_system(binary)


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    with pytest.raises(InputError, match="expands to more than"):
        parse_system("\n".join(lines) + "\nname: x\n")


def test_deep_nesting_is_refused() -> None:
    # our own bound, or libyaml's (newer PyYAML builds stop at a maximum depth themselves)
    with pytest.raises(InputError, match=r"nested too deeply|maximum nesting depth"):
        parse_system("name: " + "[" * 50_000)


# --- property tests ------------------------------------------------------------------------

_ids = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@st.composite
def systems(draw: st.DrawFn) -> System:
    ids = draw(st.lists(_ids, min_size=1, max_size=8, unique=True))
    types = st.sampled_from([ElementType.END_USER, ElementType.API, ElementType.DATASET, ElementType.MODEL])
    elements = []
    for ident in ids:
        kind = draw(types)
        model = ModelAttributes(outputs=draw(st.sampled_from(list(ModelOutput)))) if kind is ElementType.MODEL else None
        elements.append(Element(id=ident, type=kind, name=draw(st.none() | st.text(max_size=20)), model=model))
    pairs = [(a, b) for a in ids for b in ids if a != b]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=10)) if pairs else []
    flows = [Flow(source=a, target=b, encrypted=draw(st.none() | st.booleans())) for a, b in chosen]
    return System(name=draw(st.text(min_size=1, max_size=30)), elements=elements, flows=flows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(systems())
def test_any_valid_system_round_trips(system: System) -> None:
    assert parse_system(dump_system(system)) == system


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    try:
        parse_system(text)
    except InputError as error:
        assert str(error)
        assert error.file == "<string>"


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_yaml_structures_give_located_errors(value: object) -> None:
    document = yaml.safe_dump({"name": "x", "elements": value})
    try:
        parse_system(document)
    except InputError as error:
        assert error.line is not None or "expected a mapping" in str(error)
