"""Output files are replaced atomically, links are followed, and devices are never clobbered."""

from __future__ import annotations

import stat
from pathlib import Path

from modelward.core.files import write_text_atomic


def test_new_and_existing_files(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_symlink_is_followed_not_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_device_is_written_not_replaced() -> None:
    null = Path("/dev/null")
    write_text_atomic(null, "discarded")
    assert stat.S_ISCHR(null.stat().st_mode)
