"""The ``retrieval`` generator: real images for "{class} {value}" from an unlabelled image folder, by CLIP.

Instead of painting an image, each request's prompt (e.g. "A photo of sea lion desert") is embedded with a
CLIP and the pool's most similar images are returned, best first. Across the modes of one set no pool image is
returned twice while unused ones remain (modes take turns, one slot each, so no mode takes every good image);
when the pool runs out an image is reused and its manifest row says so (``info.reused``). The model's debug
and test images are never returned: the pool is matched to them by pixel content (:func:`protected_hashes`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from core.errors import InvalidInputError
from core.fix.generators.base import Generator, GenSpec
from core.fix.generators.pool import PoolIndex, index_pool, pool_files, pool_key, protected_hashes
from core.fix.generators.registry import GENERATORS
from core.progress import ProgressFn, StopFn, check_stop

RAN_OUT = "the pool ran out of unused images for this set; reused its best match for this mode"


@GENERATORS.register("retrieval", backend="retrieval")
class PoolRetriever(Generator):
    """``create_generator("retrieval", pool=<folder>, dataset=<dataset>, clip=<ClipModel>)``.

    ``dataset`` is the one the model is debugged on: its debug and test images are never returned. ``clip``
    defaults to the dataset's own (the world CLIP on the offline world, open_clip ViT-B-32 otherwise).
    """

    name = "retrieval"
    backend = "retrieval"
    max_batch_size = 64

    def __init__(
        self,
        pool: str | Path | None = None,
        dataset: Any = None,
        clip: Any = None,
        split_cfg: Any = None,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ):
        super().__init__()
        if pool is None:
            raise InvalidInputError("The retrieval generator needs a pool: the folder of images to retrieve from.")
        if dataset is None:
            raise InvalidInputError(
                "The retrieval generator needs the dataset being debugged, so that it never returns one of the "
                "model's debug or test images: create_generator('retrieval', pool=..., dataset=...)."
            )
        self.folder = Path(pool).expanduser().resolve()
        pool_files(self.folder)  # a missing or empty folder fails now, not mid-run
        self.dataset, self.split_cfg = dataset, split_cfg
        self._clip = clip
        self._index: PoolIndex | None = None  # built or loaded on first use
        self._protected: set[str] | None = None
        self._key: str | None = None
        self.progress, self.should_stop = progress, should_stop
        self.model_id = f"pool:{self.folder}"
        self.plan: dict[tuple[str, str | None, int], dict] = {}
        self.notices: list[str] = []

    @property
    def clip(self):
        if self._clip is None:
            from core.describe.textualize import default_clip

            self._clip = default_clip(self.dataset)
        return self._clip

    def config(self) -> dict[str, Any]:
        if self._key is None:
            self._key = pool_key(self.folder, self.clip.key)
        return {"pool": self._key, "clip": self.clip.key, "protected": self.dataset.key}

    @property
    def index(self) -> PoolIndex:
        if self._index is None:
            self._index = index_pool(self.folder, self.clip, progress=self.progress, should_stop=self.should_stop)
        return self._index

    @property
    def protected(self) -> set[str]:
        if self._protected is None:
            self._protected = protected_hashes(self.dataset, self.split_cfg, progress=self.progress)
        return self._protected

    def prepare(self) -> None:
        self.index  # noqa: B018 - index (or load) the pool now, with progress, before the first batch
        self.protected  # noqa: B018

    def allowed(self) -> np.ndarray:
        """Pool rows that may be returned: readable, and not one of the model's debug or test images."""
        return np.array([h is not None and h not in self.protected for h in self.index.pixel_hashes], bool)

    def begin(self, slots: Sequence[tuple[GenSpec, int, int]], existing: pd.DataFrame) -> None:
        """Assign a pool image to every pending slot: modes take turns, each taking its best unused match."""
        used: set[str] = set()
        for info in existing.get("info", pd.Series(dtype=object)):
            if isinstance(info, str) and info:
                h = json.loads(info).get("pool_hash")
                if h:
                    used.add(h)
        by_mode: dict[tuple[str, str | None], list[tuple[GenSpec, int, int]]] = {}
        for spec, i, seed in sorted(slots, key=lambda t: t[1]):
            by_mode.setdefault(spec.mode, []).append((spec, i, seed))
        modes = list(by_mode)
        allowed = self.allowed()
        if not allowed.any():
            raise InvalidInputError(
                f"Image pool {self.folder} has no usable image: every one is unreadable or is one of the model's "
                "debug or test images. Add other images to the pool."
            )
        depth = len(slots) + len(used)
        prompts = [by_mode[m][0][0].prompt for m in modes]
        scores, rows = self.index.search(self.clip.encode_texts(prompts), depth, allowed)
        hashes = self.index.pixel_hashes
        pointer = {m: 0 for m in modes}
        taken_by_mode: dict[tuple[str, str | None], set[str]] = {m: set() for m in modes}
        self.plan, self.notices = {}, []
        rounds = max(len(v) for v in by_mode.values())
        for r in range(rounds):
            for q, m in enumerate(modes):
                if r >= len(by_mode[m]):
                    continue
                spec, i, seed = by_mode[m][r]
                ranked = rows[q]
                while pointer[m] < len(ranked) and hashes[ranked[pointer[m]]] in used:
                    pointer[m] += 1
                note = None
                if pointer[m] < len(ranked):
                    pos = pointer[m]
                else:  # every match is taken: reuse the best one this mode has not used yet
                    fresh = [p for p, row in enumerate(ranked) if hashes[row] not in taken_by_mode[m]]
                    pos = fresh[0] if fresh else i % len(ranked)
                    note = RAN_OUT
                row = int(ranked[pos])
                h = hashes[row]
                if h is None:  # allowed() excludes unreadable files, so the search cannot return one
                    raise RuntimeError(f"Pool search returned unreadable file {self.index.files[row]!r}.")
                used.add(h)
                taken_by_mode[m].add(h)
                self.plan[(spec.class_name, spec.value, seed)] = {
                    "pool_file": self.index.files[row],
                    "pool_hash": h,
                    "similarity": round(float(scores[q][pos]), 5),
                    "rank": pos,
                    **({"reused": note} if note else {}),
                }
                if note:
                    self.notices.append(f"{spec.class_name} · {spec.value}: slot {i} reuses a pool image ({note}).")

    def generate_batch(
        self, prompts: list[str], seeds: list[int], specs: Sequence[GenSpec], should_stop: StopFn | None = None
    ) -> list[Image.Image | None]:
        images: list[Image.Image | None] = []
        self.last_info = []
        for spec, seed in zip(specs, seeds):
            check_stop(should_stop)
            entry = self.plan.get((spec.class_name, spec.value, int(seed)))
            if entry is None:
                raise InvalidInputError(
                    "The retrieval generator plans its picks for a whole set; run it through generate_set."
                )
            with Image.open(self.folder / entry["pool_file"]) as im:
                images.append(im.convert("RGB"))
            self.last_info.append(dict(entry))
        return images
