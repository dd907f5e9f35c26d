"""``cifar10`` and ``cifar100``: torchvision's on-disk format, read by torchvision's own CIFAR classes.

Files live under ``root`` (default ``$BACKDROP_DATA/<name>`` or ``data/<name>``) exactly as torchvision
extracts them: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` and
``root/cifar-100-python/{train,test,meta}``. Pools: ``train`` and ``val`` (= the test split). Class names are
the meta file's label names with underscores as spaces (CIFAR-100 uses the 100 fine labels).

torchvision checks every file's md5 before reading; that is kept for ``verify=True`` and otherwise only the
files' presence is checked, so copies re-pickled by other tools (and the tests' tiny fakes) load too.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from core import store
from core.datasets.base import ImageDataset
from core.datasets.folders import default_root
from core.datasets.registry import DATASETS
from core.errors import InvalidInputError, MissingResourceError


@functools.lru_cache(maxsize=64)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    return store.file_hash(path)


class _Cifar(ImageDataset):
    tv_name = ""  # torchvision.datasets class name
    web = "https://www.cs.toronto.edu/~kriz/cifar.html"

    def __init__(self, root: str | Path | None = None, download: bool = False, verify: bool = False):
        self.root = Path(root).expanduser() if root is not None else default_root(self.name)
        self.verify = bool(verify)
        base = self._tv_base()
        self.folder = self.root / base.base_folder
        if download and self._missing(base):
            try:
                base(str(self.root), train=True, download=True)
            except Exception as e:  # no network, refused, bad archive: all leave the files missing
                raise MissingResourceError(self._missing_message(base, f"download=True failed ({e}). ")) from e
        if self._missing(base):
            raise MissingResourceError(self._missing_message(base))
        self._tv: dict[str, Any] = {}  # pool -> the torchvision dataset (CIFAR10, CIFAR100, ...)
        self._tv["val"] = self._open(False)
        self.classes = [c.replace("_", " ") for c in self._tv["val"].classes]
        self._key: str | None = None

    # -- the ImageDataset contract ------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        if self._key is None:
            base = self._tv_base()
            files = [self.folder / f for f, _ in base.train_list + base.test_list] + [
                self.folder / base.meta["filename"]
            ]
            hashes = [_file_hash(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
            self._key = store.make_key(self.name, self.classes, hashes)
        return self._key

    def pools(self) -> list[str]:
        return ["train", "val"]

    def index(self, pool: str) -> pd.DataFrame:
        tv = self._pool(pool)
        return pd.DataFrame(
            {
                "image_id": [f"{pool}/{i:05d}" for i in range(len(tv.data))],
                "label": np.asarray(tv.targets, dtype=np.int64),
            }
        )

    def load(self, image_id: str) -> Image.Image:
        pool, _, row = str(image_id).partition("/")
        data = self._pool(pool).data if pool in ("train", "val") else None
        if data is None or not row.isdigit() or int(row) >= len(data):
            raise InvalidInputError(f"{self.name} has no image {image_id!r}; ids look like 'val/00042'.")
        return Image.fromarray(data[int(row)])

    # -- torchvision -------------------------------------------------------------------------------------------
    def _tv_base(self):
        import torchvision.datasets

        return getattr(torchvision.datasets, self.tv_name)

    def _tv_class(self):
        base = self._tv_base()
        if self.verify:
            return base
        # torchvision's check_integrity(path, md5=None) checks presence only
        return type(
            f"Present{base.__name__}",
            (base,),
            {
                "train_list": [[f, None] for f, _ in base.train_list],
                "test_list": [[f, None] for f, _ in base.test_list],
                "meta": {**base.meta, "md5": None},
            },
        )

    def _missing(self, base) -> list[str]:
        names = [f for f, _ in base.train_list + base.test_list] + [base.meta["filename"]]
        return [n for n in names if not (self.folder / n).is_file()]

    def _missing_message(self, base, prefix: str = "") -> str:
        return (
            f"{prefix}{self.name} not found: expected {', '.join(self._missing(base))} in {self.folder}. "
            f"Download {base.filename} from {self.web} and extract it in {self.root} (it creates "
            f"{base.base_folder}/), point root= or $BACKDROP_DATA at a folder that has it, or pass "
            "download=True on a machine with network access."
        )

    def _open(self, train: bool):
        try:
            return self._tv_class()(str(self.root), train=train, download=False)
        except RuntimeError as e:  # torchvision's "not found or corrupted"
            raise InvalidInputError(
                f"{self.name} files in {self.folder} failed torchvision's check ({e}); re-extract the archive there."
            ) from e
        except (OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as e:
            raise InvalidInputError(
                f"Cannot read {self.name} from {self.folder} ({type(e).__name__}: {e}); "
                "the files look damaged: re-extract the archive there."
            ) from e

    def _pool(self, pool: str):
        if pool not in ("train", "val"):
            raise InvalidInputError(f"{self.name} has no pool {pool!r}; its pools are train, val.")
        if pool not in self._tv:
            self._tv[pool] = self._open(True)
        return self._tv[pool]


@DATASETS.register("cifar10", offline_world=False)
class Cifar10(_Cifar):
    name = "cifar10"
    tv_name = "CIFAR10"


@DATASETS.register("cifar100", offline_world=False)
class Cifar100(_Cifar):
    name = "cifar100"
    tv_name = "CIFAR100"
