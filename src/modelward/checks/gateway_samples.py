"""Uploads a gateway prober sends: valid images, and the hostile files an upload filter must refuse.

All are made in memory with Pillow and zlib, seeded, so a check's probes are the same on every run.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, ImageDraw

__all__ = ["BadUpload", "bad_uploads", "decompression_bomb", "digit_image", "png_bytes", "valid_uploads"]


def digit_image(seed: int = 0, size: int = 32) -> Image.Image:
    """A grey-scale stand-in for a user's upload: a bright stroke on a dark square (deterministic)."""
    image = Image.new("L", (size, size), 0)
    column = size // 4 + seed % (size // 2)
    ImageDraw.Draw(image).rectangle(
        (column, size // 8, min(column + max(size // 10, 1) - 1, size - 1), size - size // 8 - 1), fill=255
    )
    return image


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_bytes(seed: int = 0) -> bytes:
    """A small valid PNG upload."""
    return _encode(digit_image(seed), "PNG")


def valid_uploads() -> dict[str, tuple[str, bytes, str]]:
    """Positive controls by name: (file name, bytes, content type) the gateway must accept."""
    image = digit_image(1)
    return {
        "valid GIF": ("upload.gif", _encode(image, "GIF"), "image/gif"),
        "valid WebP": ("upload.webp", _encode(image.convert("RGB"), "WEBP", lossless=True), "image/webp"),
    }


@dataclass(frozen=True)
class BadUpload:
    """A hostile upload: its name in the evidence, the file sent and why it must be refused."""

    name: str
    filename: str
    data: bytes
    content_type: str
    why: str


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def decompression_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A well-formed 1-bit PNG that declares ``width``×``height`` pixels of zeros in a few tens of KiB."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * 500) for _ in range(height // 500)]
    parts.append(compressor.compress(row * (height % 500)))
    parts.append(compressor.flush())
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def _markup_png() -> bytes:
    """A valid PNG whose text chunk carries an HTML page with script (a PNG/HTML polyglot)."""
    plain = png_bytes(2)
    end = plain.rindex(b"IEND") - 4
    html = b"Comment\0<html><body><script>alert(document.cookie)</script></body></html>"
    return plain[:end] + _chunk(b"tEXt", html) + plain[end:]


_SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
    b"<script>alert(1)</script><rect width='8' height='8'/></svg>"
)


def bad_uploads(oversize_bytes: int) -> list[BadUpload]:
    """The hostile uploads, each with the reason a careful gateway refuses it."""
    valid = png_bytes(3)
    return [
        BadUpload(
            "oversized body",
            "big.png",
            valid[:8] + b"\0" * max(oversize_bytes - 8, 0),
            "image/png",
            f"{oversize_bytes} bytes, above any sane upload limit",
        ),
        BadUpload(
            "decompression bomb",
            "bomb.png",
            decompression_bomb(),
            "image/png",
            "a small PNG that declares 20000×20000 pixels",
        ),
        BadUpload("truncated PNG", "cut.png", valid[: len(valid) // 2], "image/png", "the PNG stops half-way"),
        BadUpload(
            "HTML/PNG polyglot", "poly.png", _markup_png(), "image/png", "a PNG carrying an HTML page with script"
        ),
        BadUpload("SVG with script", "vector.png", _SVG, "image/png", "SVG markup with script, named .png"),
        BadUpload(
            "text named .png",
            "notes.png",
            b"just some text pretending to be an image\n" * 4,
            "image/png",
            "not an image at all",
        ),
    ]
