"""``imagefolder`` and ``imagenet``: local folders of class sub-folders, indexed once and cached.

Layout: ``root/train/<class>/…`` and ``root/val/<class>/…``; for ``imagefolder`` a flat ``root/<class>/…``
also works and is split into train/val per class by a seeded hash of each file's relative path (the
val_fraction of files with the smallest hashes, at least one per class). Every file is checked cheaply once
when indexing (PIL ``verify`` plus a JPEG end-marker check for truncation); corrupt, truncated and non-image
files are skipped, listed in ``skipped`` and warned about, never fatal; so are images over
``validate.MAX_IMAGE_PIXELS`` (a clear per-file reason, not PIL's decompression-bomb warning). Images are opened
with :func:`open_rgb`, which scales 16-bit and float images to 8 bits instead of clipping them; ``report()``
counts usable images, skipped files by reason, and files that failed to decode later. The index is cached under
``cache/datasets/<name>/`` keyed by the folder's path and the modification times of its class folders, so
adding or removing files re-indexes. Image ids are paths relative to ``root``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core import store, validate
from core.datasets.base import ImageDataset
from core.datasets.registry import DATASETS
from core.errors import InvalidInputError, MissingResourceError
from core.progress import ProgressFn, StopFn, check_stop, no_progress

INDEX_VERSION = 1
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
IMAGENET_NAME_FILES = ("LOC_synset_mapping.txt", "synset_words.txt", "classnames.txt")


def default_root(name: str) -> Path:
    """``$BACKDROP_DATA/<name>``, else ``data/<name>`` in the project folder."""
    base = os.environ.get("BACKDROP_DATA")
    return (Path(base) if base else Path(__file__).resolve().parents[2] / "data") / name


def _open(path: Path) -> Image.Image:
    """PIL's lazy open with our pixel limit instead of its decompression-bomb warning/error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:
            raise InvalidInputError(f"{path.name}: {_too_large(None)}") from None
    w, h = im.size
    if w * h > validate.MAX_IMAGE_PIXELS:
        im.close()
        raise InvalidInputError(f"{path.name}: {_too_large((w, h))}")
    return im


