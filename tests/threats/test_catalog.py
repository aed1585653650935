"""The catalog loader: shipped packs are valid and complete; bad packs fail with file, line and field."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from modelward.core.errors import CatalogError
from modelward.system.loader import parse_system
from modelward.system.vocabulary import LLM_TYPES, MODEL_TYPES, DfdKind, ElementType
from modelward.threats.catalog import Catalog, load_catalog, parse_pack, shipped_catalog, shipped_pack_names
from modelward.threats.engine import apply_catalog
from modelward.threats.model import THREAT_ID, Threat

RISK = "{SL: 5, M: 5, O: 5, S: 5, ED: 5, EE: 5, A: 5, ID: 5, LC: 5, LI: 5, LAV: 5, LAC: 5}"


def pack(body: str, name: str = "acme") -> str:
    return f'catalog: {name}\nversion: "1.0.0"\nthreats:\n{body}'


def entry(ident: str = "ACME-ONE", extra: str = "") -> str:
    text = f"""\
  - id: {ident}
    title: One
    description: A threat.
    targets: [model]
    risk: {RISK}
"""
    return text + extra


def catalog_error(text: str) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        parse_pack(text, "acme.yaml")
    return info.value


# --- the shipped packs ----------------------------------------------------------------


def test_shipped_packs_load_in_baseline_order() -> None:
    names = shipped_pack_names()
    assert names[:2] == ["stride", "linddun"]
    catalog = shipped_catalog()
    assert [p.name for p in catalog.packs] == names
    assert all(p.shipped for p in catalog.packs)
    assert catalog.version == "2026.11.0" or "stride 2026.11.0" in catalog.version


def test_stride_per_element_table() -> None:
    stride = load_catalog(packs=["stride"])
    table: dict[str, set[str]] = {}
    for threat in stride:
        assert len(threat.targets) == 1
        assert len(threat.stride) == 1
        table.setdefault(threat.targets[0], set()).add(threat.stride[0])
        kind = {"external-entity": "ENTITY", "process": "PROCESS", "data-store": "STORE", "data-flow": "FLOW"}
        assert threat.id == f"STRIDE-{threat.stride[0]}-{kind[threat.targets[0]]}"
    assert table == {
        "external-entity": {"S", "R"},
        "process": {"S", "T", "R", "I", "D", "E"},
        "data-store": {"T", "R", "I", "D"},
        "data-flow": {"T", "I", "D"},
    }
    assert len(stride) == 15


def test_linddun_per_element_table() -> None:
    linddun = load_catalog(packs=["linddun"])
    table: dict[str, set[str]] = {}
    for threat in linddun:
        assert len(threat.linddun) == 1 and threat.trim, threat.id
        table.setdefault(threat.targets[0], set()).add(threat.linddun[0])
        kind = {"external-entity": "ENTITY", "process": "PROCESS", "data-store": "STORE", "data-flow": "FLOW"}
        assert threat.id == f"LINDDUN-{threat.linddun[0].upper()}-{kind[threat.targets[0]]}"
    six = {"L", "I", "Nr", "D", "DD", "Nc"}
    assert table == {"external-entity": {"L", "I", "U"}, "process": six, "data-store": six, "data-flow": six}
    assert len(linddun) == 21


def test_every_shipped_threat_is_valid_and_usable() -> None:
    catalog = shipped_catalog()
    names = {t.value for t in ElementType} | {k.value for k in DfdKind}
    prefixes = {"stride": "STRIDE-", "linddun": "LINDDUN-", "ml": "ML-", "llm": "LLM-"}
    for threat in catalog:
        assert re.match(THREAT_ID, threat.id)
        assert threat.id.startswith(prefixes.get(threat.pack, "")), threat.id
        assert set(threat.targets) <= names, threat.id
        assert threat.risk_factors.rate().severity is not None  # all likelihood and technical factors present
        assert threat.mitigations, f"{threat.id} has no mitigations"
        assert threat.stride or threat.linddun or threat.atlas or threat.owasp, threat.id
        # The conditions were parsed (paths checked against the models) when the pack loaded.
        if threat.applies_when is not None:
            assert threat.applies_condition is not None
        if threat.mitigated_when is not None:
            assert threat.mitigated_condition is not None
            assert threat.mitigated_condition.describe()


def test_every_shipped_condition_evaluates_on_every_kind_of_element() -> None:
    """One element of every type and flows between them: nothing in the catalog may fail to evaluate."""
    types = [t.value for t in ElementType]

    def block(kind: ElementType) -> str:
        text = ", model: {outputs: scores, trained_on: [pii], artifact_format: pickle}" if kind in MODEL_TYPES else ""
        return text + (", llm: {untrusted_input: true, tools: [act], rag: true}" if kind in LLM_TYPES else "")

    elements = "\n".join(f"  - {{id: e-{t.value}, type: {t.value}{block(t)}}}" for t in ElementType)
    flows = "\n".join(f"  - {{from: e-{a}, to: e-{b}, data: [pii]}}" for a, b in itertools.pairwise(types))
    system = parse_system(
        f"""\
