"""Tiny on-disk datasets in the real formats: CIFAR pickles as torchvision extracts them, and image folders
with a corrupt, a truncated and a non-image file among the good ones."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def cifar_image(i: int) -> np.ndarray:
    """A 32x32x3 image whose every pixel differs by position and channel, so a transposed read shows."""
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([(r * 7 + i) % 256, (c * 5 + 3 * i) % 256, (r + c + 11 * i) % 256], -1).astype(np.uint8)


def _batch(ids: list[int], n_classes: int, fine: bool) -> dict:
    data = np.stack([cifar_image(i).transpose(2, 0, 1).reshape(-1) for i in ids])  # CIFAR rows: R plane, G, B
    labels = [i % n_classes for i in ids]
    out = {"batch_label": "fake", "data": data, "filenames": [f"img_{i}.png" for i in ids]}
    if fine:
        out |= {"fine_labels": labels, "coarse_labels": [l_ // 5 for l_ in labels]}
    else:
        out["labels"] = labels
    return out


def _dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_fake_cifar10(root: Path, per_batch: int = 4) -> Path:
    folder = root / "cifar-10-batches-py"
    for b in range(5):
        _dump(folder / f"data_batch_{b + 1}", _batch(list(range(b * per_batch, (b + 1) * per_batch)), 10, False))
    _dump(folder / "test_batch", _batch(list(range(1000, 1000 + 2 * per_batch)), 10, False))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return root


def write_fake_cifar100(root: Path, n_train: int = 12, n_test: int = 6) -> Path:
    folder = root / "cifar-100-python"
    _dump(folder / "train", _batch(list(range(n_train)), 100, True))
    _dump(folder / "test", _batch(list(range(1000, 1000 + n_test)), 100, True))
    fine = [f"class_{k:02d}" for k in range(99)] + ["aquarium_fish"]
    _dump(folder / "meta", {"fine_label_names": fine, "coarse_label_names": [f"super_{k}" for k in range(20)]})
    return root


def solid_image(colour: tuple[int, int, int], fmt: str = "PNG", size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format=fmt)
    return buf.getvalue()


def write_image_folder(
    root: Path, classes: dict[str, int], split: str | None = None, bad_files: bool = True
) -> list[str]:
    """``classes`` maps folder name -> number of good images; returns the relative paths of the bad files."""
    base = root / split if split else root
    bad = []
    for k, (folder, n) in enumerate(classes.items()):
        d = base / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            fmt = "PNG" if i % 2 else "JPEG"
            (d / f"img{i}.{'png' if fmt == 'PNG' else 'jpg'}").write_bytes(solid_image((40 * k, 10 * i, 200), fmt))
    if bad_files:
        d = base / next(iter(classes))
        (d / "corrupt.jpg").write_bytes(b"this is not a jpeg at all" * 10)
        jpeg = solid_image((1, 2, 3), "JPEG", size=64)
        (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
        png = solid_image((1, 2, 3), "PNG", size=64)
        (d / "truncated.png").write_bytes(png[: len(png) - 20])
        (d / "notes.txt").write_text("not an image")
        (d / ".DS_Store").write_bytes(b"\0\0")
        bad = [
            (d / f).relative_to(root).as_posix() for f in ("corrupt.jpg", "notes.txt", "truncated.jpg", "truncated.png")
        ]
    return bad
