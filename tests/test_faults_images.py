"""Bad-image corpus (issue 11): high bit depths and odd modes convert correctly, oversized and corrupt files are
skipped with a per-file reason (never PIL's raw decompression-bomb warning), decode errors are counted."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.datasets.folders import ImageFolderDataset, open_rgb
from core.errors import InvalidInputError

pytestmark = pytest.mark.faults


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small valid PNG whose header claims width x height (PIL reads the size without decoding)."""
    Image.new("L", (8, 8), 128).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


def _folder(tmp_path: Path) -> Path:
    for c in ("a", "b"):
        (tmp_path / c).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / c / f"ok{i}.png")
    return tmp_path


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)  # a 16-bit greyscale PNG
    assert Image.open(path).mode in ("I;16", "I")
    rgb = np.asarray(open_rgb(path))
    expected = np.round(ramp / 257.0)
    assert rgb.shape == (64, 64, 3) and np.abs(rgb[..., 0] - expected).max() <= 1
    assert 120 < rgb.mean() < 135  # PIL's own convert("RGB") clips to ~255 (almost white)


@pytest.mark.parametrize(
    "make,mean",
    [
        (lambda: Image.fromarray(np.full((16, 16), 0.5, np.float32), "F"), 128),  # float in [0, 1]
        (lambda: Image.new("CMYK", (16, 16), (0, 0, 0, 0)), 255),  # white in CMYK
        (lambda: Image.new("P", (16, 16), 0), 0),
        (lambda: Image.new("LA", (16, 16), (200, 255)), 200),
        (lambda: Image.new("1", (16, 16), 1), 255),
    ],
)
def test_other_modes_convert_to_8_bit_rgb(tmp_path, make, mean):
    path = tmp_path / "img.tiff"
    make().save(path)
    rgb = open_rgb(path)
    assert rgb.mode == "RGB" and abs(np.asarray(rgb).mean() - mean) <= 1


@pytest.mark.parametrize("side", [12_000, 20_000])
def test_oversized_images_are_skipped_with_a_clear_reason(tmp_path, side):
    root = _folder(tmp_path / "data")
    _png_claiming(root / "a" / "huge.png", side, side)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(root)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    reasons = dict(ds.skipped)
    assert "image too large" in reasons["a/huge.png"] and "M pixels are read" in reasons["a/huge.png"]
    if side == 12_000:
        assert "12000x12000 = 144 M pixels" in reasons["a/huge.png"]
    with pytest.raises(InvalidInputError, match="huge.png: image too large"):
        open_rgb(root / "a" / "huge.png")


def test_corrupt_files_are_counted_in_the_report(tmp_path):
    root = _folder(tmp_path / "data")
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("not an image")
    good = (root / "b" / "ok0.png").read_bytes()
    (root / "b" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "notes.txt").write_text("hello")
    _png_claiming(root / "b" / "huge.png", 12_000, 12_000)
    with pytest.warns(UserWarning, match="skipped 5"):
        ds = ImageFolderDataset(root)
    rep = ds.report()
    assert rep["skipped"] == 5 and sum(rep["images"].values()) == 6
    assert rep["skipped_by_reason"]["image too large"] == 1 and rep["skipped_by_reason"]["not an image file"] == 1
    # A file that breaks after indexing (same folder, same mtimes) fails at load and is counted.
    victim = ds.index("train")["image_id"].iloc[0]
    data = (root / victim).read_bytes()
    (root / victim).write_bytes(data[:40])
    with pytest.raises(InvalidInputError, match="Cannot decode"):
        ds.load(victim)
    assert ds.report()["decode_errors"] == 1
