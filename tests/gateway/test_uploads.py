"""Upload validation: images judged by content, bombs refused before decoding, tables by schema."""

from __future__ import annotations

import io
import math
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from modelward.gateway.uploads import (
    ImageLimits,
    TabularSchema,
    UploadRejected,
    detect_format,
    image_to_digits_tensor,
    validate_digit_upload,
    validate_image,
    validate_tabular,
)


def _encode(fmt: str, size: tuple[int, int] = (32, 24), mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    channels = len(mode)
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def _flat_png(width: int, height: int) -> bytes:
    """A single-colour 1-bit PNG written row by row: a few hundred KB on disk, huge once decoded."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    data = b"".join(parts) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_real_images_accepted(fmt: str) -> None:
    data = _encode(fmt)
    checked = validate_image(data)
    assert (checked.format, checked.width, checked.height) == (fmt, 32, 24)
    assert checked.image.size == (32, 24)


def test_detected_by_content_not_name() -> None:
    png = _encode("PNG")
    # there is no name or declared type in the API at all: only bytes decide
    assert detect_format(png) == "PNG"
    assert validate_image(png).format == "PNG"
    assert detect_format(b"hello world") is None


@pytest.mark.parametrize(
    "data",
    [
        b"just some text, named cat.png",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b"<svg onload=alert(1)>",
        b"BM" + b"\x00" * 100,  # BMP: a real image format, but not on the allow-list
    ],
)
def test_non_images_refused_415(data: bytes) -> None:
    with pytest.raises(UploadRejected) as err:
        validate_image(data)
    assert err.value.reason == "unsupported_type" and err.value.http_status == 415


def test_polyglots_refused() -> None:
    png = _encode("PNG")
    with pytest.raises(UploadRejected) as appended:
        validate_image(png + b"PK\x03\x04" + b"\x00" * 40)  # PNG + ZIP
    assert appended.value.reason == "polyglot" and appended.value.http_status == 422
    # HTML hidden in a text chunk, still a valid PNG for any decoder
    iend = png.rfind(b"IEND") - 4
    with_html = png[:iend] + _chunk(b"tEXt", b"Comment\x00<html><script>alert(1)</script>") + png[iend:]
    assert Image.open(io.BytesIO(with_html)).format == "PNG"
    with pytest.raises(UploadRejected) as hidden:
        validate_image(with_html)
    assert hidden.value.reason == "polyglot"
    for markup in (b"< SCRIPT src=x>", b"<?PHP echo 1;", b"JavaScript:alert(1)", b"<Svg onload=x>"):
        shouting = png[:iend] + _chunk(b"tEXt", b"Comment\x00" + markup) + png[iend:]
        with pytest.raises(UploadRejected) as any_case:
            validate_image(shouting)
        assert any_case.value.reason == "polyglot", markup
    harmless = png[:iend] + _chunk(b"tEXt", b"Comment\x00a < b, scripted later") + png[iend:]
    assert validate_image(harmless).format == "PNG"


def test_oversize_body_refused_413() -> None:
    data = _encode("PNG", size=(64, 64))
    with pytest.raises(UploadRejected) as err:
        validate_image(data, ImageLimits(max_bytes=len(data) - 1))
    assert err.value.reason == "too_large" and err.value.http_status == 413
    assert validate_image(data, ImageLimits(max_bytes=len(data))).width == 64


def test_decompression_bomb_refused_without_decoding() -> None:
    bomb = _flat_png(20_000, 20_000)
    assert len(bomb) < 1_000_000
    start = time.perf_counter()
    with pytest.raises(UploadRejected) as err:
        validate_image(bomb, ImageLimits(max_bytes=2_000_000))
    assert time.perf_counter() - start < 1.0  # decoding 400 Mpx would take far longer
    assert err.value.reason == "too_many_pixels" and err.value.http_status == 413
    # below Pillow's own bomb threshold, our stricter header check refuses it
    with pytest.raises(UploadRejected, match="limit is 4000000 pixels") as ours:
        validate_image(_flat_png(3000, 3000))
    assert ours.value.reason == "too_many_pixels"


def test_ratio_rule_catches_bomb_under_pixel_limit() -> None:
    flat = _flat_png(1800, 1800)  # 3.24 Mpx: below the pixel limit, but ~1000x inflation
    with pytest.raises(UploadRejected) as err:
        validate_image(flat)
    assert err.value.reason == "decompression_ratio"
    assert validate_image(flat, ImageLimits(max_ratio=1e6)).width == 1800


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_images_refused(fmt: str) -> None:
    data = _encode(fmt, size=(48, 48))
    with pytest.raises(UploadRejected) as err:
        validate_image(data[: len(data) * 2 // 3])
    assert err.value.http_status == 422
    assert err.value.reason in {"truncated", "malformed"}


def test_corrupt_png_body_refused() -> None:
    data = bytearray(_encode("PNG", size=(48, 48)))
    idat = data.find(b"IDAT") + 10
    data[idat : idat + 20] = b"\xff" * 20
    with pytest.raises(UploadRejected) as err:
        validate_image(bytes(data))
    assert err.value.reason == "malformed"


def test_digits_tensor() -> None:
    img = Image.new("L", (32, 32), 0)
    img.paste(255, (8, 0, 24, 32))  # a bright vertical bar in the middle
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    x = validate_digit_upload(buf.getvalue())
    assert x.shape == (1, 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x[..., 3:5].mean()) > 0.9 and float(x[..., 0].mean()) < 0.1
    inverted = image_to_digits_tensor(img, invert=True)
    assert torch.allclose(inverted, 1.0 - x, atol=1e-6)


def test_tabular_schema() -> None:
    schema = TabularSchema(n_features=3, lower=[-1.0, 0.0, -5.0], upper=5.0, max_rows=4)
    table = validate_tabular([[0, 1.5, -5], [4.0, 0.0, 5]], schema)
    assert table.shape == (2, 3) and table.dtype == torch.float32
    cases = {
        "malformed": [[]][0:0],
        "schema": [[1.0, 2.0]],
        "not_finite": [[0.0, math.nan, 0.0]],
        "out_of_bounds": [[-2.0, 1.0, 1.0]],
        "too_many_rows": [[0.0, 0.0, 0.0]] * 5,
    }
    for reason, rows in cases.items():
        with pytest.raises(UploadRejected) as err:
            validate_tabular(rows, schema)
        assert err.value.reason == reason
    with pytest.raises(UploadRejected, match="number"):
        validate_tabular([[True, 1.0, 1.0]], schema)
    with pytest.raises(UploadRejected, match="number"):
        validate_tabular([["1", 1.0, 1.0]], schema)
    with pytest.raises(UploadRejected) as inf_err:
        validate_tabular([[0.0, 0.0, math.inf]], TabularSchema(3))  # unbounded schema still needs finite values
    assert inf_err.value.reason == "not_finite"
