"""The three index tables every experiment uses: ``head_train``, ``debug`` and ``test``, persisted.

``head_train`` is ``head_train_per_class`` images of each class drawn from the dataset's ``train`` pool;
``debug`` and ``test`` split the ``val`` pool per class (``debug_fraction`` of each class to debug, the rest to
test). Draws are seeded per class, so a class's rows do not depend on the other classes. Rows keep the
pool's columns (ground-truth attributes included) and the pool's order. Splits are stored as parquet under
``cache/splits/<key>/``, the key covering the dataset's key, its train/val rows and the config, and load back
identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core import store
from core.config import SplitConfig, to_dict
from core.datasets.base import ImageDataset
from core.errors import InvalidInputError

SPLITS_VERSION = 1
SPLIT_NAMES = ("head_train", "debug", "test")


@dataclass
class Splits:
    head_train: pd.DataFrame
    debug: pd.DataFrame
    test: pd.DataFrame
    config: SplitConfig = field(default_factory=SplitConfig)
    key: str = ""  # cache key: dataset key + config

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in SPLIT_NAMES}

    def get(self, name: str) -> pd.DataFrame:
        if name not in SPLIT_NAMES:
            raise InvalidInputError(f"No split {name!r}; the splits are {', '.join(SPLIT_NAMES)}.")
        return getattr(self, name)


def splits_key(dataset: ImageDataset, cfg: SplitConfig) -> str:
    """Covers the pools' actual rows too, so a dataset whose ``key`` misses a change still gets new splits."""
    pools = [dataset.manifest_hash(dataset.index(p)) for p in ("train", "val") if p in dataset.pools()]
    return store.make_key("splits", SPLITS_VERSION, dataset.key, pools, to_dict(cfg))


def make_splits(dataset: ImageDataset, cfg: SplitConfig = SplitConfig()) -> Splits:
    """Load the stored splits for (dataset, cfg), or draw and store them."""
    key = splits_key(dataset, cfg)
    folder = store.cache_root() / "splits" / key
    stored = _load(folder)
    if stored is not None:
        return Splits(**stored, config=cfg, key=key)
    tables = _draw(dataset, cfg)
    with store.lock(folder / "write"):
        store.remove_orphan_temps(folder)  # a killed run's unfinished writes
        for name, df in tables.items():
            with store.atomic_path(folder / f"{name}.parquet") as tmp:
                df.to_parquet(tmp, index=False)
        store.save_json(
            folder / "splits.json",
            {
                "key": key,
                "dataset": dataset.name,
                "config": to_dict(cfg),
                "sizes": {n: len(df) for n, df in tables.items()},
            },
        )
    return Splits(**tables, config=cfg, key=key)


def _load(folder) -> dict[str, pd.DataFrame] | None:
    meta = store.load_json(folder / "splits.json")
    if not meta:
        return None
    try:
        tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in SPLIT_NAMES}
    except (OSError, ValueError):
        return None
    if any(len(tables[n]) != meta["sizes"].get(n) for n in SPLIT_NAMES):
        return None
    return tables


def _per_class(dataset: ImageDataset, pool: str) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    if pool not in dataset.pools():
        raise InvalidInputError(
            f"{dataset.name} has no {pool!r} pool (pools: {', '.join(dataset.pools())}); "
            "splits need a train pool and a val pool."
        )
    df = dataset.index(pool).reset_index(drop=True)
    labels = df["label"].to_numpy()
    rows = {k: np.flatnonzero(labels == k) for k in range(len(dataset.classes))}
    absent = [dataset.classes[k] for k, r in rows.items() if len(r) == 0]
    if absent:
        raise InvalidInputError(
            f"{dataset.name}: class(es) {', '.join(map(repr, absent[:10]))}{' …' if len(absent) > 10 else ''} have "
            f"no images in the {pool!r} pool. Add images of these classes to that pool or remove the classes."
        )
    return df, rows


def _draw(dataset: ImageDataset, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    if cfg.head_train_per_class < 1:
        raise InvalidInputError(f"head_train_per_class must be at least 1, got {cfg.head_train_per_class}.")
    if not 0.0 < cfg.debug_fraction < 1.0:
        raise InvalidInputError(
            f"debug_fraction must be between 0 and 1 (exclusive), got {cfg.debug_fraction}; "
            "the val pool must leave images for both debug and test."
        )
    train, train_rows = _per_class(dataset, "train")
    val, val_rows = _per_class(dataset, "val")
    head, debug, test = [], [], []
    for k, name in enumerate(dataset.classes):
        have = len(train_rows[k])
        if cfg.head_train_per_class > have:
            raise InvalidInputError(
                f"{dataset.name}: class {name!r} has only {have} images in the train pool but head_train_per_class "
                f"is {cfg.head_train_per_class}. Lower head_train_per_class to at most {have}."
            )
        rng = np.random.default_rng([cfg.seed, k, 0])
        head.append(rng.choice(train_rows[k], cfg.head_train_per_class, replace=False))
        rows = np.random.default_rng([cfg.seed, k, 1]).permutation(val_rows[k])
        n_debug = int(round(cfg.debug_fraction * len(rows)))
        if n_debug == 0 or n_debug == len(rows):
            empty = "debug" if n_debug == 0 else "test"
            raise InvalidInputError(
                f"{dataset.name}: class {name!r} has {len(rows)} val image(s), so debug_fraction "
                f"{cfg.debug_fraction} leaves its {empty} split empty. Add val images of this class or move "
                "debug_fraction towards 0.5."
            )
        debug.append(rows[:n_debug])
        test.append(rows[n_debug:])
    return {"head_train": _rows(train, head), "debug": _rows(val, debug), "test": _rows(val, test)}


def _rows(df: pd.DataFrame, parts: list[np.ndarray]) -> pd.DataFrame:
    return df.iloc[np.sort(np.concatenate(parts))].reset_index(drop=True)
