"""Writing output files without ever leaving a half-written file or clobbering what is not a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 text to ``path`` so a reader sees the old content or the new, never a mix.

    A regular file (or a new one) is written through an unpredictable temporary file in the same
    folder and an atomic rename. A symbolic link is followed, so the file it names is replaced and
    the link kept. Anything else that exists there (``/dev/null``, a pipe) is written to directly,
    never replaced.
    """
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        return path
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)  # outputs are meant to be read; mkstemp creates files 0600
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
