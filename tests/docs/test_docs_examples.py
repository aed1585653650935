"""The examples in the README and docs run as written: Python blocks execute, system files load."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelward.system.lint import LintLevel, lint_system
from modelward.system.loader import parse_system

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, match in enumerate(FENCE.finditer(doc.read_text(encoding="utf-8"))):
            if match.group(1) == language:
                found.append((f"{doc.name}#{i}", match.group(2)))
    return found


SYSTEM_BLOCKS = [(name, text) for name, text in blocks("yaml") if text.startswith("modelward: 1")]
PYTHON_BLOCKS = blocks("python")


def test_docs_have_examples() -> None:
    assert len(SYSTEM_BLOCKS) >= 2
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize(("name", "text"), SYSTEM_BLOCKS, ids=[n for n, _ in SYSTEM_BLOCKS])
def test_system_examples_load_without_lint_errors(name: str, text: str) -> None:
    system = parse_system(text, name)
    assert not [m for m in lint_system(system) if m.level is LintLevel.ERROR]


@pytest.mark.parametrize(("name", "text"), PYTHON_BLOCKS, ids=[n for n, _ in PYTHON_BLOCKS])
def test_python_examples_run(name: str, text: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=180, check=False, cwd=ROOT
    )
    assert result.returncode == 0, f"{name}: {result.stderr}"
