"""The embedding map: a 2-D PCA (scikit-learn) of a model's debug-set features, for the Failures page's linked map.

Stored under ``embedding_maps/``, keyed like the features it projects (backbone, dataset, split config), so a run's
summary names its map and a recompute is never needed for the same inputs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from core import store
from core.config import SplitConfig
from core.datasets.base import ImageDataset
from core.progress import ProgressFn, StopFn


def _path(backbone_key: str, dataset_key: str, split_config: dict) -> Path:
    return store.cache_root() / "embedding_maps" / f"{store.make_key(backbone_key, dataset_key, split_config)}.parquet"


def embedding_map_path(run_summary: dict) -> Path:
    """Where the map of a finished run's debug features lives (it may not have been made yet)."""
    return _path(run_summary["backbone_key"], run_summary["dataset_key"], run_summary["split_config"])


def compute_embedding_map(
    dataset: ImageDataset,
    model: str,
    split_cfg: SplitConfig = SplitConfig(),
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> dict:
    """Project ``model``'s debug-set features (cached by core.find.features) to 2-D and save image_id, x, y.

    Returns {"path", "points"}; a map that exists for the same inputs is kept as it is."""
    from sklearn.decomposition import PCA

    from core.find.features import extract_features
    from core.find.runs import get_splits, load_backbone

    debug = get_splits(dataset, split_cfg).debug
    backbone = load_backbone(model, dataset)
    path = _path(backbone.key, dataset.key, asdict(split_cfg))
    if path.is_file():
        return {"path": str(path), "points": len(debug)}
    feats = np.asarray(
        extract_features(backbone, dataset, debug, progress=progress, should_stop=should_stop), np.float32
    )
    xy = PCA(n_components=2, random_state=0).fit_transform(feats)
    out = pd.DataFrame({"image_id": debug["image_id"].astype(str).to_numpy(), "x": xy[:, 0], "y": xy[:, 1]})
    with store.atomic_path(path) as tmp:
        out.to_parquet(tmp, index=False)
    return {"path": str(path), "points": len(out)}


def load_embedding_map(run_summary: dict) -> pd.DataFrame | None:
    """image_id, x, y of the run's debug images, or None until ``compute_embedding_map`` has made the map."""
    path = embedding_map_path(run_summary)
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # a damaged map is made again on request
        return None