name: all types
data:
  - {{id: pii, personal: true, data_subjects: 10, origin: user-supplied}}
elements:
{elements}
flows:
{flows}
"""
    )
    result = apply_catalog(system, shipped_catalog())
    assert result.findings
    assert {f.threat.pack for f in result.findings} >= {"stride", "linddun"}


#: The OWASP option scores of the business factors a catalog entry may estimate.
BUSINESS_OPTIONS = {"financial_damage": {1, 3, 7, 9}, "reputation_damage": {1, 4, 5, 9}, "non_compliance": {2, 5, 7}}


def test_ml_and_llm_threats_estimate_business_impact_and_baselines_do_not() -> None:
    catalog = shipped_catalog()
    for threat in catalog:
        factors = threat.risk_factors
        estimates = {name: factors.get(name) for name in BUSINESS_OPTIONS}
        if threat.pack in ("ml", "llm"):
            for name, value in estimates.items():
                assert value in BUSINESS_OPTIONS[name], (threat.id, name, value)
            # PV comes from the system's data subjects; a catalog may only pin it to 0 (discloses nothing personal).
            assert factors.privacy_violation in (None, 0), threat.id
            if factors.privacy_violation == 0:
                assert "I" in threat.stride and not threat.linddun, threat.id
        else:
            # Baselines are generic: their business harm depends on the element, so they rate on technical impact.
            assert set(estimates.values()) == {None}, threat.id
            assert factors.privacy_violation is None, threat.id
    pinned = {t.id for t in catalog if t.risk_factors.privacy_violation == 0}
    assert {"ML-OUTPUT-RECON", "ML-CONFIDENCE-DISCLOSURE", "ML-EXTRACTION", "LLM-SYSTEM-PROMPT-LEAK"} <= pinned
    assert "ML-MEMBERSHIP-INFERENCE" not in pinned  # it discloses data about people


def test_describe_and_list_helpers() -> None:
    catalog = shipped_catalog()
    text = catalog.describe("STRIDE-S-PROCESS")
    assert text.startswith("STRIDE-S-PROCESS: ")
    assert "STRIDE: S (Spoofing)" in text
    assert "applies when: incoming: ((crosses a trust boundary or source: trust at most partner) and source: " in text
    assert "default risk: SL:6/" in text
    assert [t.id for t in catalog.list(pack="stride", stride="S")] == ["STRIDE-S-ENTITY", "STRIDE-S-PROCESS"]
    assert "LINDDUN-U-ENTITY" in [t.id for t in catalog.list(linddun="U")]
    on_stores = {t.id for t in catalog.list(pack="stride", target="dataset")}  # a type matches its DFD kind
    assert on_stores == {"STRIDE-T-STORE", "STRIDE-R-STORE", "STRIDE-I-STORE", "STRIDE-D-STORE"}
    row = catalog.rows(pack="linddun")[0]
    assert set(row) == {"id", "pack", "title", "targets", "categories"}
    assert "STRIDE-T-FLOW" in catalog and "NOPE-X" not in catalog
    with pytest.raises(KeyError, match="did you mean 'STRIDE-S-PROCESS'"):
        catalog.get("STRIDE-S-PROCES")


def test_lookup_by_element_type_uses_type_and_kind() -> None:
    catalog = shipped_catalog()
    model_threats = {t.id for t in catalog.for_element_type(ElementType.MODEL)}
    assert "STRIDE-S-PROCESS" in model_threats
    assert "STRIDE-T-STORE" not in model_threats
    assert {t.id for t in catalog.flow_threats} >= {"STRIDE-T-FLOW", "LINDDUN-DD-FLOW"}


# --- user packs -----------------------------------------------------------------------


def test_user_pack_loads_beside_the_shipped_ones(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(pack(entry()), encoding="utf-8")
    catalog = load_catalog([path], packs=["stride"])
    assert catalog.ids()[-1] == "ACME-ONE"
    assert catalog.get("ACME-ONE").pack == "acme"
    assert [p.name for p in catalog.packs] == ["stride", "acme"]
    assert not catalog.packs[-1].shipped
    assert catalog.version == "stride 2026.11.0, acme 1.0.0"


def test_duplicate_id_across_packs_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(pack(entry("ACME-ONE") + entry("STRIDE-S-PROCESS")), encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalog([path])
    err = info.value
    assert err.file == str(path) and err.line == 9 and err.field == "threats[1].id"
    assert "duplicate threat id 'STRIDE-S-PROCESS' (already defined in pack 'stride'" in err.message


def test_duplicate_pack_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stride.yaml"
    path.write_text(pack(entry(), name="stride"), encoding="utf-8")
    with pytest.raises(CatalogError, match="pack 'stride' is already loaded"):
        load_catalog([path])


def test_unknown_shipped_pack_is_refused() -> None:
    with pytest.raises(CatalogError, match="unknown catalog pack 'strid'"):
        load_catalog(packs=["strid"])


def test_the_documented_example_pack_works() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "threat-catalog-format.md").read_text(encoding="utf-8")
    example = doc.split("## A complete example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    acme, threats = parse_pack(example, "acme.yaml")
    assert acme.name == "acme" and [t.id for t in threats] == ["ACME-SCORE-LEAK"]
    system = parse_system(
        """\
