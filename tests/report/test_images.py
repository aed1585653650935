"""Evidence plots reach the report: embedded in HTML, linked from Markdown, and only safe files at that."""

from __future__ import annotations

import base64
from pathlib import Path

from conftest import make_register, make_system

from modelward.checks.base import Evidence
from modelward.report.images import PNG_SIGNATURE, load_images
from modelward.report.writer import write_report

PNG = PNG_SIGNATURE + b"\x00\x00\x00\rIHDR fake but signed"


def plot_evidence(*artifacts: str) -> Evidence:
    return Evidence(
        check="evasion.robust_accuracy",
        passed=False,
        message="robust accuracy 0.5",
        requirement="robust",
        artifacts=list(artifacts),
    )


def test_png_artifacts_are_embedded_in_html_and_linked_from_markdown(tmp_path: Path) -> None:
    (tmp_path / "artifacts" / "robust").mkdir(parents=True)
    (tmp_path / "artifacts" / "robust" / "robustness-curve.png").write_bytes(PNG)
    evidence = [plot_evidence("artifacts/robust/robustness-curve.png")]
    write_report(tmp_path, make_system(), make_register(), evidence=evidence, formats=("html", "md"))
    html = (tmp_path / "report.html").read_text()
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in html
    assert 'alt="robustness curve"' in html
    markdown = (tmp_path / "report.md").read_text()
    assert "![robustness curve](artifacts/robust/robustness-curve.png)" in markdown


def test_only_signed_pngs_inside_the_report_folder_are_loaded(tmp_path: Path) -> None:
    root = tmp_path / "report"
    (root / "a").mkdir(parents=True)
    (root / "a" / "good.png").write_bytes(PNG)
    (root / "a" / "fake.png").write_bytes(b"<svg onload=alert(1)>")
    (root / "a" / "notes.txt").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    names = ["a/good.png", "a/fake.png", "a/notes.txt", "../secret.png", "a/missing.png"]
    loaded = load_images(names, root)
    assert [image.path for image in loaded] == ["a/good.png"]


def test_a_path_with_spaces_is_linked_url_encoded(tmp_path: Path) -> None:
    (tmp_path / "my plots").mkdir()
    (tmp_path / "my plots" / "curve (1).png").write_bytes(PNG)
    [image] = load_images(["my plots/curve (1).png"], tmp_path)
    assert image.link == "my%20plots/curve%20%281%29.png"
