"""Evidence plots in the report: PNG artifacts embedded in the HTML page, linked from the Markdown.

Only files that lie inside the report folder, start with the PNG signature and stay under a size
cap are embedded, so a crafted artifact path can neither read files elsewhere nor bloat the page.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ArtifactImage:
    """One plot of a check: its path relative to the report, a caption, and (for HTML) its data URI."""

    path: str
    link: str
    caption: str
    data_uri: str


def caption_for(path: str) -> str:
    """A readable caption from a file name: ``robustness-curve.png`` → ``robustness curve``."""
    return PurePosixPath(path).stem.replace("-", " ").replace("_", " ")


def load_images(artifacts: list[str], root: Path) -> list[ArtifactImage]:
    """The PNG artifacts among ``artifacts`` (relative to ``root``) that are safe to embed, in order."""
    images = []
    base = root.resolve()
    for name in artifacts:
        if not name.lower().endswith(".png"):
            continue
        path = (base / name).resolve()
        if not path.is_relative_to(base) or not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
            continue
        data = path.read_bytes()
        if not data.startswith(PNG_SIGNATURE):
            continue
        encoded = base64.b64encode(data).decode("ascii")
        images.append(
            ArtifactImage(
                path=name,
                link=quote(name, safe="/"),
                caption=caption_for(name),
                data_uri=f"data:image/png;base64,{encoded}",
            )
        )
    return images