name: doc
elements:
  - {id: user, type: end-user}
  - {id: upload-api, type: api}
  - {id: clf, type: model, model: {outputs: scores}}
flows:
  - {from: user, to: upload-api}
  - {from: upload-api, to: clf}
"""
    )
    result = apply_catalog(system, Catalog(threats, [acme]))
    (finding,) = result.findings
    assert finding.id == "ACME-SCORE-LEAK@clf"
    assert finding.applies_because == [
        "model.outputs is 'scores'",
        "reachable from untrusted 'user' via user → upload-api → clf",
    ]
    assert finding.unmitigated_because == [
        "no control 'output-hardening'",
        "reachable from untrusted 'user' via user → upload-api → clf, avoiding any control of [rate-limiting, "
        "query-monitoring]",
    ]


# --- errors with lines ----------------------------------------------------------------


def test_bad_condition_names_file_line_and_field() -> None:
    text = pack(
        entry(
            extra="""\
    applies_when:
      all:
        - type: [model]
        - contorl: waf
"""
        )
    )
    err = catalog_error(text)
    assert (err.file, err.line, err.field) == ("acme.yaml", 12, "threats[0].applies_when.all[1].contorl")
    assert err.message == "unknown condition 'contorl' (did you mean 'control'?)"


def test_bad_attribute_path_in_mitigated_when() -> None:
    err = catalog_error(pack(entry(extra="    mitigated_when:\n      attr: {path: model.outptus, equals: scores}\n")))
    assert err.line == 10 and err.field == "threats[0].mitigated_when.attr.path"
    assert "did you mean 'outputs'?" in err.message


def test_flow_threat_paths_are_checked_against_flows() -> None:
    body = entry(extra="    applies_when: {attr: {path: model.outputs, equals: scores}}\n").replace(
        "targets: [model]", "targets: [data-flow]"
    )
    err = catalog_error(pack(body))
    assert "unknown field 'model'" in err.message


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            pack(entry().replace("targets: [model]", "targets: [modle]")),
            7,
            "threats[0].targets",
            "unknown target 'modle' (did you mean 'model'?)",
        ),
        (pack(entry().replace("SL: 5, ", "")), 8, "threats[0].risk", "missing SL"),
        (pack(entry().replace("SL: 5", "SL: 12")), 8, "threats[0].risk", "skill_level"),
        (pack(entry().replace("SL: 5", "XX: 5")), 8, "threats[0].risk", "unknown risk factor 'XX'"),
        (
            pack(entry().replace("title: One", "titel: One")),
            5,
            "threats[0].titel",
            "unknown field 'titel' (did you mean 'title'?)",
        ),
        (pack(entry().replace("    title: One\n", "")), 4, "threats[0].title", "required field is missing"),
        (pack(entry("acme-one")), 4, "threats[0].id", "should match pattern"),
        (pack(entry() + entry()), 9, "threats[1].id", "duplicate threat id 'ACME-ONE' (first at entry 0)"),
        (pack(entry(extra="    owasp: [ML01]\n")), 9, "threats[0].owasp", "with its year"),
        (
            pack(entry(extra="    mitigations: [{id: x, title: y, controls: [rate-limit]}]\n")),
            9,
            "threats[0].mitigations[0].controls[0]",
            "unknown value 'rate-limit' (did you mean 'rate-limiting'?)",
        ),
        (pack(entry(extra="    pack: other\n")), 9, "threats[0].pack", "entry says pack 'other'"),
        ("catalog: acme\nversion: 1.5\nthreats: []\n", 2, "version", 'quote it: "1.5"'),
        ("catalog: Acme\nversion: '1'\nthreats: []\n", 1, "catalog", "lower-case"),
        ("catalog: acme\nversion: '1'\nthreat: []\n", 3, "threat", "did you mean 'threats'?"),
        ("catalog: acme\nversion: '1'\n", 1, "threats", "required field is missing"),
        ("catalog: acme\nversion: '1'\nthreats: {}\n", 3, "threats", "threats must be a list"),
        ("catalog: acme\nversion: '1'\nthreats:\n  - just text\n", 4, "threats[0]", "must be a mapping"),
        ("- a list\n", 1, None, "a catalog file is a mapping"),
        ("catalog: acme\nversion: '1'\nthreats: [\n", 4, None, "YAML syntax error"),
    ],
)
def test_pack_errors_are_located(text: str, line: int, field: str | None, message: str) -> None:
    err = catalog_error(text)
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert message in err.message, str(err)


def test_threat_built_in_python_parses_its_conditions() -> None:
    threat = Threat(
        id="PY-ONE",
        title="t",
        description="d",
        pack="py",
        targets=["data-flow"],
        risk={"SL": 1, "M": 1, "O": 1, "S": 1, "ED": 1, "EE": 1, "A": 1, "ID": 1, "LC": 1, "LI": 1, "LAV": 1, "LAC": 1},
        applies_when={"encrypted": False},
    )
    assert threat.subject_kind == "flow"
    assert threat.applies_condition is not None and threat.applies_condition.describe() == "not encrypted"
    assert threat.mitigated_condition is None
    with pytest.raises(CatalogError, match="applies only to elements"):
        Threat.model_validate({**threat.model_dump(), "applies_when": {"receives_from": {"type": "api"}}})