def _too_large(size: tuple[int, int] | None) -> str:
    shown = f"{size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} M pixels" if size else "far too many pixels"
    return (
        f"image too large ({shown}; at most {validate.MAX_IMAGE_PIXELS / 1e6:.0f} M pixels are read). "
        "Downscale it or remove it."
    )


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB, with 16-bit ('I;16*', 'I' holding 0..65535) and float ('F') images scaled, not clipped:
    PIL's own ``convert('RGB')`` clips them at 255, so a 16-bit photo becomes almost white."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if top == 65535.0 and a.max(initial=0) > 65535:  # 32-bit data: scale by its own range
            top = float(a.max())
        return Image.fromarray(np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        lo, hi = (0.0, 1.0) if a.size and a.min() >= 0 and a.max() <= 1 else (a.min(initial=0), a.max(initial=1))
        scaled = (a - lo) * (255.0 / (hi - lo if hi > lo else 1.0))
        return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """A user's image file as 8-bit RGB (see :func:`to_rgb`); InvalidInputError naming the file when it is
    over the pixel limit."""
    with _open(Path(path)) as im:
        return to_rgb(im)


def check_image(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or None when it is."""
    if path.suffix.lower() not in IMG_EXTENSIONS:
        return f"not an image file (extension {path.suffix or 'none'!r})"
    try:
        with _open(path) as im:
            fmt = im.format
            im.verify()
    except InvalidInputError as e:
        return str(e).split(": ", 1)[1]
    except Exception as e:  # PIL raises many types for bad files; any of them means "skip this file"
        return f"unreadable image ({type(e).__name__}: {e})"
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 1024))
            if b"\xff\xd9" not in f.read():  # verify() does not decode JPEG data, so look for the end marker
                return "truncated JPEG (no end-of-image marker)"
    return None


def _stable_fraction(seed: int, relpath: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{relpath}".encode()).digest()[:8], "big") / 2**64


def _unique(names: list[str], fallback: list[str]) -> list[str]:
    """``names`` with any repeated name made unique by appending its fallback in brackets."""
    counts = pd.Series(names).value_counts()
    return [f"{n} ({f})" if counts[n] > 1 else n for n, f in zip(names, fallback)]


@DATASETS.register("imagefolder", offline_world=False)
class ImageFolderDataset(ImageDataset):
    """Any local folder of class sub-folders: ``create_dataset("imagefolder", root=...)``."""

    name = "imagefolder"

    def __init__(
        self,
        root: str | Path | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ):
        if root is None:
            raise InvalidInputError(f"{self.name} needs root=<folder with one sub-folder per class>.")
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise MissingResourceError(self._missing_message())
        if not 0.0 < val_fraction < 1.0:
            raise InvalidInputError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}.")
        self.val_fraction, self.seed = float(val_fraction), int(seed)
        self.split_dirs = self._split_dirs()
        self.folders = sorted(
            {
                d.name
                for base in self.split_dirs.values()
                if base.is_dir()
                for d in base.iterdir()
                if d.is_dir() and not d.name.startswith(".")
            }
        )
        if not self.folders:
            raise InvalidInputError(
                f"No class folders found in {self.root}: put each class's images in its own "
                "sub-folder (root/<class>/image.jpg, or root/train/<class>/ and root/val/<class>/)."
            )
        self.classes = self._class_names()
        self._df, self.skipped, self._key = self._load_or_index(progress or no_progress, should_stop)
        self._ids = set(self._df["image_id"])
        self.decode_errors: dict[str, str] = {}  # image_id -> reason, for files that passed indexing but not decoding
        if self.skipped:
            warnings.warn(
                f"{self.name}: skipped {len(self.skipped)} unusable file(s) under {self.root}, e.g. "
                + "; ".join(f"{p}: {r}" for p, r in self.skipped[:3])
                + ". The full list is in the dataset's `skipped` attribute.",
                stacklevel=2,
            )

    # -- the ImageDataset contract ------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self._key

    def pools(self) -> list[str]:
        return ["train", "val"]

    def index(self, pool: str) -> pd.DataFrame:
        if pool not in ("train", "val"):
            raise InvalidInputError(f"{self.name} has no pool {pool!r}; its pools are train, val.")
        return self._df.loc[self._df["pool"] == pool, ["image_id", "label"]].reset_index(drop=True)

    def load(self, image_id: str) -> Image.Image:
        if image_id not in self._ids:
            raise InvalidInputError(f"{self.name} has no image {image_id!r} under {self.root}.")
        try:
            return open_rgb(self.root / image_id)
        except Exception as e:  # passed the cheap check at indexing but fails to decode
            self.decode_errors[image_id] = f"{type(e).__name__}: {e}"
            raise InvalidInputError(
                f"Cannot decode {self.root / image_id} ({type(e).__name__}: {e}); delete or "
                "replace the file and the folder will be re-indexed."
            ) from e

    def report(self) -> dict:
        """Usable images per pool, skipped files counted by reason, and decode errors met since opening."""
        reasons: dict[str, int] = {}
        for _, reason in self.skipped:
            kind = reason.split(" (", 1)[0]
            reasons[kind] = reasons.get(kind, 0) + 1
        return {
            "images": {pool: int((self._df["pool"] == pool).sum()) for pool in self.pools()},
            "skipped": len(self.skipped),
            "skipped_by_reason": reasons,
            "decode_errors": len(self.decode_errors),
        }

    # -- layout ------------------------------------------------------------------------------------------------
    def _missing_message(self) -> str:
        return (
            f"Image folder {self.root} does not exist. Pass root= a folder with one sub-folder of images per "
            "class (or with train/ and val/ folders that each hold the class sub-folders)."
        )

    def _split_dirs(self) -> dict[str, Path]:
        if (self.root / "train").is_dir() and (self.root / "val").is_dir():
            return {"train": self.root / "train", "val": self.root / "val"}
        return {"": self.root}

    def _class_names(self) -> list[str]:
        return _unique([f.replace("_", " ") for f in self.folders], self.folders)

    # -- indexing ----------------------------------------------------------------------------------------------
    def _class_dirs(self) -> list[tuple[str, int, Path]]:
        """(pool or "", label, folder) for every class folder present."""
        return [
            (pool, k, base / f)
            for pool, base in self.split_dirs.items()
            for k, f in enumerate(self.folders)
            if (base / f).is_dir()
        ]

    def _load_or_index(self, progress: ProgressFn, should_stop: StopFn | None):
        dirs = self._class_dirs()
        stamp = [(str(d.relative_to(self.root)), os.stat(d).st_mtime_ns) for _, _, d in dirs]
        cache_dir = (
            store.cache_root()
            / "datasets"
            / self.name
            / store.make_key(str(self.root), stamp, self.val_fraction, self.seed, INDEX_VERSION)
        )
        meta = store.load_json(cache_dir / "index.json")
        if meta is not None:
            try:
                return pd.read_parquet(cache_dir / "index.parquet"), [tuple(s) for s in meta["skipped"]], meta["key"]
            except (OSError, ValueError, KeyError):
                pass
        rows, skipped = self._scan(dirs, progress, should_stop)
        df = pd.DataFrame(rows, columns=["image_id", "label", "pool", "bytes", "mtime_ns"])
        key = store.make_key(self.name, self.classes, str(self.root), store.make_key(df.values.tolist()))
        with store.atomic_path(cache_dir / "index.parquet") as tmp:
            df.to_parquet(tmp, index=False)
        store.save_json(cache_dir / "index.json", {"key": key, "skipped": skipped, "root": str(self.root)})
        return df, [tuple(s) for s in skipped], key

    def _scan(self, dirs, progress: ProgressFn, should_stop: StopFn | None):
        files = []
        for pool, label, d in dirs:
            for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
                dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
                files += [(pool, label, Path(dirpath) / f) for f in sorted(filenames) if not f.startswith(".")]
        rows, skipped, good = [], [], {}
        for i, (pool, label, p) in enumerate(files):
            if i % 200 == 0:
                check_stop(should_stop)
                progress(i, len(files), f"Checking images in {self.root}")
            rel = p.relative_to(self.root).as_posix()
            reason = check_image(p)
            if reason:
                skipped.append([rel, reason])
                continue
            st = p.stat()
            rows.append((rel, label, pool, st.st_size, st.st_mtime_ns))
            good[(label, p.relative_to(self.root).parts[0])] = True
        progress(len(files), len(files), f"Checking images in {self.root}")
        if "" in self.split_dirs:
            rows = self._hash_split(rows)
        for _pool, label, d in dirs:
            top = d.relative_to(self.root).parts[0]
            if (label, top) not in good:
                bad = [f"{p}: {r}" for p, r in skipped if p.startswith(d.relative_to(self.root).as_posix() + "/")]
                raise InvalidInputError(
                    f"Class folder {d} has no readable images"
                    + (f" ({len(bad)} unusable: {'; '.join(bad[:3])})" if bad else " (it is empty)")
                    + ". Add images to it or remove the folder."
                )
        return rows, skipped

    def _hash_split(self, rows: list[tuple]) -> list[tuple]:
        """Per class, the round(val_fraction·n) files (at least one when n >= 2) with the smallest seeded hash
        of their relative path go to val: a file's side depends on its path, not on the listing order."""
        by_class: dict[int, list[tuple]] = {}
        for row in rows:
            by_class.setdefault(row[1], []).append(row)
        val = set()
        for group in by_class.values():
            n_val = max(int(round(self.val_fraction * len(group))), 1 if len(group) >= 2 else 0)
            val |= {r[0] for r in sorted(group, key=lambda r: _stable_fraction(self.seed, r[0]))[:n_val]}
        return [(rel, label, "val" if rel in val else "train", *rest) for rel, label, _, *rest in rows]


@DATASETS.register("imagenet", offline_world=False)
class ImageNet(ImageFolderDataset):
    """ImageNet in ImageFolder layout: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``.

    Class order is the sorted wnids (the standard 1k order); human names come from a mapping file in root
    (``LOC_synset_mapping.txt`` / ``synset_words.txt`` / ``classnames.txt``: "<wnid> name, other names") or
    else from timm's ImageNetInfo, which ships with timm and works offline.
    """

    name = "imagenet"

    def __init__(
        self, root: str | Path | None = None, progress: ProgressFn | None = None, should_stop: StopFn | None = None
    ):
        super().__init__(
            root if root is not None else default_root("imagenet"), progress=progress, should_stop=should_stop
        )

    def _missing_message(self) -> str:
        return (
            f"ImageNet not found at {self.root}. Put it there (or pass root=, or set $BACKDROP_DATA) in "
            "ImageFolder layout: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (sort the validation images into "
            "wnid folders, e.g. with the valprep.sh script from the PyTorch ImageNet example). ImageNet "
            "cannot be downloaded automatically."
        )

    def _split_dirs(self) -> dict[str, Path]:
        dirs = super()._split_dirs()
        if "" in dirs:
            raise MissingResourceError(self._missing_message())
        return dirs

    @property
    def wnids(self) -> list[str]:
        return list(self.folders)

    def _class_names(self) -> list[str]:
        names = self._names_from_file()
        if names is None:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            known = set(info.label_names())
            names = {w: info.label_name_to_description(w) for w in self.folders if w in known}
        first = [names.get(w, w).split(",")[0].strip() or w for w in self.folders]
        return _unique(first, self.folders)

    def _names_from_file(self) -> dict[str, str] | None:
        for fname in IMAGENET_NAME_FILES:
            p = self.root / fname
            if p.is_file():
                pairs = (line.strip().split(maxsplit=1) for line in p.read_text().splitlines())
                return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
        return None
